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
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use pingora_core::server::ListenFds;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::Service;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// A client connection that holds small writes (a response header, small
/// bodies) until a flush or a large write, so that a header and its body
/// leave in one send; a large body goes out with the held bytes in one
/// vectored write instead of being copied behind them.
///
/// It also reads ahead on request: the edge looks at a request's head
/// before deciding which lane serves it; the direct lane takes the bytes it
/// parsed, and Pingora's parser reads them from here.
#[derive(Debug)]
pub(crate) struct Buffered {
    inner: L4Stream,
    held: Vec<u8>,
    capacity: usize,
    ahead: bytes::BytesMut,
    /// The client's address, from the accept.
    pub(crate) peer: SocketAddr,
}

/// Writes at least this large are not copied into the held bytes.
const COPY_LIMIT: usize = 4096;

/// How much one read ahead may take: a request head of usual size.
const READ_AHEAD: usize = 4096;

impl Buffered {
    fn new(inner: L4Stream, capacity: usize, peer: SocketAddr) -> Self {
        Buffered {
            inner,
            held: Vec::new(),
            capacity,
            ahead: bytes::BytesMut::new(),
            peer,
        }
    }

    /// How many bytes are read ahead and not taken yet.
    pub(crate) fn ahead_len(&self) -> usize {
        self.ahead.len()
    }

    /// Takes the first `n` bytes read ahead (at most as many as there are).
    pub(crate) fn take_ahead(&mut self, n: usize) -> bytes::Bytes {
        let n = n.min(self.ahead.len());
        self.ahead.split_to(n).freeze()
    }

    /// Whether the client closed: nothing was read ahead by the last
    /// [`Self::read_ahead`].
    pub(crate) fn at_end(&self) -> bool {
        self.ahead.is_empty()
    }

    /// The bytes read ahead, reading once if there are none; empty at the
    /// end of the stream.
    pub(crate) async fn read_ahead(&mut self) -> io::Result<&[u8]> {
        use tokio::io::AsyncReadExt;
        if self.ahead.is_empty() {
            self.ahead.reserve(READ_AHEAD);
            self.inner.read_buf(&mut self.ahead).await?;
        }
        Ok(&self.ahead)
    }

    /// Sends the held bytes, together with `tail` in one vectored write
    /// where the socket takes it; returns how much of `tail` went out.
    fn poll_send(&mut self, cx: &mut Context<'_>, tail: &[u8]) -> Poll<io::Result<usize>> {
        while !self.held.is_empty() {
            let slices = [io::IoSlice::new(&self.held), io::IoSlice::new(tail)];
            match Pin::new(&mut self.inner).poll_write_vectored(cx, &slices) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) if n > self.held.len() => {
                    let from_tail = n - self.held.len();
                    self.held.clear();
                    return Poll::Ready(Ok(from_tail));
                }
                Poll::Ready(Ok(n)) => {
                    self.held.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if tail.is_empty() {
            return Poll::Ready(Ok(0));
        }
        Pin::new(&mut self.inner).poll_write(cx, tail)
    }
}

impl AsyncRead for Buffered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.ahead.is_empty() {
            let n = self.ahead.len().min(buf.remaining());
            buf.put_slice(&self.ahead[..n]);
            bytes::Buf::advance(&mut self.ahead, n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Buffered {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.len() < COPY_LIMIT && this.held.len() + buf.len() <= this.capacity {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        this.poll_send(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_send(cx, &[]) {
            Poll::Ready(Ok(_)) => Pin::new(&mut this.inner).poll_flush(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_send(cx, &[]) {
            Poll::Ready(Ok(_)) => Pin::new(&mut this.inner).poll_shutdown(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[async_trait]
impl Shutdown for Buffered {
    async fn shutdown(&mut self) {
        if let Err(e) = AsyncWriteExt::shutdown(self).await {
            tracing::debug!(error = %e, "closing a client connection");
        }
    }
}

impl UniqueID for Buffered {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Buffered {}

impl GetTimingDigest for Buffered {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Buffered {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Buffered {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Buffered {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let ahead = self.read_ahead().await?;
        let n = ahead.len().min(buf.len());
        buf[..n].copy_from_slice(&ahead[..n]);
        Ok(n == buf.len())
    }
}

/// What serves the connections a [`PerCoreService`] accepts.
#[async_trait]
pub(crate) trait Front: Send + Sync + 'static {
    /// Serves one connection until it closes or the service stops.
    async fn serve(self: Arc<Self>, stream: Buffered, shutdown: ShutdownWatch);
    /// Tells connections idle between requests to stop waiting.
    async fn cleanup(&self);
}

/// A Pingora service that serves `app` on `addr` from `threads` threads,
/// each accepting and serving its own connections.
pub(crate) struct PerCoreService<A> {
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
        // SAFETY: the fd table holds this descriptor open for the life of
        // the process; it is only borrowed long enough to duplicate it.
        #[allow(unsafe_code)]
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

async fn serve_thread<A: Front>(
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
                    let stream = Buffered::new(stream, write_buffer, peer);
                    conns.spawn(app.clone().serve(stream, shutdown.clone()));
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
impl<A: Front> Service for PerCoreService<A> {
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
        for i in 0..self.threads {
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
        // SAFETY: the table owns the descriptor; this only duplicates it.
        #[allow(unsafe_code)]
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

    #[test]
    fn a_port_still_held_by_a_stopping_process_is_waited_for() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap().to_string();
        let released = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(holder);
        });
        let started = std::time::Instant::now();
        let l = take_or_bind(&addr, None).expect("bound once the port was free");
        assert_eq!(l.local_addr().unwrap().to_string(), addr);
        assert!(started.elapsed() >= Duration::from_millis(250));
        released.join().unwrap();
    }

    async fn pair() -> (Buffered, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = tokio::net::TcpStream::connect(l.local_addr().unwrap());
        let (c, a) = tokio::join!(c, l.accept());
        let (a, peer) = a.unwrap();
        (
            Buffered::new(L4Stream::from(a), 64 * 1024, peer),
            c.unwrap(),
        )
    }

    #[tokio::test]
    async fn small_writes_wait_for_a_flush_and_arrive_in_order() {
        use tokio::io::AsyncReadExt;
        let (mut w, mut r) = pair().await;
        w.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        w.write_all(b"{}").await.unwrap();
        assert!(!w.held.is_empty(), "small writes are held");
        w.flush().await.unwrap();
        assert!(w.held.is_empty());
        let mut got = vec![0u8; 21];
        r.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"HTTP/1.1 200 OK\r\n\r\n{}");
    }

    #[tokio::test]
    async fn a_large_body_follows_the_held_header_even_when_the_socket_is_full() {
        use tokio::io::AsyncReadExt;
        let (mut w, mut r) = pair().await;
        // Far more than the socket buffers take at once: partial writes of
        // the held bytes and of the body both happen.
        let body: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
        let expected = [b"header;".as_slice(), &body].concat();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            got
        });
        w.write_all(b"header;").await.unwrap();
        w.write_all(&body).await.unwrap();
        w.flush().await.unwrap();
        AsyncWriteExt::shutdown(&mut w).await.unwrap();
        drop(w);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes arrived out of order");
    }
}
