//! The block-access event: what the daemon records for `tierd simulate` and
//! what every trace reader yields. The on-disk formats live in the `sim`
//! crate; this is the one shape they share.

/// What an access did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Trim,
}

/// One block access. `offset` and `len` are in bytes; `t_ms` in milliseconds
/// of whatever clock the trace counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub t_ms: u64,
    pub device: u32,
    pub op: Op,
    pub offset: u64,
    pub len: u64,
}
