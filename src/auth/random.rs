//! The randomness of per-request tokens and ids, drawn from the operating system 1 KiB at a
//! time.
//!
//! A rotation needs 48 random bytes (the next refresh token's 32, the access token's jti), and
//! one `getrandom` system call per draw was 2% of the server's CPU per rotation. The pool asks
//! the kernel's CSPRNG (through ring's `SystemRandom`) for [`POOL`] bytes and hands them out
//! once each, in order. It zeroes the bytes it handed out, so the pool itself does not keep the
//! randomness of tokens already issued (the copies callers keep are theirs); what it has not
//! handed out yet, up to 1 KiB of the next tokens, sits in memory until it is, next to the keys
//! that sign and MAC those tokens. Lasting secrets do not come from here: signing keys, TOTP
//! secrets, recovery codes and their salt are drawn from `SystemRandom` directly. A forked
//! child would share the pool with its parent; latchd never forks.

use std::sync::{Mutex, PoisonError};

use ring::error::Unspecified;
use ring::rand::{SecureRandom, SystemRandom};

/// Bytes drawn from the kernel at once.
const POOL: usize = 1024;

/// Random bytes from the kernel, handed out once each.
pub(super) struct RandomPool {
    rng: SystemRandom,
    pool: Mutex<Pool>,
}

struct Pool {
    bytes: [u8; POOL],
    /// How many bytes from the start have been handed out (and zeroed).
    used: usize,
}

impl RandomPool {
    /// An empty pool: the first draw fills it.
    pub(super) fn new() -> Self {
        Self {
            rng: SystemRandom::new(),
            pool: Mutex::new(Pool {
                bytes: [0; POOL],
                used: POOL,
            }),
        }
    }

    /// Fills `out` with bytes no other draw got.
    ///
    /// # Errors
    /// The kernel's CSPRNG failed (ring's `Unspecified`).
    pub(super) fn fill(&self, out: &mut [u8]) -> Result<(), Unspecified> {
        if out.len() > POOL {
            return self.rng.fill(out);
        }
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if POOL - pool.used < out.len() {
            // What is left is too short: dropped (it is zero once used, and this refill
            // overwrites the rest).
            self.rng.fill(&mut pool.bytes)?;
            pool.used = 0;
        }
        let taken = pool.used..pool.used + out.len();
        // Marked used before they are copied: whatever happens next, no other draw gets them.
        pool.used = taken.end;
        out.copy_from_slice(&pool.bytes[taken.clone()]);
        pool.bytes[taken].fill(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used_bytes_are_zero(pool: &RandomPool) -> bool {
        let pool = pool.pool.lock().unwrap();
        pool.bytes[..pool.used].iter().all(|b| *b == 0)
    }

    #[test]
    fn no_two_draws_get_the_same_bytes_across_refills() {
        let pool = RandomPool::new();
        // 48 does not divide 1024: draws end short of the pool's end and refill.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut out = [0; 48];
            pool.fill(&mut out).unwrap();
            assert!(seen.insert(out), "a draw came twice");
            assert!(used_bytes_are_zero(&pool));
        }
        // The halves of a draw differ too (not one repeated block).
        let mut out = [0; 64];
        pool.fill(&mut out).unwrap();
        assert_ne!(out[..32], out[32..]);
    }

    #[test]
    fn a_draw_that_does_not_fit_what_is_left_refills_first() {
        let pool = RandomPool::new();
        let mut out = [0; POOL - 10];
        pool.fill(&mut out).unwrap();
        assert_eq!(pool.pool.lock().unwrap().used, POOL - 10);
        let mut next = [0; 16];
        pool.fill(&mut next).unwrap();
        assert_eq!(pool.pool.lock().unwrap().used, 16, "refilled, then took 16");
        assert!(used_bytes_are_zero(&pool));
        assert_ne!(next, [0; 16]);
    }

    #[test]
    fn a_draw_larger_than_the_pool_comes_from_the_kernel_directly() {
        let pool = RandomPool::new();
        let mut big = vec![0; POOL + 1];
        pool.fill(&mut big).unwrap();
        assert_eq!(
            pool.pool.lock().unwrap().used,
            POOL,
            "the pool was not touched"
        );
        assert!(big.iter().any(|b| *b != 0));
        pool.fill(&mut [0; 0]).unwrap();
    }
}
