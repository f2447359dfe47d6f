//! Running the edge: a Pingora server on its own threads inside the
//! mcpgate process, stopped through a channel (or by the upgrade signal).

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::listeners::ListenerConfig;
use pingora_core::protocols::l4::stream::L4BufferSettings;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use tokio::sync::watch;

use crate::app::EdgeApp;
use crate::edge::EdgeProxy;
use crate::lanes::EdgeFront;
use crate::percore::PerCoreService;

/// A write buffer as large as typical answers: the header and the body
/// leave in one send instead of two.
const WRITE_BUFFER: usize = 64 * 1024;

/// What stops the edge: a graceful stop, or a graceful upgrade (listening
/// sockets handed to a new process started with `--upgrade`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Running,
    Terminate,
    Upgrade,
}

struct ChannelWatch(watch::Receiver<Stop>);

#[async_trait]
impl ShutdownSignalWatch for ChannelWatch {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        let stop = rx
            .wait_for(|s| *s != Stop::Running)
            .await
            .map(|s| *s)
            .unwrap_or(Stop::Terminate);
        match stop {
            Stop::Upgrade => ShutdownSignal::GracefulUpgrade,
            _ => ShutdownSignal::GracefulTerminate,
        }
    }
}

pub struct EdgeHandle {
    pub addr: SocketAddr,
    stop: watch::Sender<Stop>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub struct EdgeOptions {
    pub threads: usize,
    /// Take the listening socket over from a running process (`-u`).
    pub upgrade: bool,
    pub upgrade_sock: String,
    pub grace_period_seconds: u64,
    /// false (default): each edge thread accepts and serves its own
    /// connections on its own single-threaded runtime. true: Pingora's
    /// listening service on one work-stealing pool.
    pub work_stealing: bool,
}

impl EdgeHandle {
    /// Starts the edge on `addr` (port 0 picks a free one).
    pub fn start<A: EdgeApp>(
        proxy: EdgeProxy<A>,
        addr: SocketAddr,
        options: EdgeOptions,
    ) -> std::io::Result<EdgeHandle> {
        if addr.port() != 0 {
            return Self::start_on(proxy, addr, options);
        }
        // A free port is found by binding and letting go; between the two
        // another socket of the machine may take it: then try another.
        let mut tries = 0;
        loop {
            let probe = std::net::TcpListener::bind(addr)?;
            let free = probe.local_addr()?;
            drop(probe);
            let options = EdgeOptions {
                upgrade_sock: options.upgrade_sock.clone(),
                ..options
            };
            match Self::start_on(proxy.clone(), free, options) {
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::debug!(%free, error = %e, "the free port was taken; trying another");
                }
                other => return other,
            }
        }
    }

    fn start_on<A: EdgeApp>(
        proxy: EdgeProxy<A>,
        addr: SocketAddr,
        options: EdgeOptions,
    ) -> std::io::Result<EdgeHandle> {
        let (tx, rx) = watch::channel(Stop::Running);
        let conf = ServerConf {
            threads: options.threads.max(1),
            // Pingora's own pools: the stock listener, or the per-core
            // service's coordinator (which only waits for its threads).
            work_stealing: true,
            // Pingora's grace period is a fixed wait before draining starts,
            // even when idle; the edge stops accepting at once and drains its
            // connections for up to the grace period itself.
            grace_period_seconds: Some(0),
            graceful_shutdown_timeout_seconds: Some(options.grace_period_seconds.max(1)),
            upgrade_sock: options.upgrade_sock.clone(),
            ..ServerConf::default()
        };
        let opt = Opt {
            upgrade: options.upgrade,
            ..Opt::default()
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<SocketAddr>>();
        let listen = addr.to_string();
        let work_stealing = options.work_stealing;
        let threads = options.threads.max(1);
        let grace = std::time::Duration::from_secs(options.grace_period_seconds);
        let thread = std::thread::Builder::new()
            .name("mcpgate-edge".into())
            .spawn(move || {
                let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
                server.bootstrap();
                if work_stealing {
                    let mut service =
                        pingora_proxy::http_proxy_service(&server.configuration, proxy);
                    let settings = L4BufferSettings::new(WRITE_BUFFER, WRITE_BUFFER);
                    service.add_listener(ListenerConfig::tcp(listen.clone()).l4_buffer(settings));
                    server.add_service(service);
                    let _ = ready_tx.send(Ok(addr));
                } else {
                    let edge = proxy.clone();
                    let proxy = pingora_proxy::http_proxy(&server.configuration, proxy);
                    let front = EdgeFront {
                        proxy: Arc::new(proxy),
                        edge,
                    };
                    server.add_service(PerCoreService {
                        app: Some(Arc::new(front)),
                        addr: listen.clone(),
                        threads,
                        write_buffer: WRITE_BUFFER,
                        grace,
                        ready: Some(ready_tx),
                    });
                }
                server.run(RunArgs {
                    shutdown_signal: Box::new(ChannelWatch(rx)),
                });
            })?;
        let bound = ready_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .map_err(|_| std::io::Error::other(format!("the edge did not start on {addr}")))??;
        let addr = SocketAddr::new(addr.ip(), bound.port());
        // Wait until the listener accepts, so callers can use it at once.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "the edge did not listen on {addr}"
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(EdgeHandle {
            addr,
            stop: tx,
            thread: Some(thread),
        })
    }

    pub fn stop_handle(&self) -> watch::Sender<Stop> {
        self.stop.clone()
    }

    /// Stops the edge and waits for its threads.
    pub fn stop(mut self, how: Stop) {
        let _ = self.stop.send(how);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EdgeHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(Stop::Terminate);
    }
}

pub type SharedConfig = Arc<arc_swap::ArcSwap<crate::config::EdgeConfig>>;
