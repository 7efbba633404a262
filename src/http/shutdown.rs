//! Graceful stop on SIGINT, SIGTERM or SIGHUP (the ctrlc crate with its `termination` feature).
//!
//! The order: (1) close the listening socket, so new connections are refused
//! and nginx sends them to another replica; (2) wake each worker with one
//! `unblock()` per worker (each wakes exactly one thread), queued behind the
//! requests already received, so those are still answered; (3) main waits for
//! the workers, then the committers answer what is queued, all within
//! SHUTDOWN_TIMEOUT_MS; main flushes the logs and exits 0.
//! A request that arrives on a kept-alive connection after (2) is left
//! unanswered; nginx retries it elsewhere with the same X-Request-ID.

use std::io;
use std::net::{Shutdown as SocketShutdown, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

pub struct Shutdown {
    stopping: AtomicBool,
    began: OnceLock<Instant>,
    /// A second handle on the listening socket: shutting it down stops tiny_http's accept loop.
    listener: TcpStream,
    server: Arc<tiny_http::Server>,
    workers: usize,
}

impl Shutdown {
    pub fn new(
        listener: &TcpListener,
        server: Arc<tiny_http::Server>,
        workers: usize,
    ) -> io::Result<Shutdown> {
        let listener = TcpStream::from(OwnedFd::from(listener.try_clone()?));
        Ok(Shutdown {
            stopping: AtomicBool::new(false),
            began: OnceLock::new(),
            listener,
            server,
            workers,
        })
    }

    /// Runs `begin` when SIGINT, SIGTERM or SIGHUP arrives.
    pub fn on_signals(self: &Arc<Self>) -> Result<(), ctrlc::Error> {
        let this = Arc::clone(self);
        ctrlc::set_handler(move || {
            log::info!("signal received: draining in-flight requests");
            this.begin();
        })
    }

    /// Starts the shutdown; later calls do nothing.
    pub fn begin(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.began.set(Instant::now());
        // shutdown(2) on a listening socket makes accept() fail and the kernel refuse new connections.
        if let Err(e) = self.listener.shutdown(SocketShutdown::Both) {
            log::warn!("could not close the listening socket: {e}");
        }
        for _ in 0..self.workers {
            self.server.unblock();
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// When the shutdown began, if it has.
    pub fn began(&self) -> Option<Instant> {
        self.began.get().copied()
    }
}
