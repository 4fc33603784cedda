//! The one writer thread, committing in groups: every write of the store is a job, and every
//! job waiting at once runs in ONE redb write transaction with one durable commit (one
//! `fdatasync`).
//!
//! A batch is the jobs queued when the writer comes round (at most [`MAX_BATCH`]). They run in
//! order in one transaction, so each sees every earlier job's writes, and the batch pays for
//! one commit (page copies, allocation, metadata) instead of one per job. A job that fails (a
//! decode error, a panic, an I/O error) must be undone alone, and redb cannot take a savepoint
//! in a transaction that has written (`ephemeral_savepoint` refuses a dirty one), so the
//! writer undoes it by replay: it aborts the transaction, marks the job failed (its error is
//! its answer), runs the jobs before it again in a fresh transaction and commits them
//! (`Durability::None`), then goes on with the jobs after it. A job's body may therefore run
//! twice; only the run that commits counts. The commit that reaches the end of the batch is
//! `Durability::Immediate`, which makes everything before it durable too (redb's one-phase
//! commit; when the batch ends on a failed job, an empty durable commit does it). A job's view
//! changes are written to the view's tables in its own run (`view_rows::persist`), so they
//! commit or fail with it. Only after the durable commit are they applied to memory, in order,
//! and their callers answered: an `Ok` still means on disk, and memory still never leads it. A
//! job that wrote nothing is answered after the same commit too, since what it read may be an
//! earlier job's write.
//!
//! The queue is bounded ([`QUEUE`]): a write that finds it full fails at once with
//! [`StoreError::Busy`] instead of waiting behind thousands of others.

use std::sync::mpsc::{self, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use redb::{Durability, WriteTransaction};
use tokio::sync::oneshot;

use super::{Shared, Written};
use crate::auth::storage::{Pending, StoreError};

/// Most jobs in one batch (one durable commit).
pub(super) const MAX_BATCH: usize = 256;
/// Most jobs waiting for the writer; one more is refused with [`StoreError::Busy`].
pub(super) const QUEUE: usize = 4096;

/// A queued write: runs its body in the batch's transaction (perhaps twice, see the module
/// docs), and is answered once the batch is durable.
trait Job: Send {
    /// Runs the body in `txn`, keeping its outcome; whether it succeeded.
    fn run(&mut self, txn: &WriteTransaction) -> bool;
    /// Whether the kept outcome wrote something.
    fn wrote(&self) -> bool;
    /// Mirrors the kept outcome in the view (when `durable` is `Ok` and the job succeeded),
    /// logs its audit rows, and answers the caller.
    fn settle(self: Box<Self>, shared: &Shared, durable: &Result<(), StoreError>);
}

/// A job as [`Writer::submit`] queues it.
struct Task<T, F> {
    body: F,
    /// The outcome of the last run: `None` before any, or after a panic.
    outcome: Option<Result<Written<T>, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Task<T, F>
where
    T: Send,
    F: FnMut(&WriteTransaction) -> Result<Written<T>, StoreError> + Send,
{
    fn run(&mut self, txn: &WriteTransaction) -> bool {
        self.outcome = None;
        // What the view will mirror goes into its tables in the same transaction.
        let outcome = (self.body)(txn).and_then(|written| {
            super::view_rows::persist(txn, &written.changes)?;
            Ok(written)
        });
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn wrote(&self) -> bool {
        matches!(&self.outcome, Some(Ok(written)) if written.commit)
    }

    fn settle(self: Box<Self>, shared: &Shared, durable: &Result<(), StoreError>) {
        let answer = match self.outcome {
            // It panicked: its caller sees the dropped reply (`Closed`); or it never ran, the
            // batch failing before it.
            None => match durable {
                Ok(()) => return,
                Err(e) => Err(e.clone()),
            },
            Some(Err(e)) => Err(e),
            Some(Ok(written)) => match durable {
                Ok(()) => {
                    shared.view.apply(written.changes);
                    written.audited.iter().for_each(super::audit::log);
                    Ok(written.value)
                }
                Err(e) => Err(e.clone()),
            },
        };
        let _ = self.reply.send(answer);
    }
}

/// The handle of the writer thread; dropping it lets the thread finish the jobs already
/// queued, then waits for it, so the database is closed when the store is dropped.
pub(super) struct Writer {
    jobs: Mutex<Option<SyncSender<Box<dyn Job>>>>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Writer {
    pub(super) fn start(shared: Arc<Shared>) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::sync_channel::<Box<dyn Job>>(QUEUE);
        let thread = thread::Builder::new()
            .name("latchd-writer".to_owned())
            .spawn(move || {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                while let Ok(first) = rx.recv() {
                    batch.push(first);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                        }
                    }
                    commit_batch(&shared, &mut batch);
                }
            })
            .map_err(|e| StoreError::backend("starting the writer thread", e))?;
        Ok(Self {
            jobs: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `body` and returns its answer once the batch holding it is durable and the view
    /// mirrors it. `body` may run twice (when a later job of its batch fails); only the run
    /// that commits counts, so it must not act outside the transaction.
    pub(super) fn submit<T: Send + 'static>(
        &self,
        body: impl FnMut(&WriteTransaction) -> Result<Written<T>, StoreError> + Send + 'static,
    ) -> Pending<'static, T> {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Task {
            body,
            outcome: None,
            reply,
        });
        let sent = match self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            None => Err(StoreError::Closed),
            Some(jobs) => jobs.try_send(job).map_err(|e| match e {
                TrySendError::Full(_) => StoreError::Busy,
                TrySendError::Disconnected(_) => StoreError::Closed,
            }),
        };
        Box::pin(async move {
            sent?;
            answer.await.unwrap_or(Err(StoreError::Closed))
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(
            self.jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = thread.join();
        }
    }
}

/// Runs a batch in as few transactions as its failures allow (one when none fails), makes it
/// durable, then mirrors and answers its jobs in order; see the module docs.
fn commit_batch(shared: &Shared, jobs: &mut Vec<Box<dyn Job>>) {
    let mut failed = vec![false; jobs.len()];
    let durable = run_all(shared, jobs, &mut failed);
    for job in jobs.drain(..) {
        job.settle(shared, &durable);
    }
}

/// The passes of one batch. A pass runs the jobs of `start..end` not yet failed in one
/// transaction. When one fails, the pass is aborted, the job marked failed, and the next
/// pass replays only the jobs before it (`end` becomes its index); when a pass gets through,
/// it commits and the next one starts after it, up to the end of the batch again. Every pass
/// marks a job failed or commits, so a batch of `n` jobs takes at most `2n` passes, and a
/// job runs more than twice only when its replay fails too.
fn run_all(
    shared: &Shared,
    jobs: &mut [Box<dyn Job>],
    failed: &mut [bool],
) -> Result<(), StoreError> {
    let (mut start, mut end) = (0, jobs.len());
    // Whether some commit of this batch is not durable yet.
    let mut undurable = false;
    while start < end {
        let last = end == jobs.len();
        match pass(shared, &mut jobs[start..end], &failed[start..end], last)? {
            Pass::Failed(at) => {
                failed[start + at] = true;
                end = start + at;
            }
            Pass::Committed { wrote } => {
                undurable = (undurable || wrote) && !(last && wrote);
                start = end;
                end = jobs.len();
            }
        }
        // The jobs after a failed last one: nothing left to run past it.
        if start == end && end < jobs.len() {
            start += 1;
            end = jobs.len();
        }
    }
    if undurable {
        let txn = shared.db.begin_write()?;
        txn.commit()?;
    }
    Ok(())
}

enum Pass {
    /// The job at this index (of the pass) failed or panicked; nothing was committed.
    Failed(usize),
    /// Every job succeeded and their writes (if any) are committed.
    Committed { wrote: bool },
}

/// One transaction over `jobs` (skipping the `failed` ones), `Durability::Immediate` when it
/// reaches the end of the batch. A failed or panicking job aborts it.
fn pass(
    shared: &Shared,
    jobs: &mut [Box<dyn Job>],
    failed: &[bool],
    last: bool,
) -> Result<Pass, StoreError> {
    let mut txn = shared.db.begin_write()?;
    if !last {
        txn.set_durability(Durability::None)
            .map_err(|e| StoreError::backend("set_durability", e))?;
    }
    let mut wrote = false;
    for (at, job) in jobs.iter_mut().enumerate() {
        if failed[at] {
            continue;
        }
        // A panicking job must not take the writer or its batch with it.
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(&txn)))
            .unwrap_or(false);
        if !ok {
            let _ = txn.abort();
            return Ok(Pass::Failed(at));
        }
        wrote |= job.wrote();
    }
    if wrote {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok(Pass::Committed { wrote })
}
