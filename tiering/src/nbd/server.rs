//! NBD listeners (TCP and unix socket) and the per-connection task that runs the
//! handshake and then transmission.
//!
//! Each connection holds a clone of a drain sender; shutdown drops the
//! listener's copy and waits until every connection has dropped its own.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};

use super::{handshake, transmission};
use crate::volume::Volumes;

#[derive(Clone)]
pub struct NbdServer {
    volumes: Arc<Volumes>,
    shutdown: watch::Receiver<bool>,
    drain: mpsc::Sender<()>,
}

impl NbdServer {
    pub fn new(
        volumes: Arc<Volumes>,
        shutdown: watch::Receiver<bool>,
        drain: mpsc::Sender<()>,
    ) -> Self {
        Self {
            volumes,
            shutdown,
            drain,
        }
    }

    async fn connection<S>(self, stream: S, peer: String)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let _drain = self.drain.clone();
        let mut stream = stream;
        let session = tokio::select! {
            r = handshake::negotiate(&mut stream, &self.volumes, &peer) => r,
            _ = wait_true(self.shutdown.clone()) => return,
        };
        match session {
            Ok(Some(session)) => {
                tracing::info!(peer, export = %session.export, structured = session.structured,
                    allocation = session.allocation, "NBD client attached");
                let (r, w) = tokio::io::split(stream);
                transmission::serve(r, w, session, peer, self.shutdown.clone()).await;
            }
            Ok(None) => tracing::debug!(peer, "NBD client left during the handshake"),
            Err(e) => tracing::warn!(peer, error = %e, "NBD handshake failed; disconnecting"),
        }
    }

    pub async fn serve_tcp(self, listener: TcpListener) {
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(self.clone().connection(stream, addr.to_string()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "NBD accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                _ = shutdown.changed() => break,
            }
        }
    }

    pub async fn serve_unix(self, listener: UnixListener) {
        let mut shutdown = self.shutdown.clone();
        let mut n = 0u64;
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        n += 1;
                        tokio::spawn(self.clone().connection(stream, format!("unix#{n}")));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "NBD accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                _ = shutdown.changed() => break,
            }
        }
    }
}

async fn wait_true(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
