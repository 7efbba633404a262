use std::io::Error as IoError;
use std::io::{self, BufReader, Cursor, ErrorKind, Read, Write};

use std::fmt;
use std::net::SocketAddr;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use crate::answer::{self, Answered, Notice, ResponseWriter, DIRECT_MAX};
use crate::chunked::{self, ChunkedError};
use crate::util::{EqualReader, FusedReader};
use crate::{HTTPVersion, Header, HeaderField, Method, Response, StatusCode};

/// PATCHED (hardening): the most body bytes the server reads past, on the
/// connection's own thread, when the handler leaves a body unread. A larger
/// body costs the connection instead (`Connection: close`).
pub(crate) const DRAIN_MAX: usize = 64 * 1024;

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # Pipelining
///
/// If a client sends multiple requests in a row (without waiting for the response), then you will
/// get multiple `Request` objects simultaneously. This is called *requests pipelining*.
/// Tiny-http automatically reorders the responses so that you don't need to worry about the order
/// in which you call `respond` or `into_writer`.
///
/// This mechanic is disabled if:
///
///  - The body of a request is large enough (handling requires pipelining requires storing the
///    body of the request in a buffer ; if the body is too big, tiny-http will avoid doing that)
///  - A request sends a `Expect: 100-continue` header (which means that the client waits to
///    know whether its body will be processed before sending it)
///  - A request sends a `Connection: close` header or `Connection: upgrade` header (used for
///    websockets), which indicates that this is the last request that will be received on this
///    connection
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
/// This means that if your code fails during the handling of a request, this "internal server
/// error" response will automatically be sent during the stack unwinding.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // where to read the body from
    data_reader: Option<Box<dyn Read + Send + 'static>>,

    // if this writer is empty, then the request has been answered
    // PATCHED: a writer that can also send without blocking (`answer.rs`).
    response_writer: Option<Box<dyn ResponseWriter>>,

    remote_addr: Option<SocketAddr>,

    // true if HTTPS, false if HTTP
    secure: bool,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    // PATCHED: headers whose values hold bytes 0x80-0xFF.
    obs_headers: Vec<(HeaderField, Vec<u8>)>,

    // PATCHED: when the head was read, so a server can shed requests that waited too long.
    arrived_at: Instant,

    // PATCHED: the connection closes after this response, which then says so.
    close_connection: bool,

    body_length: Option<usize>,

    // true if a `100 Continue` response must be sent when `as_reader()` is called
    must_send_continue: bool,

    // If Some, a message must be sent after responding
    // PATCHED: once the answer is written or abandoned, saying which.
    notify_when_responded: Option<Notice>,
}

struct NotifyOnDrop<R> {
    // PATCHED: how the connection goes on once this writer is done.
    notice: Option<Notice>,
    answered: Answered,
    inner: R,
}

impl<R: Read> Read for NotifyOnDrop<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}
impl<R: Write> Write for NotifyOnDrop<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
impl<R> Drop for NotifyOnDrop<R> {
    fn drop(&mut self) {
        // PATCHED: a connection that ended before its answer must not panic a worker.
        if let Some(notice) = self.notice.take() {
            notice.send(self.answered);
        }
    }
}

/// Error that can happen when building a `Request` object.
#[derive(Debug)]
pub enum RequestCreationError {
    /// The client sent an `Expect` header that was not recognized by tiny-http.
    ExpectationFailed,

    /// Error while reading data from the socket during the creation of the `Request`.
    CreationIoError(IoError),

    /// PATCHED: a `Transfer-Encoding` other than `chunked` (answered 501).
    NotImplemented,

    /// PATCHED: a malformed or conflicting `Content-Length`, both
    /// `Content-Length` and `Transfer-Encoding`, or a malformed chunked body
    /// (answered 400).
    BadRequest,

    /// PATCHED: a chunked body over `DRAIN_MAX` (answered 413).
    PayloadTooLarge,
}

/// PATCHED (hardening): how `new_request` reads the body.
#[derive(Default)]
pub(crate) struct BodyOptions {
    /// A small body is read before the request is handed out; it must have arrived by then.
    pub deadline: Option<Instant>,
    /// Where the body reader leaves the count of bytes the handler did not read.
    pub unread: Option<Arc<AtomicUsize>>,
    /// A chunked body already read and decoded by the connection's thread.
    pub chunked_body: Option<Vec<u8>>,
}

/// PATCHED (hardening): how a request's body is delimited, from its head alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    Length(usize),
    Chunked,
}

/// PATCHED (hardening): the body's framing, or why it cannot be trusted.
///
/// - `Transfer-Encoding` with `Content-Length` is 400 (RFC 9112 §6.3 allows
///   it, and the connection closes): two framings are how requests are
///   smuggled past a proxy that reads the other one. Upstream let
///   `Transfer-Encoding` win silently.
/// - Every `Transfer-Encoding` line counts, and together they must say
///   exactly `chunked`; anything else is 501. Upstream read only the first.
/// - `Content-Length` must be digits and every copy must agree (400).
pub(crate) fn framing(headers: &[Header]) -> Result<Framing, RequestCreationError> {
    let mut codings = headers
        .iter()
        .filter(|h| h.field.equiv("Transfer-Encoding"))
        .peekable();
    if codings.peek().is_none() {
        return Ok(content_length(headers)?.map_or(Framing::None, Framing::Length));
    }
    if headers.iter().any(|h| h.field.equiv("Content-Length")) {
        return Err(RequestCreationError::BadRequest);
    }
    let mut codings = codings
        .flat_map(|h| h.value.as_str().split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (Some(only), None) if only.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
        _ => Err(RequestCreationError::NotImplemented),
    }
}

/// Whether the client waits for `100 Continue`; any other expectation is 417.
pub(crate) fn expects_continue(headers: &[Header]) -> Result<bool, RequestCreationError> {
    match headers
        .iter()
        .find(|h: &&Header| h.field.equiv("Expect"))
        .map(|h| h.value.as_str())
    {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("100-continue") => Ok(true),
        _ => Err(RequestCreationError::ExpectationFailed),
    }
}

impl From<ChunkedError> for RequestCreationError {
    fn from(err: ChunkedError) -> RequestCreationError {
        match err {
            ChunkedError::Malformed => RequestCreationError::BadRequest,
            ChunkedError::TooLarge => RequestCreationError::PayloadTooLarge,
            ChunkedError::Io(e) => RequestCreationError::CreationIoError(e),
        }
    }
}

/// PATCHED: every `Content-Length` must be digits and agree (RFC 9112 §6.3);
/// upstream took the first that parsed and ignored the rest.
fn content_length(headers: &[Header]) -> Result<Option<usize>, RequestCreationError> {
    let mut length = None;
    for header in headers.iter().filter(|h| h.field.equiv("Content-Length")) {
        let text = header.value.as_str();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RequestCreationError::BadRequest);
        }
        let value: usize = text.parse().map_err(|_| RequestCreationError::BadRequest)?;
        if length.is_some_and(|l| l != value) {
            return Err(RequestCreationError::BadRequest);
        }
        length = Some(value);
    }
    Ok(length)
}

impl From<IoError> for RequestCreationError {
    fn from(err: IoError) -> RequestCreationError {
        RequestCreationError::CreationIoError(err)
    }
}

/// Builds a new request.
///
/// After the request line and headers have been read from the socket, a new `Request` object
/// is built.
///
/// You must pass a `Read` that will allow the `Request` object to read from the incoming data.
/// It is the responsibility of the `Request` to read only the data of the request and not further.
///
/// The `Write` object will be used by the `Request` to write the response.
#[allow(clippy::too_many_arguments)]
pub fn new_request<R, W>(
    secure: bool,
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    mut source_data: R,
    writer: W,
    body: BodyOptions,
) -> Result<Request, RequestCreationError>
where
    R: Read + Send + 'static,
    W: ResponseWriter + 'static,
{
    // PATCHED: one framing or none (see `framing`); upstream let
    // Transfer-Encoding win over Content-Length and decoded any value as chunked.
    let framing = framing(&headers)?;
    let content_length = match framing {
        Framing::Length(length) => Some(length),
        Framing::None | Framing::Chunked => None,
    };
    let chunked = framing == Framing::Chunked;

    // true if the client sent a `Expect: 100-continue` header
    let expects_continue = expects_continue(&headers)?;

    // PATCHED: a chunked body is decoded whole before the request exists, so
    // a malformed one never reaches a handler. The connection's thread reads
    // it (`client.rs`, which answers `100 Continue` itself); otherwise it is
    // read here a byte at a time, so nothing past its end is taken.
    let chunked_body = match (chunked, body.chunked_body) {
        (false, _) => None,
        (true, Some(decoded)) => Some(decoded),
        (true, None) => {
            let mut source = BufReader::with_capacity(1, &mut source_data);
            let deadline = body.deadline;
            Some(chunked::read_body(
                &mut source,
                DRAIN_MAX,
                |_| match deadline.is_some_and(|d| Instant::now() >= d) {
                    true => Err(ErrorKind::TimedOut.into()),
                    false => Ok(()),
                },
            )?)
        }
    };

    // true if the client sent a `Connection: upgrade` header
    let connection_upgrade = {
        match headers
            .iter()
            .find(|h: &&Header| h.field.equiv("Connection"))
            .map(|h| h.value.as_str())
        {
            Some(v) if v.to_ascii_lowercase().contains("upgrade") => true,
            _ => false,
        }
    };

    // PATCHED: a body the server will not read past on its own (chunked, awaiting
    // 100-continue, or beyond DRAIN_MAX) ends the connection after the answer.
    let close_connection = connection_upgrade
        || chunked
        || (expects_continue && content_length.is_some_and(|l| l > 0))
        || content_length.is_some_and(|l| l > DRAIN_MAX);

    // we wrap `source_data` around a reading whose nature depends on the transfer-encoding and
    // content-length headers
    let reader = if let Some(decoded) = chunked_body {
        // PATCHED: the decoded body; after an upgrade, the stream goes on from its end.
        match connection_upgrade {
            true => Box::new(Cursor::new(decoded).chain(source_data)) as Box<dyn Read + Send>,
            false => Box::new(Cursor::new(decoded)) as Box<dyn Read + Send + 'static>,
        }
    } else if connection_upgrade {
        // if we have a `Connection: upgrade`, always keeping the whole reader
        Box::new(source_data) as Box<dyn Read + Send + 'static>
    } else if let Some(content_length) = content_length {
        if content_length == 0 {
            Box::new(io::empty()) as Box<dyn Read + Send + 'static>
        } else if content_length <= 1024 && !expects_continue {
            // if the content-length is small enough, we just read everything into a buffer

            let mut buffer = vec![0; content_length];
            let mut offset = 0;

            while offset != content_length {
                // PATCHED: a body dribbled in slowly is bounded by the deadline too.
                if body.deadline.is_some_and(|d| Instant::now() >= d) {
                    let err = IoError::new(ErrorKind::TimedOut, "the body did not arrive in time");
                    return Err(RequestCreationError::CreationIoError(err));
                }
                let read = source_data.read(&mut buffer[offset..])?;
                if read == 0 {
                    // the socket returned EOF, but we were before the expected content-length
                    // aborting
                    let info = "Connection has been closed before we received enough data";
                    let err = IoError::new(ErrorKind::ConnectionAborted, info);
                    return Err(RequestCreationError::CreationIoError(err));
                }

                offset += read;
            }

            Box::new(Cursor::new(buffer)) as Box<dyn Read + Send + 'static>
        } else {
            let data_reader = EqualReader::new(source_data, content_length, body.unread);
            Box::new(FusedReader::new(data_reader)) as Box<dyn Read + Send + 'static>
        }
    } else {
        // if we have neither a Content-Length nor a Transfer-Encoding,
        // assuming that we have no data
        // TODO: could also be multipart/byteranges
        Box::new(io::empty()) as Box<dyn Read + Send + 'static>
    };

    Ok(Request {
        data_reader: Some(reader),
        response_writer: Some(Box::new(writer) as Box<dyn ResponseWriter>),
        remote_addr,
        secure,
        method,
        path,
        http_version: version,
        headers,
        obs_headers: Vec::new(),
        arrived_at: Instant::now(),
        close_connection,
        body_length: content_length,
        // PATCHED: a chunked body has been read already.
        must_send_continue: expects_continue && !chunked,
        notify_when_responded: None,
    })
}

impl Request {
    /// Returns true if the request was made through HTTPS.
    #[inline]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    ///
    /// PATCHED: headers whose values hold bytes 0x80-0xFF are not in this
    /// list; `header_bytes` finds every header.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// PATCHED: the value of the first header called `name` (case-insensitive),
    /// as the client sent it, including values with bytes 0x80-0xFF.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        let ascii = self
            .headers
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_bytes());
        ascii.or_else(|| {
            self.obs_headers
                .iter()
                .find(|(field, _)| field.as_str().as_str().eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_slice())
        })
    }

    /// PATCHED: when the request's head had been read.
    #[inline]
    pub fn arrived_at(&self) -> Instant {
        self.arrived_at
    }

    /// PATCHED: true when the connection closes after this request's response.
    #[inline]
    pub fn closes_connection(&self) -> bool {
        self.close_connection
    }

    pub(crate) fn with_head_extras(
        mut self,
        obs_headers: Vec<(HeaderField, Vec<u8>)>,
        arrived_at: Instant,
    ) -> Self {
        self.obs_headers = obs_headers;
        self.arrived_at = arrived_at;
        self
    }

    /// PATCHED: the connection closes once this request is answered. The
    /// answer says `Connection: close`; a request its client sent meanwhile
    /// is dropped unanswered and unhandled (RFC 9112 §9.6), even though the
    /// connection's thread has read it already.
    pub fn close_connection(&mut self) {
        self.close_connection = true;
    }

    /// PATCHED: drops a request its connection will not serve, without an
    /// answer (a request read ahead on a connection that ends).
    pub(crate) fn discard(mut self) {
        self.response_writer = None;
        self.notify_when_responded = None;
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes.
    ///
    /// Returns `None` if the length is unknown.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Sends a response with a `Connection: upgrade` header, then turns the `Request` into a `Stream`.
    ///
    /// The main purpose of this function is to support websockets.
    /// If you detect that the request wants to use some kind of protocol upgrade, you can
    ///  call this function to obtain full control of the socket stream.
    ///
    /// If you call this on a non-websocket request, tiny-http will wait until this `Stream` object
    ///  is destroyed before continuing to read or write on the socket. Therefore you should always
    ///  destroy it as soon as possible.
    pub fn upgrade<R: Read>(
        mut self,
        protocol: &str,
        response: Response<R>,
    ) -> Box<dyn ReadWrite + Send> {
        use crate::util::CustomStream;

        response
            .raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                false,
                Some(protocol),
            )
            .ok(); // TODO: unused result

        self.response_writer.as_mut().unwrap().flush().ok(); // TODO: unused result

        let stream = CustomStream::new(self.extract_reader_impl(), self.extract_writer_impl());
        if let Some(notice) = self.notify_when_responded.take() {
            let stream = NotifyOnDrop {
                notice: Some(notice),
                answered: Answered::Closes,
                inner: stream,
            };
            Box::new(stream) as Box<dyn ReadWrite + Send>
        } else {
            Box::new(stream) as Box<dyn ReadWrite + Send>
        }
    }

    /// Allows to read the body of the request.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # extern crate rustc_serialize;
    /// # extern crate tiny_http;
    /// # use rustc_serialize::json::Json;
    /// # use std::io::Read;
    /// # fn get_content_type(_: &tiny_http::Request) -> &'static str { "" }
    /// # fn main() {
    /// # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    /// let mut request = server.recv().unwrap();
    ///
    /// if get_content_type(&request) == "application/json" {
    ///     let mut content = String::new();
    ///     request.as_reader().read_to_string(&mut content).unwrap();
    ///     let json: Json = content.parse().unwrap();
    /// }
    /// # }
    /// ```
    ///
    /// If the client sent a `Expect: 100-continue` header with the request, calling this
    ///  function will send back a `100 Continue` response.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        if self.must_send_continue {
            let msg = Response::new_empty(StatusCode(100));
            msg.raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                true,
                None,
            )
            .ok();
            self.response_writer.as_mut().unwrap().flush().ok();
            self.must_send_continue = false;
        }

        self.data_reader.as_mut().unwrap()
    }

    /// Turns the `Request` into a writer.
    ///
    /// The writer has a raw access to the stream to the user.
    /// This function is useful for things like CGI.
    ///
    /// Note that the destruction of the `Writer` object may trigger
    /// some events. For exemple if a client has sent multiple requests and the requests
    /// have been processed in parallel, the destruction of a writer will trigger
    /// the writing of the next response.
    /// Therefore you should always destroy the `Writer` as soon as possible.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        let writer = self.extract_writer_impl();
        if let Some(notice) = self.notify_when_responded.take() {
            let writer = NotifyOnDrop {
                notice: Some(notice),
                answered: match self.close_connection {
                    true => Answered::Closes,
                    false => Answered::Written,
                },
                inner: writer,
            };
            Box::new(writer) as Box<dyn Write + Send + 'static>
        } else {
            Box::new(writer) as Box<dyn Write + Send + 'static>
        }
    }

    /// Extract the response `Writer` object from the Request, dropping this `Writer` has the same side effects
    /// as the object returned by `into_writer` above.
    ///
    /// This may only be called once on a single request.
    fn extract_writer_impl(&mut self) -> Box<dyn ResponseWriter> {
        use std::mem;

        assert!(self.response_writer.is_some());

        let mut writer = None;
        mem::swap(&mut self.response_writer, &mut writer);
        writer.unwrap()
    }

    /// Extract the body `Reader` object from the Request.
    ///
    /// This may only be called once on a single request.
    fn extract_reader_impl(&mut self) -> Box<dyn Read + Send + 'static> {
        use std::mem;

        assert!(self.data_reader.is_some());

        let mut reader = None;
        mem::swap(&mut self.data_reader, &mut reader);
        reader.unwrap()
    }

    /// Sends a response to this request.
    ///
    /// PATCHED: a response of known length up to 64 KiB never blocks:
    /// what the client's socket does not take at once is written by a
    /// thread of its own, within the write timeout, or the connection is
    /// closed (`answer.rs`). Larger ones, and those of unknown length, are
    /// written here, each write blocking up to the write timeout.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        self.respond_impl(response)
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let mut writer = self.extract_writer_impl();
        // PATCHED: the connection's thread learns once the answer is written or abandoned.
        let notice = self.notify_when_responded.take();

        let do_not_send_body = self.method == Method::Head;
        let close = self.close_connection;

        let result = match response.data_length() {
            Some(length) if length <= DIRECT_MAX => {
                let mut bytes = Vec::with_capacity(1024 + length);
                let printed = response.bounded().print(
                    &mut bytes,
                    self.http_version.clone(),
                    &self.headers,
                    do_not_send_body,
                    None,
                    close,
                );
                match printed {
                    Ok(()) => answer::deliver(writer, bytes, close, notice),
                    Err(e) => answer::finish(writer, Err(e), close, notice),
                }
            }
            _ => {
                let written = response
                    .print(
                        writer.by_ref(),
                        self.http_version.clone(),
                        &self.headers,
                        do_not_send_body,
                        None,
                        close,
                    )
                    .and_then(|()| writer.flush());
                answer::finish(writer, written, close, notice)
            }
        };
        Self::ignore_client_closing_errors(result)
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }

    pub(crate) fn with_notice(mut self, notice: Notice) -> Self {
        self.notify_when_responded = Some(notice);
        self
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            let response = Response::empty(500);
            // PATCHED: through the same path as any answer, which tells the
            // connection's thread (upstream unwrapped a send here, a panic
            // inside a drop).
            let _ = self.respond_impl(response); // ignoring any potential error
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::{framing, Framing, Request, RequestCreationError};
    use crate::Header;

    fn headers(lines: &[&str]) -> Vec<Header> {
        lines.iter().map(|l| l.parse().unwrap()).collect()
    }

    /// The status a head's framing is refused with, or its framing.
    fn framing_of(lines: &[&str]) -> Result<Framing, u16> {
        framing(&headers(lines)).map_err(|e| match e {
            RequestCreationError::BadRequest => 400,
            RequestCreationError::NotImplemented => 501,
            other => panic!("{:?}", other),
        })
    }

    #[test]
    fn one_framing_or_none() {
        assert_eq!(framing_of(&[]), Ok(Framing::None));
        assert_eq!(framing_of(&["Content-Length: 5"]), Ok(Framing::Length(5)));
        let same = ["Content-Length: 5", "Content-Length: 5"];
        assert_eq!(framing_of(&same), Ok(Framing::Length(5)));
        assert_eq!(
            framing_of(&["Transfer-Encoding: chunked"]),
            Ok(Framing::Chunked)
        );
        let spelled = ["Transfer-Encoding: ,  CHUNKED , "];
        assert_eq!(framing_of(&spelled), Ok(Framing::Chunked));
    }

    #[test]
    fn two_framings_are_400_and_other_codings_501() {
        let cases: [(&[&str], u16); 9] = [
            (&["Content-Length: 4", "Transfer-Encoding: chunked"], 400),
            (&["Transfer-Encoding: chunked", "Content-Length: 0"], 400),
            (&["Transfer-Encoding: gzip", "Content-Length: 4"], 400),
            (&["Content-Length: 5", "Content-Length: 6"], 400),
            (&["Content-Length: +5"], 400),
            (&["Transfer-Encoding: gzip"], 501),
            (
                &["Transfer-Encoding: chunked", "Transfer-Encoding: identity"],
                501,
            ),
            (&["Transfer-Encoding: chunked, chunked"], 501),
            (&["Transfer-Encoding: "], 501),
        ];
        for (lines, status) in cases {
            assert_eq!(framing_of(lines), Err(status), "{:?}", lines);
        }
    }

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
