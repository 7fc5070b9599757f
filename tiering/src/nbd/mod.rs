//! The NBD server: the wire protocol (`proto`), option haggling (`handshake`),
//! request serving (`transmission`), the byte budgets that bound it
//! (`budget`) and the listeners (`server`).

pub mod budget;
pub mod handshake;
pub mod proto;
pub mod server;
pub mod transmission;

pub use server::NbdServer;
