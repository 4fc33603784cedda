//! The password-hashing pool: a few dedicated threads at a lowered CPU priority, so that a
//! flood of logins takes only the CPU that token verification leaves over.
//!
//! A PBKDF2 hash at the default work factor costs ~150 ms of one core. On tokio's blocking
//! pool it competes with the async workers as an equal, and under a login flood the
//! verification p99 rose 4-5x on a 2-core machine. Here each thread lowers its own priority
//! once (Linux: `setpriority` on the thread, nice `LATCHD_HASH_NICE`, default 10, i.e. about a
//! tenth of a core's share against a busy worker), and the pool has `LATCHD_HASH_CONCURRENCY`
//! threads, so at most that many hashes run at once. Queued jobs wait; the rate limiter and the
//! connection cap bound how many can queue.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of low-priority threads running password-hashing jobs.
pub(crate) struct HashPool {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl HashPool {
    /// Starts `threads` threads (at least one) at niceness `nice` (0 leaves it unchanged).
    pub(crate) fn start(threads: usize, nice: u8) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            thread::Builder::new()
                .name(format!("latchd-hash-{n}"))
                .spawn(move || {
                    lower_priority(nice);
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
        Ok(Self {
            jobs: Mutex::new(tx),
        })
    }

    /// Runs `work` on the pool and waits for its result; `None` if the job could not run
    /// (pool gone, or the job panicked).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .ok()?;
        answer.await.ok()
    }
}

/// Lowers the calling thread's scheduling priority to niceness `nice`. Failing to (an OS that
/// refuses) only costs the isolation, so it is logged, not fatal.
fn lower_priority(nice: u8) {
    if nice == 0 {
        return;
    }
    let result = thread_priority::ThreadPriorityValue::try_from(nice_to_crossplatform(nice))
        .map_err(|e| format!("{e:?}"))
        .and_then(|value| {
            thread_priority::set_current_thread_priority(
                thread_priority::ThreadPriority::Crossplatform(value),
            )
            .map_err(|e| format!("{e:?}"))
        });
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
        let pool = HashPool::start(2, 0).unwrap();
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
        let pool = HashPool::start(1, 0).unwrap();
        assert_eq!(pool.run(|| -> u8 { panic!("boom") }).await, None);
        assert_eq!(pool.run(|| 7).await, Some(7));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn pool_threads_run_at_the_configured_niceness() {
        for nice in [10u8, 19] {
            let pool = HashPool::start(1, nice).unwrap();
            let seen = pool.run(current_nice).await.unwrap();
            assert_eq!(seen, i64::from(nice), "nice {nice}");
        }
    }

    /// Field 19 of /proc/thread-self/stat: the calling thread's nice value.
    #[cfg(target_os = "linux")]
    fn current_nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name (field 2) may contain spaces; fields restart after its ')'.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(16).unwrap().parse().unwrap()
    }
}
