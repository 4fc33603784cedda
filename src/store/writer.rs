//! The one writer thread: every write of the store is a job it runs in a redb write
//! transaction, commits, mirrors in the view, and only then answers.
//!
//! redb serializes write transactions anyway; a dedicated thread makes that explicit, keeps
//! commits (and their `fdatasync`) off the async workers, and is the one place that decides
//! what goes into a commit.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use redb::WriteTransaction;
use tokio::sync::oneshot;

use super::{Shared, Written};
use crate::auth::storage::{Pending, StoreError};

type Job = Box<dyn FnOnce(&Shared) + Send>;

/// The handle of the writer thread; dropping it lets the thread finish the jobs already
/// queued, then waits for it, so the database is closed when the store is dropped.
pub(super) struct Writer {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Writer {
    pub(super) fn start(shared: Arc<Shared>) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = thread::Builder::new()
            .name("latchd-writer".to_owned())
            .spawn(move || {
                for job in rx {
                    // A panicking job must not take the writer with it: its caller sees the
                    // dropped reply (`Closed`), every later job still runs.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&shared)));
                }
            })
            .map_err(|e| StoreError::backend("starting the writer thread", e))?;
        Ok(Self {
            jobs: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `body` and returns its answer once the transaction holding it has committed
    /// (or aborted, when it wrote nothing) and the view mirrors it.
    pub(super) fn submit<T: Send + 'static>(
        &self,
        body: impl FnOnce(&WriteTransaction) -> Result<Written<T>, StoreError> + Send + 'static,
    ) -> Pending<'static, T> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |shared: &Shared| {
            let _ = reply.send(run(shared, body));
        });
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        Box::pin(async move {
            if !sent {
                return Err(StoreError::Closed);
            }
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

/// One transaction: begin, run `body`, commit (or abort when it wrote nothing), then mirror
/// its changes in the view.
fn run<T>(
    shared: &Shared,
    body: impl FnOnce(&WriteTransaction) -> Result<Written<T>, StoreError>,
) -> Result<T, StoreError> {
    let txn = shared.db.begin_write()?;
    let written = body(&txn)?;
    if written.commit {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    shared.view.apply(written.changes);
    Ok(written.value)
}
