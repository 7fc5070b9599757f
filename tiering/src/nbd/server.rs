//! NBD listeners (TCP and unix socket) and the per-connection task that runs the
//! handshake and then transmission.
//!
//! Every connection is a task of the server's tracker: shutdown cancels the
//! token (listeners stop accepting, connections finish the requests they
//! hold) and [`NbdServer::drained`] waits for the last connection to end.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::budget::Budgets;
use super::{handshake, transmission};
use crate::volume::Volumes;

#[derive(Clone)]
pub struct NbdServer {
    volumes: Arc<Volumes>,
    shutdown: CancellationToken,
    connections: TaskTracker,
    budgets: Budgets,
}

impl NbdServer {
    /// A server whose connections share `budgets`.
    pub fn new(volumes: Arc<Volumes>, shutdown: CancellationToken, budgets: Budgets) -> Self {
        Self {
            volumes,
            shutdown,
            connections: TaskTracker::new(),
            budgets,
        }
    }

    /// Ends when the listeners have stopped and every connection has ended.
    pub async fn drained(&self) {
        self.connections.close();
        self.connections.wait().await;
    }

    async fn connection<S>(self, stream: S, peer: String)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut stream = stream;
        let session = tokio::select! {
            r = handshake::negotiate(&mut stream, &self.volumes, &peer) => r,
            _ = self.shutdown.cancelled() => return,
        };
        match session {
            Ok(Some(session)) => {
                tracing::info!(peer, export = %session.export, structured = session.structured,
                    allocation = session.allocation, "NBD client attached");
                let (r, w) = tokio::io::split(stream);
                let budget = self.budgets.connection();
                transmission::serve(r, w, session, peer, budget, self.shutdown.clone()).await;
            }
            Ok(None) => tracing::debug!(peer, "NBD client left during the handshake"),
            Err(e) => tracing::warn!(peer, error = %e, "NBD handshake failed; disconnecting"),
        }
    }

    pub async fn serve_tcp(self, listener: TcpListener) {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let _ = stream.set_nodelay(true);
                        self.connections.spawn(self.clone().connection(stream, addr.to_string()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "NBD accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                _ = self.shutdown.cancelled() => break,
            }
        }
    }

    pub async fn serve_unix(self, listener: UnixListener) {
        let mut n = 0u64;
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        n += 1;
                        self.connections.spawn(self.clone().connection(stream, format!("unix#{n}")));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "NBD accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                _ = self.shutdown.cancelled() => break,
            }
        }
    }
}
