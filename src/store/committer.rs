//! Group commit: hits wait in one bounded queue per instance; committer
//! threads each take everything queued (up to `HIT_BATCH_MAX`), record it with
//! one `CALL record_hits`, one durable commit, and hand the batch's outcome to
//! the answering thread, which calls each hit's completion. A committer never
//! writes to a client: a slow reader cannot hold up anyone's commit.
//!
//! No timer and no added delay: a batch is whatever arrived while the
//! previous commit was in flight, so at low load it holds one hit. A hit that
//! waited longer than the queue timeout before its batch was sent is answered
//! without being sent (its client, or nginx, may have given up).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::members::awaits_primary;
use super::{DbError, Hit, HitWriter};
use crate::telemetry::metrics::metrics;

/// Between attempts to find a primary while a batch is held.
const HOLD_PAUSE: Duration = Duration::from_millis(200);

/// Why a hit was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRecorded {
    /// The batch failed before or without taking effect: the hit is not counted.
    Failed,
    /// The batch may have taken effect (the connection broke after it was
    /// sent, or its reply made no sense): the hit may have been counted.
    OutcomeUnknown,
    /// The instance is shutting down and takes no new hits: another may.
    ShuttingDown,
    /// Not sent: the queue was full, or the hit waited past the queue
    /// timeout before its batch was sent.
    Overloaded,
}

impl From<&DbError> for NotRecorded {
    fn from(error: &DbError) -> NotRecorded {
        match error {
            // record_hits ran and committed, or may have.
            DbError::OutcomeUnknown(_) | DbError::UnexpectedReply(_) => NotRecorded::OutcomeUnknown,
            DbError::Unavailable(_) | DbError::Server { .. } => NotRecorded::Failed,
        }
    }
}

/// What the committers have done, for the log and the benchmark.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    pub batches: u64,
    pub hits: u64,
}

/// How the queue is bounded and batches are formed.
#[derive(Debug, Clone, Copy)]
pub struct CommitterSettings {
    /// `HIT_BATCH_MAX`: the most hits one commit records.
    pub batch_max: usize,
    /// The most hits waiting at once; one more is refused at once.
    pub queue_max: usize,
    /// `QUEUE_TIMEOUT_MS`: a hit older than this (since its request arrived,
    /// or since a hold for a primary ended) when its batch forms is answered
    /// unsent.
    pub queue_timeout: Duration,
    /// `DB_FAILOVER_WAIT_MS`: how long a batch is held, and tried again,
    /// while no primary answers.
    pub failover_wait: Duration,
}

/// The queue of hits waiting for a committer, the committer threads, and the
/// thread that answers for them.
pub struct Committer {
    shared: Arc<Shared>,
    /// Disconnected once every committer thread has exited.
    exits: Mutex<Option<Receiver<()>>>,
    answers: Answers,
}

struct Shared {
    queue: Mutex<Queue>,
    arrived: Condvar,
    settings: CommitterSettings,
    /// Committer threads alive; none means no hit can be recorded.
    running: AtomicUsize,
    hold: Mutex<HoldState>,
    batches: AtomicU64,
    hits: AtomicU64,
}

struct Queue {
    waiting: VecDeque<Waiter>,
    stopping: bool,
}

/// What the last holds for a primary left behind.
#[derive(Default)]
struct HoldState {
    /// When a hold ran out: no batch is held again until one succeeds, or
    /// for one more failover wait, so that past the window hits are answered
    /// at once, and a primary back after a long outage is waited for again.
    expired: Option<Instant>,
    /// When the last hold ended: the hits queued behind it did not wait on
    /// the queue, and their queue timeout counts from here.
    ended: Option<Instant>,
}

/// What to do once a hit's transaction has returned (or never will).
pub type Completion = Box<dyn FnOnce(Result<(), NotRecorded>) + Send>;

struct Waiter {
    hit: Hit,
    arrived: Instant,
    done: Completion,
}

impl Committer {
    /// Starts one thread per writer (each its own database connection), and
    /// the answering thread.
    pub fn start(
        writers: Vec<Box<dyn HitWriter>>,
        settings: CommitterSettings,
    ) -> std::io::Result<Committer> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                waiting: VecDeque::new(),
                stopping: false,
            }),
            arrived: Condvar::new(),
            settings,
            running: AtomicUsize::new(0),
            hold: Mutex::new(HoldState::default()),
            batches: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        });
        let answers = Answers::start()?;
        let (exit_tx, exit_rx) = mpsc::channel();
        for (id, writer) in writers.into_iter().enumerate() {
            let (shared, answers, exit) = (Arc::clone(&shared), answers.sender(), exit_tx.clone());
            shared.running.fetch_add(1, Ordering::SeqCst);
            let running = RunningGuard {
                shared: Arc::clone(&shared),
                _exit: exit,
            };
            let spawned = thread::Builder::new()
                .name(format!("committer-{id}"))
                .spawn(move || {
                    let _running = running;
                    commit_batches(&shared, writer, &answers);
                });
            // The guard went with the closure: a thread that did not start is not counted.
            spawned?;
        }
        Ok(Committer {
            shared,
            exits: Mutex::new(Some(exit_rx)),
            answers,
        })
    }

    /// Queues `hit` (its request arrived at `arrived`); `done` is called with
    /// the outcome once the transaction that holds it has returned, or at once
    /// (on this thread) when the queue is full or the committer stopping.
    pub fn submit(
        &self,
        hit: Hit,
        arrived: Instant,
        done: impl FnOnce(Result<(), NotRecorded>) + Send + 'static,
    ) {
        let done: Completion = Box::new(done);
        let refused = {
            let mut queue = self.shared.lock();
            if queue.stopping {
                Some((done, NotRecorded::ShuttingDown))
            } else if queue.waiting.len() >= self.shared.settings.queue_max {
                Some((done, NotRecorded::Overloaded))
            } else {
                queue.waiting.push_back(Waiter { hit, arrived, done });
                metrics().set_queue_depth(queue.waiting.len());
                None
            }
        };
        match refused {
            Some((done, why)) => done(Err(why)),
            None => self.shared.arrived.notify_one(),
        }
    }

    /// Whether any committer thread runs: without one, no hit is recorded
    /// and the instance is not ready.
    pub fn running(&self) -> bool {
        self.shared.running.load(Ordering::SeqCst) > 0
    }

    /// Takes no new hits and commits (or fails) the queued ones, for at most
    /// `deadline`: what is still queued then is answered as shutting down. A
    /// batch still in flight at the deadline is left to its thread; the
    /// process exits without its answers, and nginx tries those requests on
    /// another replica with the same request ids.
    pub fn stop(&self, deadline: Duration) -> CommitStats {
        let until = Instant::now() + deadline;
        self.shared.lock().stopping = true;
        self.shared.arrived.notify_all();
        if let Some(exits) = self
            .exits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            loop {
                match exits.recv_timeout(until.saturating_duration_since(Instant::now())) {
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {
                        log::warn!("the committers did not finish within {deadline:?}");
                        break;
                    }
                    Ok(()) => {}
                }
            }
        }
        // Anything a dead or late committer left behind is answered, never forgotten.
        let left: Vec<Waiter> = self.shared.lock().waiting.drain(..).collect();
        self.answers.send(left, Err(NotRecorded::ShuttingDown));
        self.answers.finish(until);
        self.stats()
    }

    pub fn stats(&self) -> CommitStats {
        CommitStats {
            batches: self.shared.batches.load(Ordering::Relaxed),
            hits: self.shared.hits.load(Ordering::Relaxed),
        }
    }
}

/// Counts a committer thread as running until it exits, even by a panic.
struct RunningGuard {
    shared: Arc<Shared>,
    _exit: Sender<()>,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if self.shared.running.fetch_sub(1, Ordering::SeqCst) == 1 && !self.shared.lock().stopping {
            log::error!("no committer is running: hits cannot be recorded; /readyz answers 503");
        }
    }
}

impl Shared {
    // The queue stays consistent even if a holder panicked: it only pushes and drains.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hold(&self) -> MutexGuard<'_, HoldState> {
        self.hold.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopping(&self) -> bool {
        self.lock().stopping
    }

    /// The next batch, and the hits too old to send; blocks until a hit
    /// waits. `None` once stopping and empty.
    fn next_batch(&self) -> Option<(Vec<Waiter>, Vec<Waiter>)> {
        let mut queue = self.lock();
        loop {
            while queue.waiting.is_empty() {
                if queue.stopping {
                    return None;
                }
                queue = self
                    .arrived
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            // The queue is in arrival order: the stale ones are at its front.
            let timeout = self.settings.queue_timeout;
            let hold_ended = self.hold().ended;
            let stale_count = queue
                .waiting
                .iter()
                .take_while(|w| {
                    hold_ended.map_or(w.arrived, |e| e.max(w.arrived)).elapsed() > timeout
                })
                .count();
            let stale: Vec<Waiter> = queue.waiting.drain(..stale_count).collect();
            let take = queue.waiting.len().min(self.settings.batch_max);
            let batch: Vec<Waiter> = queue.waiting.drain(..take).collect();
            metrics().set_queue_depth(queue.waiting.len());
            if !batch.is_empty() || !stale.is_empty() {
                return Some((batch, stale));
            }
        }
    }
}

/// One committer's loop: a batch at a time, until stopped and drained.
fn commit_batches(shared: &Shared, mut writer: Box<dyn HitWriter>, answers: &AnswerSender) {
    while let Some((batch, stale)) = shared.next_batch() {
        if !stale.is_empty() {
            log::warn!(
                "{} hit(s) waited over {:?} and were not sent",
                stale.len(),
                shared.settings.queue_timeout
            );
            answers.send(stale, Err(NotRecorded::Overloaded));
        }
        if batch.is_empty() {
            continue;
        }
        let hits: Vec<&Hit> = batch.iter().map(|w| &w.hit).collect();
        let outcome = record_held(shared, &mut *writer, &hits).map(|recorded| {
            metrics().batch(hits.len(), recorded);
            shared.batches.fetch_add(1, Ordering::Relaxed);
            shared.hits.fetch_add(hits.len() as u64, Ordering::Relaxed);
        });
        answers.send(batch, outcome);
    }
}

/// Records a batch. While no primary answers (the connection is refused or
/// lost, or the member says it is not the primary), the batch is held and
/// tried again, on whichever member is primary then, for up to the failover
/// wait. Trying again is safe even when the last try's outcome is unknown:
/// a request id is counted once, a group commits only what a majority
/// certified, and a new primary takes writes only once it has applied all
/// of that (docs/design.md).
fn record_held(
    shared: &Shared,
    writer: &mut dyn HitWriter,
    hits: &[&Hit],
) -> Result<u64, NotRecorded> {
    let wait = shared.settings.failover_wait;
    let mut held_since: Option<Instant> = None;
    loop {
        let error = match record_once(writer, hits) {
            Ok(recorded) => {
                if let Some(since) = held_since {
                    metrics().hold(0, since.elapsed());
                    log::warn!(
                        "a batch of {} hit(s) held {:.1} s for a primary was recorded",
                        hits.len(),
                        since.elapsed().as_secs_f64()
                    );
                }
                let mut hold = shared.hold();
                hold.expired = None;
                if held_since.is_some() {
                    hold.ended = Some(Instant::now());
                }
                return Ok(recorded);
            }
            Err(error) => error,
        };
        // Once held, a refusal after which the CALL had no effect (a lock
        // wait behind a transaction the lost primary left in limbo, say)
        // keeps the batch held too: trying again is as safe.
        let holding = held_since.is_some();
        let since = *held_since.get_or_insert_with(Instant::now);
        let may_hold = (awaits_primary(&error) || (holding && error.had_no_effect()))
            && !wait.is_zero()
            && shared.hold().expired.is_none_or(|at| at.elapsed() >= wait);
        if !may_hold || since.elapsed() >= wait || shared.stopping() {
            if let Some(since) = held_since.filter(|_| may_hold) {
                metrics().hold(0, since.elapsed());
            }
            log::error!("a batch of {} hit(s) was not recorded: {error}", hits.len());
            if may_hold && since.elapsed() >= wait {
                shared.hold().expired = Some(Instant::now());
            }
            // Held hits of a stopping instance go to another replica: the
            // request ids make that safe whatever happened here.
            if may_hold && shared.stopping() {
                return Err(NotRecorded::ShuttingDown);
            }
            return Err(NotRecorded::from(&error));
        }
        if since.elapsed() < HOLD_PAUSE {
            log::warn!(
                "no primary answers ({error}); holding {} hit(s)",
                hits.len()
            );
        }
        metrics().hold(hits.len(), since.elapsed());
        thread::sleep(HOLD_PAUSE);
    }
}

/// One attempt; a panic costs this batch, whose outcome is then unknown,
/// never the committer.
fn record_once(writer: &mut dyn HitWriter, hits: &[&Hit]) -> Result<u64, DbError> {
    match catch_unwind(AssertUnwindSafe(|| writer.record_hits(hits))) {
        Ok(result) => result,
        Err(_) => {
            log::error!(
                "recording a batch of {} hit(s) panicked; its outcome is unknown",
                hits.len()
            );
            metrics().db_error("panicked");
            writer.reset();
            Err(DbError::UnexpectedReply("the recording panicked".into()))
        }
    }
}

/// The answering thread: it calls the completions of each batch, so the
/// committers never write to a client. One message per batch, not per hit.
struct Answers {
    sender: Mutex<Option<AnswerSender>>,
    done: Mutex<Option<Receiver<()>>>,
}

type Job = (Vec<Waiter>, Result<(), NotRecorded>);

#[derive(Clone)]
struct AnswerSender(Sender<Job>);

impl AnswerSender {
    fn send(&self, waiters: Vec<Waiter>, outcome: Result<(), NotRecorded>) {
        if waiters.is_empty() {
            return;
        }
        // The thread ends only after the last sender is gone; should it have
        // died, the completions answer here rather than never.
        if let Err(mpsc::SendError((waiters, outcome))) = self.0.send((waiters, outcome)) {
            complete(waiters, outcome);
        }
    }
}

impl Answers {
    fn start() -> std::io::Result<Answers> {
        let (sender, jobs) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("answers".into())
            .spawn(move || {
                let _done = done_tx;
                for (waiters, outcome) in jobs {
                    complete(waiters, outcome);
                }
            })?;
        Ok(Answers {
            sender: Mutex::new(Some(AnswerSender(sender))),
            done: Mutex::new(Some(done_rx)),
        })
    }

    fn sender(&self) -> AnswerSender {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| AnswerSender(mpsc::channel().0))
    }

    fn send(&self, waiters: Vec<Waiter>, outcome: Result<(), NotRecorded>) {
        self.sender().send(waiters, outcome);
    }

    /// Lets the thread finish what it was given, until `until`.
    fn finish(&self, until: Instant) {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(done) = self
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            // Disconnected when the thread ends; a timeout leaves it to the exit.
            let _ = done.recv_timeout(until.saturating_duration_since(Instant::now()));
        }
    }
}

/// Calls each waiter's completion; one that panics costs its own answer only.
fn complete(waiters: Vec<Waiter>, outcome: Result<(), NotRecorded>) {
    for waiter in waiters {
        if catch_unwind(AssertUnwindSafe(|| (waiter.done)(outcome))).is_err() {
            log::error!("answering a hit panicked; the others are still answered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_id::RequestId;
    use std::sync::Barrier;
    use std::sync::mpsc::{self, Receiver};

    const SETTINGS: CommitterSettings = CommitterSettings {
        batch_max: 256,
        queue_max: 512,
        queue_timeout: Duration::from_secs(60),
        failover_wait: Duration::ZERO,
    };

    fn start(writer: Box<dyn HitWriter>, settings: CommitterSettings) -> Committer {
        Committer::start(vec![writer], settings).unwrap()
    }

    /// Submits a hit that arrived `age` ago; the receiver gets its outcome
    /// and the name of the thread that gave it.
    fn submit_aged(
        committer: &Committer,
        age: Duration,
    ) -> Receiver<(Result<(), NotRecorded>, String)> {
        let (outcome, receiver) = mpsc::channel();
        committer.submit(hit(), Instant::now() - age, move |result| {
            let thread = thread::current().name().unwrap_or("").to_owned();
            let _ = outcome.send((result, thread));
        });
        receiver
    }

    fn submit(committer: &Committer) -> Receiver<(Result<(), NotRecorded>, String)> {
        submit_aged(committer, Duration::ZERO)
    }

    fn outcome(receiver: &Receiver<(Result<(), NotRecorded>, String)>) -> Result<(), NotRecorded> {
        receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("an outcome")
            .0
    }

    fn hit() -> Hit {
        Hit {
            request_id: RequestId::random(),
            client_ip: "192.0.2.1".parse().unwrap(),
            internal_ip: "10.0.0.2".parse().unwrap(),
        }
    }

    /// Records batch sizes; fails or panics as told; can hold a batch until released.
    struct Scripted {
        sizes: Arc<Mutex<Vec<usize>>>,
        fail_with: Option<fn() -> DbError>,
        panics: bool,
        gate: Option<Arc<Barrier>>,
    }

    impl HitWriter for Scripted {
        fn record_hits(&mut self, hits: &[&Hit]) -> Result<u64, DbError> {
            self.sizes.lock().unwrap().push(hits.len());
            if let Some(gate) = &self.gate {
                gate.wait();
                gate.wait();
            }
            assert!(!self.panics, "a bug in the writer");
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
            panics: false,
            gate,
        };
        (Box::new(writer), sizes)
    }

    #[test]
    fn a_lone_hit_is_committed_at_once_in_a_batch_of_one_and_answered_off_the_committer() {
        let (writer, sizes) = scripted(None, None);
        let committer = start(writer, SETTINGS);
        let (result, thread) = submit(&committer)
            .recv_timeout(Duration::from_secs(10))
            .expect("an outcome");
        assert_eq!(result, Ok(()));
        assert_eq!(
            thread, "answers",
            "the committer never answers a client itself"
        );
        assert_eq!(*sizes.lock().unwrap(), vec![1]);
        assert_eq!(
            committer.stop(Duration::from_secs(5)),
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
        let committer = start(
            writer,
            CommitterSettings {
                batch_max: 4,
                ..SETTINGS
            },
        );
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
        assert_eq!(committer.stop(Duration::from_secs(5)).hits, 7);
    }

    #[test]
    fn every_waiter_of_a_failed_batch_hears_how_it_failed() {
        let cases: [(fn() -> DbError, NotRecorded); 3] = [
            (
                || {
                    DbError::OutcomeUnknown(mysql::Error::IoError(std::io::Error::from(
                        std::io::ErrorKind::ConnectionReset,
                    )))
                },
                NotRecorded::OutcomeUnknown,
            ),
            (
                || DbError::Server {
                    code: 1213,
                    message: "deadlock".into(),
                },
                NotRecorded::Failed,
            ),
            // record_hits ran, then answered in a shape the app does not know.
            (
                || DbError::UnexpectedReply("two columns".into()),
                NotRecorded::OutcomeUnknown,
            ),
        ];
        for (error, expected) in cases {
            let (writer, _) = scripted(Some(error), None);
            let committer = start(writer, SETTINGS);
            assert_eq!(outcome(&submit(&committer)), Err(expected));
            assert_eq!(
                committer.stop(Duration::from_secs(5)),
                CommitStats::default()
            );
        }
    }

    #[test]
    fn a_panicking_writer_costs_its_batch_never_the_committer() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let writer = Scripted {
            sizes: Arc::clone(&sizes),
            fail_with: None,
            panics: true,
            gate: None,
        };
        let committer = start(Box::new(writer), SETTINGS);
        for _ in 0..3 {
            assert_eq!(
                outcome(&submit(&committer)),
                Err(NotRecorded::OutcomeUnknown)
            );
        }
        assert!(
            committer.running(),
            "the committer survives its writer's panics"
        );
        assert_eq!(sizes.lock().unwrap().len(), 3);
        committer.stop(Duration::from_secs(5));
        assert!(!committer.running());
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let gate = Arc::new(Barrier::new(2));
        let (writer, _) = scripted(None, Some(Arc::clone(&gate)));
        let committer = start(
            writer,
            CommitterSettings {
                queue_max: 2,
                ..SETTINGS
            },
        );
        let in_flight = submit(&committer);
        gate.wait(); // the first batch is in flight; two more may wait
        let queued: Vec<_> = (0..2).map(|_| submit(&committer)).collect();
        assert_eq!(outcome(&submit(&committer)), Err(NotRecorded::Overloaded));
        gate.wait();
        gate.wait();
        gate.wait();
        assert_eq!(outcome(&in_flight), Ok(()));
        for waiter in &queued {
            assert_eq!(outcome(waiter), Ok(()));
        }
        committer.stop(Duration::from_secs(5));
    }

    #[test]
    fn a_hit_that_waited_past_the_queue_timeout_is_answered_unsent() {
        let (writer, sizes) = scripted(None, None);
        let committer = start(
            writer,
            CommitterSettings {
                queue_timeout: Duration::from_millis(500),
                ..SETTINGS
            },
        );
        let stale = submit_aged(&committer, Duration::from_secs(1));
        assert_eq!(outcome(&stale), Err(NotRecorded::Overloaded));
        let fresh = submit(&committer);
        assert_eq!(outcome(&fresh), Ok(()));
        assert_eq!(
            *sizes.lock().unwrap(),
            vec![1],
            "only the fresh hit was sent"
        );
        committer.stop(Duration::from_secs(5));
    }

    #[test]
    fn stopping_ends_within_its_deadline_even_with_a_batch_stuck() {
        let gate = Arc::new(Barrier::new(2));
        let (writer, _) = scripted(None, Some(Arc::clone(&gate)));
        let committer = start(writer, SETTINGS);
        let _stuck = submit(&committer);
        gate.wait(); // in flight, and never released
        let queued = submit(&committer);
        let started = Instant::now();
        committer.stop(Duration::from_millis(300));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "stop kept its deadline"
        );
        assert_eq!(outcome(&queued), Err(NotRecorded::ShuttingDown));
        assert_eq!(outcome(&submit(&committer)), Err(NotRecorded::ShuttingDown));
        // Let the stuck writer finish, so its thread ends with the test.
        gate.wait();
    }

    #[test]
    fn after_stop_no_hit_is_taken_and_none_is_left_unanswered() {
        let gate = Arc::new(Barrier::new(2));
        let (writer, sizes) = scripted(None, Some(Arc::clone(&gate)));
        let committer = Arc::new(start(writer, SETTINGS));
        let queued: Vec<_> = (0..3).map(|_| submit(&committer)).collect();
        gate.wait(); // a batch is in flight
        let in_flight = || sizes.lock().unwrap().iter().sum::<usize>();
        while committer.shared.lock().waiting.len() + in_flight() < 3 {
            thread::sleep(Duration::from_millis(5));
        }
        let stopping = {
            let committer = Arc::clone(&committer);
            thread::spawn(move || committer.stop(Duration::from_secs(30)))
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

    /// Fails with `error` until `fails` runs out, then records; counts calls.
    struct Flaky {
        fails: Arc<Mutex<usize>>,
        calls: Arc<Mutex<usize>>,
        error: fn() -> DbError,
    }

    impl HitWriter for Flaky {
        fn record_hits(&mut self, hits: &[&Hit]) -> Result<u64, DbError> {
            *self.calls.lock().unwrap() += 1;
            let mut fails = self.fails.lock().unwrap();
            if *fails > 0 {
                *fails -= 1;
                return Err((self.error)());
            }
            Ok(hits.len() as u64)
        }
    }

    fn refused() -> DbError {
        DbError::Unavailable(super::super::pool::CheckoutError::NoPrimary(3))
    }

    fn lost() -> DbError {
        DbError::OutcomeUnknown(mysql::Error::IoError(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )))
    }

    fn flaky(
        fails: usize,
        error: fn() -> DbError,
        failover_wait: Duration,
    ) -> (Committer, Arc<Mutex<usize>>, Arc<Mutex<usize>>) {
        let (fails, calls) = (Arc::new(Mutex::new(fails)), Arc::new(Mutex::new(0)));
        let writer = Flaky {
            fails: Arc::clone(&fails),
            calls: Arc::clone(&calls),
            error,
        };
        let committer = start(
            Box::new(writer),
            CommitterSettings {
                queue_timeout: Duration::from_millis(300),
                failover_wait,
                ..SETTINGS
            },
        );
        (committer, fails, calls)
    }

    #[test]
    fn a_batch_whose_primary_is_gone_is_held_and_recorded_once_one_answers() {
        for error in [refused as fn() -> DbError, lost] {
            // About a second of failures: longer than the queue timeout.
            let (committer, _, calls) = flaky(5, error, Duration::from_secs(30));
            let held = submit(&committer);
            thread::sleep(Duration::from_millis(50));
            let queued_behind = submit(&committer);
            assert_eq!(outcome(&held), Ok(()), "held, then recorded");
            assert_eq!(
                outcome(&queued_behind),
                Ok(()),
                "a hit queued behind a hold is not shed by the queue timeout"
            );
            assert!(*calls.lock().unwrap() >= 6);
            committer.stop(Duration::from_secs(5));
        }
    }

    #[test]
    fn past_the_failover_wait_a_batch_fails_and_the_next_is_not_held_until_one_succeeds() {
        let (committer, fails, calls) = flaky(usize::MAX, lost, Duration::from_millis(600));
        let started = Instant::now();
        assert_eq!(
            outcome(&submit(&committer)),
            Err(NotRecorded::OutcomeUnknown)
        );
        assert!(
            started.elapsed() >= Duration::from_millis(600),
            "held for the wait"
        );
        let calls_after_the_hold = *calls.lock().unwrap();
        let started = Instant::now();
        assert_eq!(
            outcome(&submit(&committer)),
            Err(NotRecorded::OutcomeUnknown)
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "at once, past the window"
        );
        assert_eq!(*calls.lock().unwrap(), calls_after_the_hold + 1);
        // Service is back: the next failure is held again.
        *fails.lock().unwrap() = 0;
        assert_eq!(outcome(&submit(&committer)), Ok(()));
        *fails.lock().unwrap() = 2;
        assert_eq!(outcome(&submit(&committer)), Ok(()));
        committer.stop(Duration::from_secs(5));
    }

    #[test]
    fn other_failures_are_never_held() {
        let (committer, _, calls) = flaky(
            1,
            || DbError::Server {
                code: 1062,
                message: "duplicate".into(),
            },
            Duration::from_secs(30),
        );
        assert_eq!(outcome(&submit(&committer)), Err(NotRecorded::Failed));
        assert_eq!(*calls.lock().unwrap(), 1);
        committer.stop(Duration::from_secs(5));
    }

    #[test]
    fn a_batch_held_when_the_instance_stops_goes_to_another_replica() {
        let (committer, _, _) = flaky(usize::MAX, refused, Duration::from_secs(30));
        let held = submit(&committer);
        thread::sleep(Duration::from_millis(300));
        committer.stop(Duration::from_secs(5));
        assert_eq!(outcome(&held), Err(NotRecorded::ShuttingDown));
    }
}
