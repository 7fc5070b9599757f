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
use super::handshake::{self, Outcome, Tls};
use super::tls::TlsMode;
use super::transmission;
use crate::volume::Volumes;

#[derive(Clone)]
pub struct NbdServer {
    volumes: Arc<Volumes>,
    shutdown: CancellationToken,
    connections: TaskTracker,
    budgets: Budgets,
    /// TCP's TLS: required once configured.
    tcp_tls: TlsMode,
}

impl NbdServer {
    /// A server whose connections share `budgets`; TCP clients must use
    /// TLS when `tls` is set (the unix socket may).
    pub fn new(
        volumes: Arc<Volumes>,
        shutdown: CancellationToken,
        budgets: Budgets,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        Self {
            volumes,
            shutdown,
            connections: TaskTracker::new(),
            budgets,
            tcp_tls: tls.map(TlsMode::Required).unwrap_or(TlsMode::Off),
        }
    }

    fn unix_tls(&self) -> TlsMode {
        match self.tcp_tls.acceptor() {
            Some(a) => TlsMode::Optional(a.clone()),
            None => TlsMode::Off,
        }
    }

    /// Ends when the listeners have stopped and every connection has ended.
    pub async fn drained(&self) {
        self.connections.close();
        self.connections.wait().await;
    }

    async fn connection<S>(self, stream: S, peer: String, tls: TlsMode)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut stream = stream;
        let first = tokio::select! {
            r = async {
                let no_zeroes = handshake::greet(&mut stream).await?;
                let outcome = handshake::negotiate(
                    &mut stream, &self.volumes, &peer, no_zeroes, Tls::start(&tls),
                ).await?;
                Ok::<_, std::io::Error>((no_zeroes, outcome))
            } => r,
            _ = self.shutdown.cancelled() => return,
        };
        match first {
            Ok((_, Outcome::Session(session))) => self.transmit(stream, session, peer, false).await,
            Ok((no_zeroes, Outcome::StartTls)) => {
                let Some(acceptor) = tls.acceptor().cloned() else {
                    return;
                };
                let upgraded = tokio::select! {
                    r = async {
                        let mut s = acceptor.accept(stream).await?;
                        let outcome = handshake::negotiate(
                            &mut s, &self.volumes, &peer, no_zeroes, Tls::Active,
                        ).await?;
                        Ok::<_, std::io::Error>((s, outcome))
                    } => r,
                    _ = self.shutdown.cancelled() => return,
                };
                match upgraded {
                    Ok((s, Outcome::Session(session))) => {
                        self.transmit(s, session, peer, true).await
                    }
                    Ok(_) => tracing::debug!(peer, "NBD client left during the TLS handshake"),
                    Err(e) => {
                        tracing::warn!(peer, error = %e, "NBD TLS handshake failed; disconnecting")
                    }
                }
            }
            Ok((_, Outcome::Gone)) => tracing::debug!(peer, "NBD client left during the handshake"),
            Err(e) => tracing::warn!(peer, error = %e, "NBD handshake failed; disconnecting"),
        }
    }

    async fn transmit<S>(&self, stream: S, session: handshake::Session, peer: String, tls: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        tracing::info!(peer, export = %session.export, structured = session.structured,
            allocation = session.allocation, tls, "NBD client attached");
        let (r, w) = tokio::io::split(stream);
        let budget = self.budgets.connection();
        transmission::serve(r, w, session, peer, budget, self.shutdown.clone()).await;
    }

    pub async fn serve_tcp(self, listener: TcpListener) {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let _ = stream.set_nodelay(true);
                        let tls = self.tcp_tls.clone();
                        self.connections.spawn(self.clone().connection(stream, addr.to_string(), tls));
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
                        let tls = self.unix_tls();
                        self.connections.spawn(self.clone().connection(stream, format!("unix#{n}"), tls));
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
