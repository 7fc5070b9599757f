//! The NBD server: the wire protocol (`proto`), option haggling (`handshake`),
//! request serving (`transmission`), the byte budgets that bound it
//! (`budget`), TLS (`tls`) and the listeners (`server`).

pub mod budget;
pub mod handshake;
pub mod proto;
pub mod server;
pub mod tls;
pub mod transmission;

pub use server::NbdServer;
