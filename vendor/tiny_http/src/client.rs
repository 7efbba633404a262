use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read, Write};
use std::mem;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::answer::ConnectionWriter;
use crate::chunked;
use crate::common::HTTPVersion;
use crate::head::{head_end, parse_head};
use crate::request::{
    expects_continue, framing, BodyOptions, Framing, RequestCreationError, DRAIN_MAX,
};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::{Header, Limits, Request, Response, StatusCode};

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
///
/// PATCHED (hardening): the head is read with a byte cap and a deadline and
/// parsed by `head::parse_head`; every refusal is answered with a status and
/// `Connection: close` (upstream closed silently on a non-ASCII byte, and read
/// a line without end); a body the handler left unread is drained here, within
/// `DRAIN_MAX` bytes and a header timeout, or the connection is closed; a
/// chunked body is read and checked here, under the same bounds, before its
/// request is queued.
pub struct ClientConnection {
    // address of the client
    remote_addr: Option<SocketAddr>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    limits: Limits,

    // When the first request's head must be complete: accept + header timeout.
    first_deadline: Option<Instant>,

    // Body bytes the previous request's handler left unread.
    unread_body: Arc<AtomicUsize>,
}

/// Why no request was read.
#[derive(Debug)]
enum ReadError {
    /// The client closed, idled out between requests, or broke off: close quietly.
    Closed,
    /// Answer with this status, then close.
    Refuse(u16, HTTPVersion),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: Limits,
        accepted_at: Instant,
    ) -> ClientConnection {
        // PATCHED: upstream unwrapped this later; a peer gone already is not a panic.
        let remote_addr = read_socket.peer_addr().ok().flatten();
        let secure = read_socket.secure();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            first_deadline: Some(accepted_at + limits.header_timeout),
            limits,
            unread_body: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        // The previous request's body reader hands the stream back when dropped.
        if !self.next_header_source.wait_turn() {
            return Err(ReadError::Closed);
        }
        self.drain_unread_body()?;
        let raw = self.read_head()?;
        let arrived_at = Instant::now();
        let head =
            parse_head(&raw).map_err(|e| ReadError::Refuse(e.status(), HTTPVersion(1, 1)))?;

        // building the writer for the request
        let mut writer = self.sink.next().unwrap();

        let chunked_body = self.read_chunked_body(&head.headers, &head.version, &mut writer)?;
        // The body is read under the same bound as the head.
        self.set_read_timeout(self.limits.header_timeout);

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        mem::swap(&mut self.next_header_source, &mut data_source);

        let version = head.version.clone();
        let request = crate::request::new_request(
            self.secure,
            head.method,
            head.path,
            head.version,
            head.headers,
            self.remote_addr,
            data_source,
            ConnectionWriter::new(writer, self.limits.write_timeout),
            BodyOptions {
                deadline: Some(arrived_at + self.limits.header_timeout),
                unread: Some(Arc::clone(&self.unread_body)),
                chunked_body,
            },
        )
        .map_err(|e| refusal(e, version))?;
        Ok(request.with_head_extras(head.obs_headers, arrived_at))
    }

    /// PATCHED (hardening): for a request that declares chunked encoding, its
    /// whole body, read and checked here before the request is queued, so a
    /// malformed one never reaches a handler and no worker waits for one. It
    /// may take `DRAIN_MAX` bytes as sent and `header_timeout` after the head
    /// (after `100 Continue`, if the client waits for that). A malformed body
    /// is 400, a larger one 413, a late one 408; each closes the connection.
    /// A framing the head gets wrong is refused here too, before any wait.
    fn read_chunked_body(
        &mut self,
        headers: &[Header],
        version: &HTTPVersion,
        writer: &mut impl Write,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        match framing(headers).map_err(|e| refusal(e, version.clone()))? {
            Framing::Chunked => {}
            Framing::None | Framing::Length(_) => return Ok(None),
        }
        let waits = expects_continue(headers).map_err(|e| refusal(e, version.clone()))?;
        // An HTTP/1.0 client's expectation is ignored (RFC 9110 §10.1.1).
        if waits && *version == HTTPVersion(1, 1) {
            writer
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .and_then(|()| writer.flush())
                .map_err(|_| ReadError::Closed)?;
        }
        let deadline = Instant::now() + self.limits.header_timeout;
        let reader = self.next_header_source.get_mut().ok_or(ReadError::Closed)?;
        chunked::read_body(reader, DRAIN_MAX, |reader| {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ErrorKind::TimedOut.into());
            }
            if reader.buffer().is_empty() {
                // Each blocking read waits only for what is left of the deadline.
                reader.get_ref().set_read_timeout(Some(left)).ok();
            }
            Ok(())
        })
        .map(Some)
        .map_err(|e| refusal(e.into(), version.clone()))
    }

    /// The next head's bytes, through its empty line; what follows stays buffered.
    fn read_head(&mut self) -> Result<Vec<u8>, ReadError> {
        let Limits {
            header_timeout,
            idle_timeout,
            max_head_bytes,
            ..
        } = self.limits;
        let deadline = match self.first_deadline.take() {
            Some(deadline) => deadline,
            None => {
                // Between requests: the next one may take up to the idle timeout to start.
                self.set_read_timeout(idle_timeout);
                let reader = self.next_header_source.get_mut().ok_or(ReadError::Closed)?;
                match reader.fill_buf() {
                    Ok(bytes) if !bytes.is_empty() => Instant::now() + header_timeout,
                    _ => return Err(ReadError::Closed),
                }
            }
        };
        let mut head = Vec::with_capacity(512);
        let mut received = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Nothing sent at all is an idle connection, not a request.
                return Err(match received {
                    true => ReadError::Refuse(408, HTTPVersion(1, 1)),
                    false => ReadError::Closed,
                });
            }
            let reader = self.next_header_source.get_mut().ok_or(ReadError::Closed)?;
            if reader.buffer().is_empty() {
                // Each blocking read waits only for what is left of the deadline.
                reader.get_ref().set_read_timeout(Some(left)).ok();
            }
            let available = match reader.fill_buf() {
                Ok([]) => return Err(ReadError::Closed),
                Ok(bytes) => bytes,
                Err(e) if timed_out(&e) || e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Err(ReadError::Closed),
            };
            received = true;
            // Empty lines before a request line are ignored (RFC 9112 §2.2).
            let skip = match head.is_empty() {
                true => available
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count(),
                false => 0,
            };
            let chunk = &available[skip..];
            let start = head.len();
            let take = chunk.len().min(max_head_bytes + 1 - start);
            head.extend_from_slice(&chunk[..take]);
            // The empty line may straddle the previous read: look 3 bytes back.
            let from = start.saturating_sub(3);
            if let Some(end) = head_end(&head[from..]).map(|e| from + e) {
                reader.consume(skip + end.saturating_sub(start));
                head.truncate(end);
                return match end > max_head_bytes {
                    true => Err(ReadError::Refuse(431, HTTPVersion(1, 1))),
                    false => Ok(head),
                };
            }
            reader.consume(skip + take);
            if head.len() > max_head_bytes {
                return Err(ReadError::Refuse(431, HTTPVersion(1, 1)));
            }
        }
    }

    /// Skips what the previous handler left of its body, if it is small enough
    /// and arrives in time; otherwise the connection ends.
    fn drain_unread_body(&mut self) -> Result<(), ReadError> {
        let mut left = self.unread_body.swap(0, Ordering::SeqCst);
        if left == 0 {
            return Ok(());
        }
        if left > DRAIN_MAX {
            return Err(ReadError::Closed);
        }
        self.set_read_timeout(self.limits.header_timeout);
        let deadline = Instant::now() + self.limits.header_timeout;
        let reader = self.next_header_source.get_mut().ok_or(ReadError::Closed)?;
        while left > 0 {
            if Instant::now() >= deadline {
                return Err(ReadError::Closed);
            }
            let n = match reader.fill_buf() {
                Ok([]) | Err(_) => return Err(ReadError::Closed),
                Ok(bytes) => bytes.len().min(left),
            };
            reader.consume(n);
            left -= n;
        }
        Ok(())
    }

    fn set_read_timeout(&mut self, timeout: Duration) {
        if let Some(reader) = self.next_header_source.get_mut() {
            // A zero timeout would mean none at all.
            let timeout = timeout.max(Duration::from_millis(1));
            reader.get_ref().set_read_timeout(Some(timeout)).ok();
        }
    }

    /// Answers a request that cannot be served, and ends the connection.
    fn refuse(&mut self, status: u16, version: HTTPVersion) {
        let mut writer = self.sink.next().unwrap();
        let response = Response::new_empty(StatusCode(status));
        let sent = response
            .print(&mut writer, version, &[], false, None, true)
            .and_then(|()| writer.flush());
        drop(writer);
        if sent.is_ok() {
            self.linger();
        }
    }

    /// After a refusal, or an answer that closes the connection: shut our
    /// side and read what the client still sends for a moment, so closing
    /// with unread data (which resets the connection) does not destroy the
    /// answer before the client reads it.
    pub(crate) fn linger(&mut self) {
        const LINGER: Duration = Duration::from_millis(500);
        const LINGER_BYTES: usize = 64 * 1024;
        // PATCHED: a request read ahead hands the stream on once dropped.
        if !self.next_header_source.wait_turn() {
            return;
        }
        self.set_read_timeout(LINGER);
        let Some(reader) = self.next_header_source.get_mut() else {
            return;
        };
        reader.get_mut().shutdown_write().ok();
        let deadline = Instant::now() + LINGER;
        let mut discarded = 0;
        while discarded < LINGER_BYTES && Instant::now() < deadline {
            let n = match reader.fill_buf() {
                Ok([]) | Err(_) => return,
                Ok(bytes) => bytes.len(),
            };
            reader.consume(n);
            discarded += n;
        }
    }
}

/// The answer to a request that cannot be built, or none (the client is gone).
fn refusal(e: RequestCreationError, version: HTTPVersion) -> ReadError {
    match e {
        RequestCreationError::ExpectationFailed => ReadError::Refuse(417, version),
        RequestCreationError::NotImplemented => ReadError::Refuse(501, version),
        RequestCreationError::BadRequest => ReadError::Refuse(400, version),
        RequestCreationError::PayloadTooLarge => ReadError::Refuse(413, version),
        RequestCreationError::CreationIoError(e) if timed_out(&e) => {
            ReadError::Refuse(408, version)
        }
        RequestCreationError::CreationIoError(_) => ReadError::Closed,
    }
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        let mut rq = match self.read() {
            Ok(rq) => rq,
            Err(ReadError::Closed) => {
                self.no_more_requests = true;
                return None;
            }
            Err(ReadError::Refuse(status, version)) => {
                self.no_more_requests = true;
                self.refuse(status, version);
                return None;
            }
        };

        // updating the status of the connection
        let connection_header = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Connection"))
            .map(|h| h.value.as_str());

        let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

        let last = match lowercase {
            Some(ref val) if val.contains("close") => true,
            Some(ref val) if val.contains("upgrade") => true,
            Some(ref val)
                if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
            {
                true
            }
            None if *rq.http_version() == HTTPVersion(1, 0) => true,
            _ => false,
        };
        if last {
            rq.close_connection();
        }
        // A body too large to drain closes the connection as well.
        self.no_more_requests = rq.closes_connection();

        // returning the request
        Some(rq)
    }
}
