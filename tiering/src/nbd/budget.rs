//! Byte budgets of the NBD path: how many bytes of write payloads and read
//! replies one connection, and all connections together, may hold at once
//! (`server.nbd_connection_buffer`, `server.nbd_total_buffer`).
//!
//! Invariant: a request's bytes are taken from its connection's budget and
//! then from the total before its payload is read or its reply buffer made,
//! and given back only when its reply has gone to the socket or it was
//! dropped with its connection. A client that sends requests and does not
//! read the replies therefore stops its own reader once its budget is spent
//! (as qemu-nbd and nbdkit do), and holds no more than that; other
//! connections keep theirs.

use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The total budget, shared by every connection of a server.
#[derive(Clone)]
pub struct Budgets {
    total: Arc<Semaphore>,
    total_bytes: u32,
    per_connection: u32,
    held: IntGauge,
}

impl Budgets {
    /// Budgets of `per_connection` and `total` bytes (each at least 1 and at
    /// most 2 GiB; a connection never gets more than the total). `held`
    /// shows the bytes taken (`tierd_nbd_buffered_bytes`).
    pub fn new(per_connection: u64, total: u64, held: IntGauge) -> Self {
        let clamp = |b: u64| b.clamp(1, 1 << 31) as u32;
        let total_bytes = clamp(total);
        Self {
            total: Arc::new(Semaphore::new(total_bytes as usize)),
            total_bytes,
            per_connection: clamp(per_connection).min(total_bytes),
            held,
        }
    }

    /// A new connection's budget.
    pub fn connection(&self) -> ConnBudget {
        ConnBudget {
            own: Arc::new(Semaphore::new(self.per_connection as usize)),
            shared: self.clone(),
        }
    }

    /// Bytes no connection holds now.
    pub fn available(&self) -> usize {
        self.total.available_permits()
    }

    pub fn total_bytes(&self) -> u32 {
        self.total_bytes
    }
}

/// One connection's budget.
pub struct ConnBudget {
    own: Arc<Semaphore>,
    shared: Budgets,
}

impl ConnBudget {
    /// Takes `bytes` (a request's payload or reply; at most the connection's
    /// whole budget is taken for one request), waiting while this
    /// connection's budget or the total is spent. Connections take their own
    /// budget first, so one that waits for the total holds nothing of it.
    pub async fn take(&self, bytes: u64) -> Held {
        let n = bytes.min(self.shared.per_connection as u64) as u32;
        if n == 0 {
            return Held::none();
        }
        // Neither semaphore is ever closed, so acquiring cannot fail.
        let Ok(own) = self.own.clone().acquire_many_owned(n).await else {
            return Held::none();
        };
        let Ok(total) = self.shared.total.clone().acquire_many_owned(n).await else {
            return Held::none();
        };
        self.shared.held.add(n as i64);
        Held {
            permits: Some((own, total)),
            bytes: n,
            gauge: Some(self.shared.held.clone()),
        }
    }

    /// Bytes this connection may still take now.
    pub fn available(&self) -> usize {
        self.own.available_permits()
    }
}

/// Bytes taken for one request; given back when dropped.
#[must_use]
pub struct Held {
    permits: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
    bytes: u32,
    gauge: Option<IntGauge>,
}

impl Held {
    /// Nothing taken (a request with no payload and no data in its reply).
    pub fn none() -> Self {
        Self {
            permits: None,
            bytes: 0,
            gauge: None,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(g) = &self.gauge {
            g.sub(self.bytes as i64);
        }
        self.permits.take();
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Held({} bytes)", self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn gauge() -> IntGauge {
        IntGauge::new("t", "t").expect("gauge")
    }

    #[tokio::test]
    async fn a_connection_waits_for_its_own_budget_and_the_total() {
        let b = Budgets::new(10, 15, gauge());
        let (c1, c2) = (b.connection(), b.connection());
        let h1 = c1.take(8).await;
        // c1 has 2 left: a request of 5 waits until h1 is given back.
        let waiting = tokio::time::timeout(Duration::from_millis(50), c1.take(5)).await;
        assert!(waiting.is_err(), "over the connection's budget");
        // c2 has its own 10, but the total has 7 left.
        let h2 = c2.take(7).await;
        assert_eq!(b.available(), 0);
        let waiting = tokio::time::timeout(Duration::from_millis(50), c2.take(1)).await;
        assert!(waiting.is_err(), "over the total");
        assert_eq!(b.held.get(), 15);
        drop(h1);
        let h3 = c1.take(5).await;
        assert_eq!((c1.available(), b.available()), (5, 3));
        drop((h2, h3));
        assert_eq!((b.available(), b.held.get()), (15, 0));
        // One request larger than the whole budget takes all of it, not more.
        let big = c2.take(1 << 30).await;
        assert_eq!((c2.available(), b.available()), (0, 5));
        drop(big);
        // Nothing to hold: no wait, nothing taken.
        let _none = c1.take(0).await;
        assert_eq!(b.available(), 15);
    }

    #[test]
    fn a_connection_never_gets_more_than_the_total() {
        let b = Budgets::new(64, 16, gauge());
        assert_eq!(b.connection().available(), 16);
        assert_eq!(b.total_bytes(), 16);
    }
}
