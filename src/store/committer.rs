//! Group commit: hits wait in one queue per instance; committer threads
//! each take everything queued (up to `HIT_BATCH_MAX`), record it with one
//! `CALL record_hits`, one durable commit, and then call each hit's
//! completion with the outcome of the transaction that held its row.
//!
//! No timer and no added delay: a batch is whatever arrived while the
//! previous commit was in flight, so at low load it holds one hit.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

use super::{DbError, Hit, HitWriter};
use crate::telemetry::metrics::metrics;

/// Why a hit was not recorded. Every case is a 503 to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRecorded {
    /// The batch failed before or without taking effect: the hit is not counted.
    Failed,
    /// The connection broke after the batch was sent: it may have been counted.
    OutcomeUnknown,
    /// The instance is shutting down and takes no new hits.
    ShuttingDown,
}

impl From<&DbError> for NotRecorded {
    fn from(error: &DbError) -> NotRecorded {
        match error {
            DbError::OutcomeUnknown(_) => NotRecorded::OutcomeUnknown,
            _ => NotRecorded::Failed,
        }
    }
}

/// What the committers have done, for the log and the benchmark.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    pub batches: u64,
    pub hits: u64,
}

/// The queue of hits waiting for a committer, and the committer threads.
pub struct Committer {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct Shared {
    queue: Mutex<Queue>,
    arrived: Condvar,
    batch_max: usize,
    batches: AtomicU64,
    hits: AtomicU64,
}

struct Queue {
    waiting: VecDeque<Waiter>,
    stopping: bool,
}

/// What to do once a hit's transaction has returned (or never will).
pub type Completion = Box<dyn FnOnce(Result<(), NotRecorded>) + Send>;

struct Waiter {
    hit: Hit,
    done: Completion,
}

impl Committer {
    /// Starts `committers` threads, each with a writer of its own (its own
    /// database connection), taking at most `batch_max` hits per batch.
    pub fn start(writers: Vec<Box<dyn HitWriter>>, batch_max: usize) -> std::io::Result<Committer> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                waiting: VecDeque::new(),
                stopping: false,
            }),
            arrived: Condvar::new(),
            batch_max,
            batches: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        });
        let committer = Committer {
            shared: Arc::clone(&shared),
            threads: Mutex::new(Vec::new()),
        };
        for (id, writer) in writers.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            let handle = thread::Builder::new()
                .name(format!("committer-{id}"))
                .spawn(move || commit_batches(&shared, writer))?;
            committer.lock_threads().push(handle);
        }
        Ok(committer)
    }

    /// Queues `hit`; `done` is called with the outcome once the transaction
    /// that holds it has returned, by a committer thread (at once, here, when
    /// the committer is stopping).
    pub fn submit(&self, hit: Hit, done: impl FnOnce(Result<(), NotRecorded>) + Send + 'static) {
        let done: Completion = Box::new(done);
        let refused = {
            let mut queue = self.shared.lock();
            if queue.stopping {
                Some(done)
            } else {
                queue.waiting.push_back(Waiter { hit, done });
                metrics().set_queue_depth(queue.waiting.len());
                None
            }
        };
        match refused {
            Some(done) => done(Err(NotRecorded::ShuttingDown)),
            None => self.shared.arrived.notify_one(),
        }
    }

    /// Takes no new hits, commits (or fails) every queued one, and waits for
    /// the committers to finish.
    pub fn stop(&self) -> CommitStats {
        self.shared.lock().stopping = true;
        self.shared.arrived.notify_all();
        for handle in self.lock_threads().drain(..) {
            if handle.join().is_err() {
                log::error!("a committer panicked");
            }
        }
        // Anything a dead committer left behind is answered, never forgotten.
        let left: Vec<Waiter> = self.shared.lock().waiting.drain(..).collect();
        complete(left, Err(NotRecorded::ShuttingDown));
        self.stats()
    }

    pub fn stats(&self) -> CommitStats {
        CommitStats {
            batches: self.shared.batches.load(Ordering::Relaxed),
            hits: self.shared.hits.load(Ordering::Relaxed),
        }
    }

    fn lock_threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Shared {
    // The queue stays consistent even if a holder panicked: it only pushes and drains.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next batch: blocks until a hit waits; `None` once stopping and empty.
    fn next_batch(&self) -> Option<Vec<Waiter>> {
        let mut queue = self.lock();
        while queue.waiting.is_empty() {
            if queue.stopping {
                return None;
            }
            queue = self
                .arrived
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let take = queue.waiting.len().min(self.batch_max);
        let batch = queue.waiting.drain(..take).collect();
        metrics().set_queue_depth(queue.waiting.len());
        Some(batch)
    }
}

/// One committer's loop: a batch at a time, until stopped and drained.
fn commit_batches(shared: &Shared, mut writer: Box<dyn HitWriter>) {
    while let Some(batch) = shared.next_batch() {
        let hits: Vec<&Hit> = batch.iter().map(|w| &w.hit).collect();
        let outcome = match writer.record_hits(&hits) {
            Ok(recorded) => {
                metrics().batch(hits.len(), recorded);
                Ok(())
            }
            Err(error) => {
                log::error!("a batch of {} hit(s) was not recorded: {error}", hits.len());
                Err(NotRecorded::from(&error))
            }
        };
        if outcome.is_ok() {
            shared.batches.fetch_add(1, Ordering::Relaxed);
            shared.hits.fetch_add(hits.len() as u64, Ordering::Relaxed);
        }
        complete(batch, outcome);
    }
}

/// Calls each waiter's completion; one that panics costs its own answer only.
fn complete(waiters: Vec<Waiter>, outcome: Result<(), NotRecorded>) {
    for waiter in waiters {
        if catch_unwind(AssertUnwindSafe(|| (waiter.done)(outcome))).is_err() {
            log::error!("answering a hit panicked; the committer carries on");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_id::RequestId;
    use std::sync::Barrier;
    use std::sync::mpsc::{self, Receiver};
    use std::time::Duration;

    /// Submits a hit; the receiver gets its outcome.
    fn submit(committer: &Committer) -> Receiver<Result<(), NotRecorded>> {
        let (outcome, receiver) = mpsc::channel();
        committer.submit(hit(), move |result| {
            let _ = outcome.send(result);
        });
        receiver
    }

    fn outcome(receiver: &Receiver<Result<(), NotRecorded>>) -> Result<(), NotRecorded> {
        receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("an outcome")
    }

    fn hit() -> Hit {
        Hit {
            request_id: RequestId::random(),
            client_ip: "192.0.2.1".parse().unwrap(),
            internal_ip: "10.0.0.2".parse().unwrap(),
        }
    }

    /// Records batch sizes; fails as told; can hold a batch until released.
    struct Scripted {
        sizes: Arc<Mutex<Vec<usize>>>,
        fail_with: Option<fn() -> DbError>,
        gate: Option<Arc<Barrier>>,
    }

    impl HitWriter for Scripted {
        fn record_hits(&mut self, hits: &[&Hit]) -> Result<u64, DbError> {
            self.sizes.lock().unwrap().push(hits.len());
            if let Some(gate) = &self.gate {
                gate.wait();
                gate.wait();
            }
            match self.fail_with {
                Some(error) => Err(error()),
                None => Ok(hits.len() as u64),
            }
        }
    }

    fn scripted(
        fail_with: Option<fn() -> DbError>,
        gate: Option<Arc<Barrier>>,
    ) -> (Box<dyn HitWriter>, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let writer = Scripted {
            sizes: Arc::clone(&sizes),
            fail_with,
            gate,
        };
        (Box::new(writer), sizes)
    }

    #[test]
    fn a_lone_hit_is_committed_at_once_in_a_batch_of_one() {
        let (writer, sizes) = scripted(None, None);
        let committer = Committer::start(vec![writer], 256).unwrap();
        assert_eq!(outcome(&submit(&committer)), Ok(()));
        assert_eq!(*sizes.lock().unwrap(), vec![1]);
        assert_eq!(
            committer.stop(),
            CommitStats {
                batches: 1,
                hits: 1
            }
        );
    }

    #[test]
    fn hits_that_arrive_during_a_commit_form_the_next_batch_up_to_the_maximum() {
        let gate = Arc::new(Barrier::new(2));
        let (writer, sizes) = scripted(None, Some(Arc::clone(&gate)));
        let committer = Committer::start(vec![writer], 4).unwrap();
        let first = submit(&committer);
        gate.wait(); // the first batch is in flight
        let others: Vec<_> = (0..6).map(|_| submit(&committer)).collect();
        while committer.shared.lock().waiting.len() < 6 {
            thread::sleep(Duration::from_millis(5));
        }
        gate.wait(); // release the first batch
        for _ in 0..2 {
            gate.wait();
            gate.wait();
        }
        assert_eq!(outcome(&first), Ok(()));
        for other in &others {
            assert_eq!(outcome(other), Ok(()));
        }
        assert_eq!(*sizes.lock().unwrap(), vec![1, 4, 2]);
        assert_eq!(committer.stop().hits, 7);
    }

    #[test]
    fn every_waiter_of_a_failed_batch_hears_how_it_failed() {
        let unknown = || {
            DbError::OutcomeUnknown(mysql::Error::IoError(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            )))
        };
        let (writer, _) = scripted(Some(unknown), None);
        let committer = Committer::start(vec![writer], 256).unwrap();
        assert_eq!(
            outcome(&submit(&committer)),
            Err(NotRecorded::OutcomeUnknown)
        );

        let refused = || DbError::Server {
            code: 1213,
            message: "deadlock".into(),
        };
        let (writer, _) = scripted(Some(refused), None);
        let committer = Committer::start(vec![writer], 256).unwrap();
        assert_eq!(outcome(&submit(&committer)), Err(NotRecorded::Failed));
        assert_eq!(committer.stop(), CommitStats::default());
    }

    #[test]
    fn after_stop_no_hit_is_taken_and_none_is_left_unanswered() {
        let gate = Arc::new(Barrier::new(2));
        let (writer, sizes) = scripted(None, Some(Arc::clone(&gate)));
        let committer = Arc::new(Committer::start(vec![writer], 256).unwrap());
        let queued: Vec<_> = (0..3).map(|_| submit(&committer)).collect();
        gate.wait(); // a batch is in flight
        let in_flight = || sizes.lock().unwrap().iter().sum::<usize>();
        while committer.shared.lock().waiting.len() + in_flight() < 3 {
            thread::sleep(Duration::from_millis(5));
        }
        let stopping = {
            let committer = Arc::clone(&committer);
            thread::spawn(move || committer.stop())
        };
        while !committer.shared.lock().stopping {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(outcome(&submit(&committer)), Err(NotRecorded::ShuttingDown));
        gate.wait();
        // Whatever was queued behind the first batch is committed, not
        // dropped: release each batch the committer starts until all three
        // hits have been in one.
        let mut released = 1;
        loop {
            let started = sizes.lock().unwrap().len();
            if released < started {
                gate.wait();
                gate.wait();
                released += 1;
            } else if in_flight() >= 3 {
                break;
            } else {
                thread::sleep(Duration::from_millis(5));
            }
        }
        for waiter in &queued {
            assert_eq!(outcome(waiter), Ok(()));
        }
        assert_eq!(stopping.join().unwrap().hits, 3);
    }
}
