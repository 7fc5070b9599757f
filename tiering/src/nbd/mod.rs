//! The NBD server: the wire protocol (`proto`), option haggling (`handshake`),
//! request serving (`transmission`) and the listeners (`server`).

pub mod handshake;
pub mod proto;
pub mod server;
pub mod transmission;

pub use server::NbdServer;
