//! PATCHED (hardening): an answer never blocks the thread that gives it.
//!
//! Upstream wrote every response with blocking writes from the thread that
//! called `respond`, so a client that did not read its answers held that
//! thread for the write timeout, once per answer. Now a response of known
//! length up to `DIRECT_MAX` is serialised whole and sent with one
//! non-blocking `send`: a client that reads costs nothing more than before.
//! What the socket does not take at once is written by a thread of its own,
//! started only then, within the write timeout; past it, or on any error,
//! the connection is shut down both ways, which also ends its reading
//! thread. The connection's thread hands out its next request only once the
//! answer is written or abandoned, so a connection has at most one such
//! thread. Larger responses, and those of unknown length, are written as
//! upstream did.

use std::io::{self, BufWriter, ErrorKind, Write};
use std::net::Shutdown;
use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{RefinedTcpStream, SequentialWriter};

/// The largest body an answer may have to be sent without blocking.
pub(crate) const DIRECT_MAX: usize = 64 * 1024;

/// A thread that finishes an answer only writes (and may log a line).
const FINISHER_STACK: usize = 128 * 1024;

/// How a request's answer ended, for its connection's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answered {
    /// Written whole: the connection may serve its next request.
    Written,
    /// Written whole, and the connection ends after it (`Connection: close`).
    Closes,
    /// Not written (the client left, or did not read in time): the
    /// connection is shut down.
    Abandoned,
}

/// Tells a connection's thread how its pending answer ended. Dropped
/// unsent (a panic while answering), it says `Abandoned`, so that thread
/// never waits for good.
pub(crate) struct Notice(Option<Sender<Answered>>);

impl Notice {
    pub(crate) fn new(sender: Sender<Answered>) -> Notice {
        Notice(Some(sender))
    }

    pub(crate) fn send(mut self, answered: Answered) {
        if let Some(sender) = self.0.take() {
            // The connection's thread may be gone already.
            sender.send(answered).ok();
        }
    }
}

impl Drop for Notice {
    fn drop(&mut self) {
        if let Some(sender) = self.0.take() {
            sender.send(Answered::Abandoned).ok();
        }
    }
}

/// Where a request's answer goes.
pub(crate) trait ResponseWriter: Write + Send {
    /// Sends to the socket itself, once the answers before this one are out:
    /// what it takes at once (`wait` is `None`), or blocking up to `wait`.
    /// `None` where answers only go through `Write` (HTTPS, a test's writer).
    fn send(&mut self, bytes: &[u8], wait: Option<Duration>) -> Option<io::Result<usize>>;

    /// How long the rest of an answer may take to be written.
    fn write_timeout(&self) -> Duration;

    /// Shuts the connection down one way or both.
    fn shutdown(&mut self, how: Shutdown);
}

/// Any writer, written to with blocking writes (a `TestRequest`'s).
pub(crate) struct Blocking<W>(pub W);

impl<W: Write + Send> Write for Blocking<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write + Send> ResponseWriter for Blocking<W> {
    fn send(&mut self, _: &[u8], _: Option<Duration>) -> Option<io::Result<usize>> {
        None
    }

    fn write_timeout(&self) -> Duration {
        Duration::ZERO
    }

    fn shutdown(&mut self, _: Shutdown) {}
}

/// A connection's writer for one answer, which waits for the answers before it.
pub(crate) struct ConnectionWriter {
    writer: SequentialWriter<BufWriter<RefinedTcpStream>>,
    write_timeout: Duration,
}

impl ConnectionWriter {
    pub(crate) fn new(
        writer: SequentialWriter<BufWriter<RefinedTcpStream>>,
        write_timeout: Duration,
    ) -> ConnectionWriter {
        ConnectionWriter {
            writer,
            write_timeout,
        }
    }
}

impl Write for ConnectionWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl ResponseWriter for ConnectionWriter {
    fn send(&mut self, bytes: &[u8], wait: Option<Duration>) -> Option<io::Result<usize>> {
        let write_timeout = self.write_timeout;
        self.writer.with_inner(|buffered| {
            // Every answer is flushed, so nothing is buffered here: this costs nothing.
            if let Err(e) = buffered.flush() {
                return Some(Err(e));
            }
            buffered.get_ref().send(bytes, wait, write_timeout)
        })
    }

    fn write_timeout(&self) -> Duration {
        self.write_timeout
    }

    fn shutdown(&mut self, how: Shutdown) {
        self.writer
            .with_inner(|buffered| buffered.get_mut().shutdown(how))
            .ok();
    }
}

/// Sends a serialised answer: what the socket takes now, the rest from a
/// thread of its own. `notice` learns how it ended once it is written or
/// abandoned. An error is returned only if it is known already.
pub(crate) fn deliver(
    mut writer: Box<dyn ResponseWriter>,
    bytes: Vec<u8>,
    close: bool,
    notice: Option<Notice>,
) -> io::Result<()> {
    let sent = match writer.send(&bytes, None) {
        None => {
            let written = writer.write_all(&bytes).and_then(|()| writer.flush());
            return finish(writer, written, close, notice);
        }
        Some(Ok(sent)) => sent,
        Some(Err(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => 0,
        Some(Err(e)) => return finish(writer, Err(e), close, notice),
    };
    if sent == bytes.len() {
        return finish(writer, Ok(()), close, notice);
    }
    let unfinished = Unfinished {
        deadline: Instant::now() + writer.write_timeout(),
        writer: Some(writer),
        bytes,
        sent,
        close,
        notice,
    };
    // Without a thread, the closure and the answer in it are dropped: abandoned.
    thread::Builder::new()
        .name("tiny-http-answer".into())
        .stack_size(FINISHER_STACK)
        .spawn(move || unfinished.finish())
        .map(drop)
}

/// Ends an answer that was written (`written` is `Ok`) or not: the
/// connection is shut down after a closing answer or a failed one, then
/// the connection's thread is told.
pub(crate) fn finish(
    mut writer: Box<dyn ResponseWriter>,
    written: io::Result<()>,
    close: bool,
    notice: Option<Notice>,
) -> io::Result<()> {
    let answered = match (&written, close) {
        (Ok(()), false) => Answered::Written,
        (Ok(()), true) => {
            writer.shutdown(Shutdown::Write);
            Answered::Closes
        }
        // Both ways: the connection's reading thread ends too.
        (Err(_), _) => {
            writer.shutdown(Shutdown::Both);
            Answered::Abandoned
        }
    };
    // The next answer's turn must come before the notice that lets its request out.
    drop(writer);
    if let Some(notice) = notice {
        notice.send(answered);
    }
    written
}

/// The rest of an answer the socket did not take at once.
struct Unfinished {
    /// `None` once finished.
    writer: Option<Box<dyn ResponseWriter>>,
    bytes: Vec<u8>,
    sent: usize,
    close: bool,
    notice: Option<Notice>,
    deadline: Instant,
}

impl Unfinished {
    fn finish(mut self) {
        if let Some(mut writer) = self.writer.take() {
            let rest = self.bytes.get(self.sent..).unwrap_or_default();
            let written = write_by(&mut *writer, rest, self.deadline);
            if let Err(e) = &written {
                log::debug!("abandoned an answer its client did not read: {}", e);
            }
            let _ = finish(writer, written, self.close, self.notice.take());
        }
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        // Never started: no thread could be had for it.
        if let Some(writer) = self.writer.take() {
            let failed = io::Error::other("no thread to finish the answer");
            let _ = finish(writer, Err(failed), self.close, self.notice.take());
        }
    }
}

/// Writes `rest`, blocking, until `deadline`.
fn write_by(writer: &mut dyn ResponseWriter, mut rest: &[u8], deadline: Instant) -> io::Result<()> {
    while !rest.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                "the client did not read its answer within the write timeout",
            ));
        }
        // A blocking send that times out says WouldBlock: that ends the answer too.
        match writer.send(rest, Some(left)) {
            Some(Ok(0)) => return Err(ErrorKind::WriteZero.into()),
            Some(Ok(sent)) => rest = rest.get(sent..).unwrap_or_default(),
            Some(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
            Some(Err(e)) => return Err(e),
            None => return writer.write_all(rest).and_then(|()| writer.flush()),
        }
    }
    Ok(())
}
