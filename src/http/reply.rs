//! Answers as plain values, and where they go: handlers never touch a socket.

use std::io::Cursor;

use tiny_http::{Header, Response};

/// Where a handler's `Reply` goes: once, now or from another thread. The
/// server's responder writes it to the client and logs the request's line.
pub struct Responder(Box<dyn FnOnce(Reply) + Send>);

impl Responder {
    pub fn new(respond: impl FnOnce(Reply) + Send + 'static) -> Responder {
        Responder(Box::new(respond))
    }

    pub fn send(self, reply: Reply) {
        (self.0)(reply)
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

/// A response as a value. HEAD requests get the same headers; tiny_http drops the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn into_response(self) -> Response<Cursor<Vec<u8>>> {
        let mut response =
            Response::from_data(self.body.into_bytes()).with_status_code(self.status);
        let headers = [("Content-Type", "text/plain; charset=utf-8".to_owned())]
            .into_iter()
            .chain(self.headers);
        for (name, value) in headers {
            // Values are built by the app from checked parts, so this never fails in practice.
            match Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                Ok(header) => response.add_header(header),
                Err(()) => log::error!("dropped an invalid {name} header"),
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_finds_its_headers_case_insensitively() {
        let reply = Reply::text(405, "x").with_header("Allow", "GET, HEAD");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
        assert_eq!(reply.header("Set-Cookie"), None);
    }
}
