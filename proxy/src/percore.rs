//! Per-core accept loops for the edge.
//!
//! Pingora's listening service accepts on one runtime and hands each
//! connection to a randomly chosen runtime of its pool, so on most
//! connections every readiness event crosses threads (an eventfd write and a
//! wake-up per request). Here every edge thread runs its own single-threaded
//! runtime and accepts on its own registration of the listening socket: a
//! connection is read, served and written by the thread that accepted it,
//! as nginx workers do.
//!
//! The listening socket still lives in Pingora's fd table under the edge's
//! address, so a graceful binary upgrade hands it over unchanged.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use pingora_core::server::ListenFds;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::Service;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};

/// A client connection with a write buffer as large as a typical answer, so
/// that a response header and body leave in one send.
#[derive(Debug)]
struct Buffered(BufWriter<L4Stream>);

impl AsyncRead for Buffered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Buffered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Buffered {
    async fn shutdown(&mut self) {
        if let Err(e) = AsyncWriteExt::shutdown(&mut self.0).await {
            tracing::debug!(error = %e, "closing a client connection");
        }
    }
}

impl UniqueID for Buffered {
    fn id(&self) -> UniqueIDType {
        self.0.get_ref().id()
    }
}

impl Ssl for Buffered {}

impl GetTimingDigest for Buffered {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.0.get_ref().get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.0.get_ref().get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.0.get_ref().get_write_pending_time()
    }
}

impl GetProxyDigest for Buffered {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.0.get_ref().get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.0.get_mut().set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Buffered {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.0.get_ref().get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.0.get_mut().set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Buffered {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.0.get_mut().try_peek(buf).await
    }
}

/// A Pingora service that serves `app` on `addr` from `threads` threads,
/// each accepting and serving its own connections.
pub struct PerCoreService<A> {
    pub app: Option<Arc<A>>,
    pub addr: String,
    pub threads: usize,
    pub write_buffer: usize,
    /// How long in-flight connections may finish after a stop.
    pub grace: Duration,
    /// Told once whether the listening socket could be had.
    pub ready: Option<mpsc::Sender<io::Result<SocketAddr>>>,
}

/// The listening socket: the one handed over by the previous process, or a
/// new one recorded in the fd table for the next upgrade.
fn take_or_bind(addr: &str, fds: Option<&ListenFds>) -> io::Result<std::net::TcpListener> {
    if let Some(fds) = fds
        && let Some(fd) = fds.lock().get(addr).copied()
    {
        // The table keeps owning the descriptor (it is sent on upgrade).
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let owned = borrowed.try_clone_to_owned()?;
        let listener = std::net::TcpListener::from(owned);
        listener.set_nonblocking(true)?;
        return Ok(listener);
    }
    use socket2::{Domain, Protocol, Socket, Type};
    let resolved: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(addr)?
        .next()
        .ok_or_else(|| io::Error::other(format!("{addr} does not resolve")))?;
    let socket = Socket::new(
        Domain::for_address(resolved),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    bind_with_retry(&socket, resolved)?;
    socket.listen(65535)?;
    let listener: std::net::TcpListener = socket.into();
    if let Some(fds) = fds {
        let keep = listener.try_clone()?;
        fds.lock().add(addr.to_owned(), keep.into_raw_fd());
    }
    Ok(listener)
}

/// A process that just stopped may still hold the port for a moment (a
/// restart under a supervisor): wait for it rather than fail at once.
fn bind_with_retry(socket: &socket2::Socket, addr: SocketAddr) -> io::Result<()> {
    const TRIES: u32 = 50;
    let mut tries = 0;
    loop {
        match socket.bind(&addr.into()) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries < TRIES => {
                if tries == 0 {
                    tracing::warn!(%addr, "edge address in use; retrying for 5 s");
                }
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

async fn serve_thread<A: ServerApp + Send + Sync + 'static>(
    app: Arc<A>,
    listener: std::net::TcpListener,
    shutdown: ShutdownWatch,
    write_buffer: usize,
    grace: Duration,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "edge thread cannot register its listener");
            return;
        }
    };
    let mut conns = tokio::task::JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let mut stream = L4Stream::from(tcp);
                    let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
                    let _ = digest.peer_addr.set(Some(peer.into()));
                    stream.set_socket_digest(digest);
                    let stream: pingora_core::protocols::Stream =
                        Box::new(Buffered(BufWriter::with_capacity(write_buffer, stream)));
                    let app = app.clone();
                    let shutdown = shutdown.clone();
                    conns.spawn(async move {
                        app.process_new(stream, &shutdown).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "edge accept failed");
                    // Out of descriptors: give in-flight connections a moment.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    drop(listener);
    // Idle keep-alive connections stop waiting for a next request.
    app.cleanup().await;
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::info!(
            open = conns.len(),
            "edge grace period over; closing the remaining connections"
        );
        conns.abort_all();
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> Service for PerCoreService<A> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let app = self.app.take().expect("the edge service starts once");
        let ready = self.ready.take();
        let listener = match take_or_bind(&self.addr, fds.as_ref()) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(addr = %self.addr, error = %e, "the edge cannot listen");
                if let Some(tx) = ready {
                    let _ = tx.send(Err(e));
                }
                return;
            }
        };
        let mut done = Vec::new();
        for i in 0..self.threads.max(1) {
            let listener = match listener.try_clone() {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "duplicating the edge listener");
                    continue;
                }
            };
            let app = app.clone();
            let shutdown = shutdown.clone();
            let (write_buffer, grace) = (self.write_buffer, self.grace);
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let spawned = std::thread::Builder::new()
                .name(format!("mcpgate-edge-{i}"))
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => {
                            rt.block_on(serve_thread(app, listener, shutdown, write_buffer, grace))
                        }
                        Err(e) => tracing::error!(error = %e, "edge thread has no runtime"),
                    }
                    let _ = tx.send(());
                });
            match spawned {
                Ok(_) => done.push(rx),
                Err(e) => tracing::error!(error = %e, "starting an edge thread"),
            }
        }
        if let Some(tx) = ready {
            let _ = tx.send(if done.is_empty() {
                Err(io::Error::other("no edge thread could start"))
            } else {
                listener.local_addr()
            });
        }
        drop(listener);
        for rx in done {
            let _ = rx.await;
        }
    }

    fn name(&self) -> &str {
        "mcpgate edge"
    }

    fn threads(&self) -> Option<usize> {
        // This runtime only waits for the edge threads.
        Some(1)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(vec![self.addr.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handed_over_socket_is_reused_not_rebound() {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = first.local_addr().unwrap().to_string();
        let mut table = pingora_core::server::Fds::new();
        table.add(addr.clone(), first.into_raw_fd());
        let fds: ListenFds = Arc::new(parking_lot::Mutex::new(table));
        // Binding the same address again without SO_REUSEPORT would fail:
        // success proves the table's socket was taken.
        let taken = take_or_bind(&addr, Some(&fds)).unwrap();
        assert_eq!(taken.local_addr().unwrap().to_string(), addr);
        // The table still owns its descriptor for the next upgrade.
        let fd = *fds.lock().get(&addr).unwrap();
        assert!(fd >= 0);
        let _still_open = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .unwrap();
    }

    #[test]
    fn a_new_socket_is_recorded_for_the_next_upgrade() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap().to_string();
        drop(probe);
        let fds: ListenFds = Arc::new(parking_lot::Mutex::new(pingora_core::server::Fds::new()));
        let l = take_or_bind(&addr, Some(&fds)).unwrap();
        assert_eq!(l.local_addr().unwrap().to_string(), addr);
        assert!(fds.lock().get(&addr).is_some());
    }
}
