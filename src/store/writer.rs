//! The one writer thread, committing in groups: every write of the store is a job it runs in
//! a redb write transaction of its own, and every job waiting at once shares one `fdatasync`.
//!
//! A batch is the jobs queued when the writer comes round (at most [`MAX_BATCH`]). Each job
//! runs in its own transaction: it sees every earlier job's writes, and a job that fails (a
//! decode error, a panic, an I/O error) is aborted alone, leaving the others as they were. All
//! but the last commit with `Durability::None`; the last commits with `Durability::Immediate`,
//! which makes the whole batch durable with one `fdatasync` (redb's one-phase commit; when the
//! last job writes nothing, an empty durable commit does it). Only after that are the jobs'
//! view changes applied, in order, and their callers answered: an `Ok` still means on disk,
//! and memory still never leads it. A job that wrote nothing is answered after the same
//! commit too, since what it read may be an earlier job's write.
//!
//! The queue is bounded ([`QUEUE`]): a write that finds it full fails at once with
//! [`StoreError::Busy`] instead of waiting behind thousands of others.

use std::sync::mpsc::{self, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use redb::{Durability, WriteTransaction};
use tokio::sync::oneshot;

use super::view::Change;
use super::{Shared, Written};
use crate::auth::storage::{Pending, StoreError};
use crate::model::AuditRow;

/// Most jobs in one batch (one durable commit).
pub(super) const MAX_BATCH: usize = 256;
/// Most jobs waiting for the writer; one more is refused with [`StoreError::Busy`].
pub(super) const QUEUE: usize = 4096;

/// A queued write: runs its transaction, and hands back how to answer once the batch is
/// durable.
type Job = Box<dyn FnOnce(&Shared, Durability) -> Settle + Send>;

/// A job that ran, waiting for its batch's durable commit.
struct Settle {
    /// What the view must mirror once it is durable.
    changes: Vec<Change>,
    /// The audit rows it wrote, logged once they are durable.
    audited: Vec<AuditRow>,
    /// Whether the job's transaction committed anything.
    wrote: bool,
    /// Whether it committed with `Durability::Immediate` (so everything before it is durable).
    durable: bool,
    /// Answers the caller with the batch's outcome.
    answer: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

/// The handle of the writer thread; dropping it lets the thread finish the jobs already
/// queued, then waits for it, so the database is closed when the store is dropped.
pub(super) struct Writer {
    jobs: Mutex<Option<SyncSender<Job>>>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Writer {
    pub(super) fn start(shared: Arc<Shared>) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
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
                    commit_batch(&shared, batch.drain(..));
                }
            })
            .map_err(|e| StoreError::backend("starting the writer thread", e))?;
        Ok(Self {
            jobs: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `body` and returns its answer once the batch holding it is durable and the view
    /// mirrors it.
    pub(super) fn submit<T: Send + 'static>(
        &self,
        body: impl FnOnce(&WriteTransaction) -> Result<Written<T>, StoreError> + Send + 'static,
    ) -> Pending<'static, T> {
        let (reply, answer) = oneshot::channel();
        let job: Job =
            Box::new(move |shared: &Shared, durability| run(shared, durability, body, reply));
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

/// Runs every job of a batch in its own transaction, non-durable but for the last one, whose
/// durable commit makes them all durable (an empty durable commit does it instead when the
/// last one wrote nothing); then mirrors and answers them in order. A batch of one is one
/// ordinary durable commit.
fn commit_batch(shared: &Shared, jobs: std::vec::Drain<'_, Job>) {
    let mut settled = Vec::with_capacity(MAX_BATCH);
    let last = jobs.len().saturating_sub(1);
    for (i, job) in jobs.enumerate() {
        let durability = if i == last {
            Durability::Immediate
        } else {
            Durability::None
        };
        // A panicking job must not take the writer or its batch with it: its transaction is
        // dropped (aborted), its caller sees the dropped reply (`Closed`).
        let ran =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(shared, durability)));
        if let Ok(settle) = ran {
            settled.push(settle);
        }
    }
    let last_was_durable = settled.last().is_some_and(|s| s.durable);
    let durable = if settled.iter().any(|s| s.wrote) && !last_was_durable {
        make_durable(shared)
    } else {
        Ok(())
    };
    for settle in settled {
        if durable.is_ok() {
            shared.view.apply(settle.changes);
            settle.audited.iter().for_each(super::audit::log);
        }
        (settle.answer)(durable.clone());
    }
}

/// The empty `Durability::Immediate` commit that persists every non-durable commit before it.
fn make_durable(shared: &Shared) -> Result<(), StoreError> {
    let txn = shared.db.begin_write()?;
    txn.commit()?;
    Ok(())
}

/// One job's transaction: begin (non-durable), run `body`, commit (or abort when it wrote
/// nothing). The caller of `reply` is answered by the returned [`Settle`].
fn run<T: Send + 'static>(
    shared: &Shared,
    durability: Durability,
    body: impl FnOnce(&WriteTransaction) -> Result<Written<T>, StoreError>,
    reply: oneshot::Sender<Result<T, StoreError>>,
) -> Settle {
    match transact(shared, durability, body) {
        Ok(written) => {
            let (value, wrote) = (written.value, written.commit);
            Settle {
                changes: written.changes,
                audited: written.audited,
                wrote,
                durable: wrote && matches!(durability, Durability::Immediate),
                answer: Box::new(move |durable| {
                    let _ = reply.send(durable.map(|()| value));
                }),
            }
        }
        Err(e) => Settle {
            changes: Vec::new(),
            audited: Vec::new(),
            wrote: false,
            durable: false,
            answer: Box::new(move |_| {
                let _ = reply.send(Err(e));
            }),
        },
    }
}

fn transact<T>(
    shared: &Shared,
    durability: Durability,
    body: impl FnOnce(&WriteTransaction) -> Result<Written<T>, StoreError>,
) -> Result<Written<T>, StoreError> {
    let mut txn = shared.db.begin_write()?;
    txn.set_durability(durability)
        .map_err(|e| StoreError::backend("set_durability", e))?;
    let written = body(&txn)?;
    if written.commit {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok(written)
}
