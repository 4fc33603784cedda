//! The password-hashing pool: a few dedicated threads at a lowered CPU priority, so that a
//! flood of logins takes only the CPU that token verification leaves over.
//!
//! A PBKDF2 hash at the default work factor costs ~150 ms of one core. On tokio's blocking
//! pool it competes with the async workers as an equal, and under a login flood the
//! verification p99 rose 4-5x on a 2-core machine. Here each thread lowers its own priority
//! once, as `LATCHD_HASH_PRIORITY` says: a niceness 1-19 (default 10), `idle` (Linux
//! `SCHED_IDLE`: a hash runs only on CPU time nothing else wants, and a waking async worker
//! preempts it at once), or `normal`. Measured on 2 cores (benches/load/verify.sh, kernel
//! 6.18), verify p99 under a login flood over the quiet p99 was 0.92-4.2x, median 1.06x, with
//! `idle`; 2.5-3.7x with nice 19; 2.7-3.9x with nice 10; 4.2x at normal priority. `idle` is not
//! the default because its hashes starve while anything else keeps the CPUs busy: with three
//! busy loops beside the test suite, logins at `idle` did not finish within 10 s.
//!
//! The pool has `LATCHD_HASH_CONCURRENCY` threads, so at most that many hashes run at once.
//! At most `QUEUED_PER_THREAD` jobs per thread wait; past that a request is refused at once
//! (503 with Retry-After) instead of queueing behind minutes of hashing. A job whose caller
//! has gone (the client hung up) is skipped, so abandoned requests cost nothing.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use tokio::sync::{oneshot, Semaphore};

/// How the password-hashing threads are scheduled against the async workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashPriority {
    /// Linux `SCHED_IDLE`: hashes use only CPU time nothing else wants.
    Idle,
    /// A niceness from 1 to 19 (the default is 10).
    Nice(u8),
    /// Unchanged: hashes compete with the workers as equals.
    Normal,
}

/// Default scheduling of the password-hashing threads: nice 10, about a tenth of a core's
/// share against one busy thread. `Idle` protects verification latency better under a login
/// flood but lets hashes starve (logins hang) while anything else keeps the CPUs busy, which
/// a shared host or an edge device does; see the measurements above.
pub const DEFAULT_PRIORITY: HashPriority = HashPriority::Nice(10);

/// Default number of hashing threads: one less than the cores, at least one.
pub fn default_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    cores.saturating_sub(1).max(1)
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Jobs that may wait per hashing thread; at ~150 ms a hash, 32 is about 5 s of queue.
pub const QUEUED_PER_THREAD: usize = 32;

/// A fixed set of low-priority threads running password-hashing jobs.
pub struct HashPool {
    jobs: Mutex<mpsc::Sender<Job>>,
    /// One permit per job queued or running.
    slots: Arc<Semaphore>,
}

/// Why a job did not produce a result.
#[derive(Debug, PartialEq, Eq)]
pub enum PoolError {
    /// The queue is full: the server is overloaded with hashing right now.
    Busy,
    /// The pool is gone, or the job panicked.
    Failed,
}

impl std::fmt::Debug for HashPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashPool").finish_non_exhaustive()
    }
}

impl HashPool {
    /// Starts `threads` threads (at least one) at `priority`.
    pub fn start(threads: usize, priority: HashPriority) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            thread::Builder::new()
                .name(format!("latchd-hash-{n}"))
                .spawn(move || {
                    lower_priority(priority);
                    loop {
                        // The lock is held only while waiting for the next job, never while
                        // running one.
                        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        match job {
                            // A panicking job must not take the thread down with it; its
                            // caller sees the dropped reply channel instead.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(mpsc::RecvError) => break, // the pool was dropped
                        }
                    }
                })?;
        }
        let threads = threads.max(1);
        Ok(Self {
            jobs: Mutex::new(tx),
            slots: Arc::new(Semaphore::new(
                threads.saturating_mul(QUEUED_PER_THREAD.saturating_add(1)),
            )),
        })
    }

    /// Runs `work` on the pool and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let permit = Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| PoolError::Busy)?;
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            // The caller dropped its end (the client went away): do not spend a hash on it.
            if !reply.is_closed() {
                let _ = reply.send(work());
            }
        });
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .map_err(|_| PoolError::Failed)?;
        answer.await.map_err(|_| PoolError::Failed)
    }
}

/// Lowers the calling thread's scheduling priority. Failing to (an OS that refuses) only
/// costs the isolation, so it is logged, not fatal.
fn lower_priority(priority: HashPriority) {
    use thread_priority::{
        set_current_thread_priority, set_thread_priority_and_policy, thread_native_id,
        NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    };
    let result = match priority {
        HashPriority::Normal => return,
        HashPriority::Idle => set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        )
        .map_err(|e| format!("{e:?}")),
        HashPriority::Nice(nice) => ThreadPriorityValue::try_from(nice_to_crossplatform(nice))
            .map_err(|e| format!("{e:?}"))
            .and_then(|value| {
                set_current_thread_priority(ThreadPriority::Crossplatform(value))
                    .map_err(|e| format!("{e:?}"))
            }),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not lower the hashing threads' priority");
    }
}

/// The value on thread-priority's cross-platform scale (0 = lowest .. 99 = highest) that the
/// crate maps onto niceness `nice` for normal threads. The crate computes
/// `trunc(39 * (1 - p / 99)) - 20`; the niceness test below pins the result.
fn nice_to_crossplatform(nice: u8) -> u8 {
    let target = i32::from(nice.min(19));
    (0..=99u8)
        .find(|&p| {
            #[allow(clippy::cast_possible_truncation)] // 0.0..=39.0 by construction
            let niceness = (39.0 * (1.0 - f32::from(p) / 99.0)) as i32 - 20;
            niceness == target
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_and_return_their_results() {
        let pool = HashPool::start(2, HashPriority::Normal).unwrap();
        let results: Vec<u64> = futures_join(&pool).await;
        assert_eq!(results, [1, 4, 9, 16]);
    }

    async fn futures_join(pool: &HashPool) -> Vec<u64> {
        let mut out = Vec::new();
        for n in 1..=4u64 {
            out.push(pool.run(move || n * n).await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn a_panicking_job_answers_none_and_the_pool_keeps_working() {
        let pool = HashPool::start(1, HashPriority::Normal).unwrap();
        assert_eq!(
            pool.run(|| -> u8 { panic!("boom") }).await,
            Err(PoolError::Failed)
        );
        assert_eq!(pool.run(|| 7).await, Ok(7));
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once_and_abandoned_jobs_are_skipped() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::mpsc::channel;

        let pool = Arc::new(HashPool::start(1, HashPriority::Normal).unwrap());
        // Block the one thread until `release` is sent.
        let (release, blocked) = channel::<()>();
        let first = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.run(move || blocked.recv().is_ok()).await })
        };
        // Fill the queue with jobs whose callers then go away.
        let ran = Arc::new(AtomicUsize::new(0));
        let mut waiting = Vec::new();
        for _ in 0..QUEUED_PER_THREAD {
            let (pool, ran) = (Arc::clone(&pool), Arc::clone(&ran));
            waiting.push(tokio::spawn(async move {
                pool.run(move || ran.fetch_add(1, Ordering::SeqCst)).await
            }));
        }
        // Wait (bounded) until every task holds its place.
        for _ in 0..500 {
            if pool.slots.available_permits() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(pool.run(|| ()).await, Err(PoolError::Busy), "queue full");
        for task in &waiting {
            task.abort();
        }
        for task in waiting {
            let _ = task.await;
        }
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(true));
        // The abandoned jobs free their places as the thread skips them, without running.
        let mut answer = pool.run(|| 7).await;
        for _ in 0..200 {
            if answer != Err(PoolError::Busy) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            answer = pool.run(|| 7).await;
        }
        assert_eq!(answer, Ok(7));
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn pool_threads_run_at_the_configured_priority() {
        for nice in [10u8, 19] {
            let pool = HashPool::start(1, HashPriority::Nice(nice)).unwrap();
            let (seen_nice, policy) = pool.run(current_scheduling).await.unwrap();
            assert_eq!(
                (seen_nice, policy),
                (i64::from(nice), SCHED_OTHER),
                "nice {nice}"
            );
        }
        let pool = HashPool::start(1, HashPriority::Idle).unwrap();
        let (_, policy) = pool.run(current_scheduling).await.unwrap();
        assert_eq!(policy, SCHED_IDLE);
        // The caller's own thread is untouched.
        assert_eq!(current_scheduling().1, SCHED_OTHER);
    }

    #[cfg(target_os = "linux")]
    const SCHED_OTHER: i64 = 0;
    #[cfg(target_os = "linux")]
    const SCHED_IDLE: i64 = 5;

    /// Fields 19 (nice) and 41 (policy) of /proc/thread-self/stat for the calling thread.
    #[cfg(target_os = "linux")]
    fn current_scheduling() -> (i64, i64) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name (field 2) may contain spaces; fields restart after its ')'.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        (fields[16].parse().unwrap(), fields[38].parse().unwrap())
    }
}
