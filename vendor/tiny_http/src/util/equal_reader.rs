use std::io::Read;
use std::io::Result as IoResult;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A `Reader` that reads exactly the number of bytes from a sub-reader.
///
/// If the limit is reached, it returns EOF. PATCHED: if the limit is not
/// reached when the destructor is called, the count of remaining bytes is
/// stored in `unread`, and nothing more is read here (see `Drop` below).
pub struct EqualReader<R>
where
    R: Read,
{
    reader: R,
    size: usize,
    unread: Option<Arc<AtomicUsize>>,
}

impl<R> EqualReader<R>
where
    R: Read,
{
    pub fn new(reader: R, size: usize, unread: Option<Arc<AtomicUsize>>) -> EqualReader<R> {
        EqualReader {
            reader,
            size,
            unread,
        }
    }
}

impl<R> Read for EqualReader<R>
where
    R: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if self.size == 0 {
            return Ok(0);
        }

        let buf = if buf.len() < self.size {
            buf
        } else {
            &mut buf[..self.size]
        };

        match self.reader.read(buf) {
            Ok(len) => {
                self.size -= len;
                Ok(len)
            }
            err @ Err(_) => err,
        }
    }
}

/// PATCHED (hardening): upstream read the rest of the body here, in the
/// handler's thread, into one buffer of the remaining size: a declared
/// `Content-Length: 1152921504606846976` aborted the process (allocation
/// failure), 18446744073709551615 panicked (capacity overflow), and a body that
/// never came blocked the worker for good. Now the count is left for the
/// connection's own thread, which drains a bounded amount with a deadline.
/// The count is stored before `reader` is dropped, which hands the stream on.
impl<R> Drop for EqualReader<R>
where
    R: Read,
{
    fn drop(&mut self) {
        if let Some(unread) = &self.unread {
            unread.store(self.size, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EqualReader;
    use std::io::Read;

    #[test]
    fn test_limit() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let mut equal_reader = EqualReader::new(org_reader.by_ref(), 5, None);

            let mut string = String::new();
            equal_reader.read_to_string(&mut string).unwrap();
            assert_eq!(string, "hello");
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }

    #[test]
    fn an_unread_rest_is_counted_not_read() {
        use std::io::Cursor;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());
        let unread = Arc::new(AtomicUsize::new(0));

        {
            let mut equal_reader =
                EqualReader::new(org_reader.by_ref(), 5, Some(Arc::clone(&unread)));

            let mut vec = [0];
            equal_reader.read_exact(&mut vec).unwrap();
            assert_eq!(vec[0], b'h');
        }

        assert_eq!(unread.load(Ordering::SeqCst), 4);
        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, "ello world", "the drop read nothing");
    }

    #[test]
    fn a_huge_declared_length_costs_nothing_on_drop() {
        use std::io::Cursor;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        let unread = Arc::new(AtomicUsize::new(0));
        for size in [1 << 60, usize::MAX] {
            drop(EqualReader::new(
                Cursor::new(Vec::new()),
                size,
                Some(Arc::clone(&unread)),
            ));
            assert_eq!(unread.load(Ordering::SeqCst), size);
        }
    }
}
