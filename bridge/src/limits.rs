//! What a gRPC server holds open for its clients: a cap on open connections,
//! a deadline for a new connection's HTTP/2 client preface, keepalive pings
//! for idle connections and the largest message a call may carry.
//!
//! Generic over the transport: the bridge wraps TLS streams in [`Guarded`]
//! after their handshake, and the node's client API uses [`accept_plain`]
//! for its plaintext TCP connections.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

/// Length of the HTTP/2 client connection preface
/// (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`), the first bytes every client sends.
pub const HTTP2_PREFACE_LEN: usize = 24;

/// Refusals logged one by one in each `REFUSAL_WINDOW`; the rest are counted
/// and logged as one line when the window ends, so a flood of connections
/// cannot flood the log.
const REFUSALS_LOGGED_PER_WINDOW: u32 = 10;
const REFUSAL_WINDOW: Duration = Duration::from_secs(1);

/// Limits of one server's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections open at once (including TLS handshakes in progress); a
    /// connection beyond it is closed as soon as it is accepted.
    pub max_connections: usize,
    /// How long a new connection may take to deliver the HTTP/2 client
    /// preface; over TLS the time counts from the end of the handshake.
    pub preface_timeout: Duration,
    /// Idle time after which the server pings a connection.
    pub keepalive_interval: Duration,
    /// How long a ping may stay unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// Largest message (request, or one message of a stream) a call may
    /// carry, in bytes.
    pub max_message_bytes: usize,
}

impl Default for ServerLimits {
    /// The bridge's defaults: few peers, each with a handful of connections,
    /// and relay batches and profile photos as the largest messages.
    fn default() -> Self {
        ServerLimits {
            max_connections: 1024,
            preface_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_message_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The cap on one server's open connections, and the log of its refusals.
pub struct ConnectionCap {
    server: &'static str,
    max: usize,
    permits: Arc<Semaphore>,
    window_start: Instant,
    logged: u32,
    unlogged: u64,
    last_unlogged: Option<SocketAddr>,
}

impl ConnectionCap {
    /// `server` names the port in log lines (`api`, `bridge`).
    pub fn new(server: &'static str, max: usize) -> ConnectionCap {
        ConnectionCap {
            server,
            max,
            permits: Arc::new(Semaphore::new(max)),
            window_start: Instant::now(),
            logged: 0,
            unlogged: 0,
            last_unlogged: None,
        }
    }

    /// Accepts the next TCP connection (with `TCP_NODELAY` set), logging the
    /// summary of earlier refusals meanwhile when their window ends.
    pub async fn accept(&mut self, listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        loop {
            let summary_due = self.window_start + REFUSAL_WINDOW;
            tokio::select! {
                accepted = listener.accept() => {
                    let (tcp, addr) = accepted?;
                    let _ = tcp.set_nodelay(true);
                    return Ok((tcp, addr));
                }
                _ = tokio::time::sleep_until(summary_due), if self.unlogged > 0 => {
                    self.roll_window(Instant::now());
                }
            }
        }
    }

    /// A permit for one more connection from `peer`, held for the
    /// connection's lifetime, or `None` (logged) when the cap is reached:
    /// the caller then drops the connection at once.
    pub fn admit(&mut self, peer: SocketAddr) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        let now = Instant::now();
        if now >= self.window_start + REFUSAL_WINDOW {
            self.roll_window(now);
        }
        if self.logged < REFUSALS_LOGGED_PER_WINDOW {
            self.logged += 1;
            tracing::warn!(
                server = self.server,
                peer_addr = %peer,
                limit = self.max,
                "connection refused: the connection limit is reached"
            );
        } else {
            self.unlogged += 1;
            self.last_unlogged = Some(peer);
        }
        None
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    fn roll_window(&mut self, now: Instant) {
        if self.unlogged > 0 {
            tracing::warn!(
                server = self.server,
                refused = self.unlogged,
                last_peer_addr = %self.last_unlogged.map_or_else(String::new, |a| a.to_string()),
                limit = self.max,
                "more connections refused in the last second: the connection limit is reached"
            );
        }
        self.window_start = now;
        self.logged = 0;
        self.unlogged = 0;
        self.last_unlogged = None;
    }
}

/// Accepts plaintext TCP connections for a tonic server: each holds a
/// permit of the cap for its lifetime and must deliver the HTTP/2 preface
/// within `limits.preface_timeout`. Runs until `conns` is closed.
pub async fn accept_plain(
    listener: TcpListener,
    server: &'static str,
    limits: ServerLimits,
    conns: mpsc::Sender<io::Result<Guarded<TcpStream>>>,
) {
    let mut cap = ConnectionCap::new(server, limits.max_connections);
    loop {
        let (tcp, addr) = match cap.accept(&listener).await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(server, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = cap.admit(addr) else {
            drop(tcp);
            continue;
        };
        let conn = Guarded::new(tcp, permit, addr, server, limits.preface_timeout);
        if conns.send(Ok(conn)).await.is_err() {
            return;
        }
    }
}

/// A connection that holds its permit of the cap until dropped and fails
/// if the HTTP/2 client preface does not arrive in time.
pub struct Guarded<S> {
    inner: S,
    peer: SocketAddr,
    server: &'static str,
    preface: Preface,
    _permit: OwnedSemaphorePermit,
}

enum Preface {
    Awaited {
        missing: usize,
        timeout: Duration,
        deadline: Pin<Box<Sleep>>,
    },
    Delivered,
    TimedOut,
}

impl<S> Guarded<S> {
    /// Wraps a new connection; the preface deadline starts now.
    pub fn new(
        inner: S,
        permit: OwnedSemaphorePermit,
        peer: SocketAddr,
        server: &'static str,
        preface_timeout: Duration,
    ) -> Guarded<S> {
        Guarded {
            inner,
            peer,
            server,
            preface: Preface::Awaited {
                missing: HTTP2_PREFACE_LEN,
                timeout: preface_timeout,
                deadline: Box::pin(tokio::time::sleep(preface_timeout)),
            },
            _permit: permit,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
}

impl<S: Connected> Connected for Guarded<S> {
    type ConnectInfo = S::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

fn preface_timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "no http/2 client preface within the deadline",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &mut this.preface {
            Preface::Delivered => polled,
            Preface::TimedOut => Poll::Ready(Err(preface_timed_out())),
            Preface::Awaited {
                missing,
                timeout,
                deadline,
            } => match polled {
                Poll::Ready(Ok(())) => {
                    let got = buf.filled().len() - before;
                    *missing = missing.saturating_sub(got);
                    if *missing == 0 {
                        this.preface = Preface::Delivered;
                    }
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => {
                    if deadline.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    tracing::info!(
                        server = this.server,
                        peer_addr = %this.peer,
                        timeout_ms = timeout.as_millis() as u64,
                        received = HTTP2_PREFACE_LEN - *missing,
                        "connection closed: no http/2 client preface within the deadline"
                    );
                    this.preface = Preface::TimedOut;
                    Poll::Ready(Err(preface_timed_out()))
                }
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    fn pair() -> (DuplexStream, DuplexStream, SocketAddr) {
        let (client, server) = tokio::io::duplex(1024);
        (client, server, "127.0.0.1:1".parse().unwrap())
    }

    fn permit() -> OwnedSemaphorePermit {
        Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_preface_fails_at_the_deadline() {
        let (mut client, server, addr) = pair();
        let mut guarded = Guarded::new(server, permit(), addr, "test", Duration::from_secs(5));
        client.write_all(b"PRI * HTTP").await.unwrap();
        let mut buf = [0u8; 64];
        let n = guarded.read(&mut buf).await.unwrap();
        assert_eq!(n, 10);
        let err = guarded.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // It stays failed.
        let err = guarded.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivered_preface_lifts_the_deadline() {
        let (mut client, server, addr) = pair();
        let mut guarded = Guarded::new(server, permit(), addr, "test", Duration::from_secs(5));
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; HTTP2_PREFACE_LEN];
        guarded.read_exact(&mut buf).await.unwrap();
        let late = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            client.write_all(b"x").await.unwrap();
            client
        };
        let (read, _client) = tokio::join!(guarded.read(&mut buf), late);
        assert_eq!(read.unwrap(), 1);
    }

    #[tokio::test]
    async fn the_cap_refuses_beyond_its_limit_and_frees_on_drop() {
        let mut cap = ConnectionCap::new("test", 2);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = cap.admit(addr).unwrap();
        let _b = cap.admit(addr).unwrap();
        for _ in 0..50 {
            assert!(cap.admit(addr).is_none());
        }
        assert_eq!(cap.open(), 2);
        drop(a);
        assert!(cap.admit(addr).is_some());
    }
}
