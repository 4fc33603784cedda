//! Builds a latchd file of N users, each with one live API session, through the store's own
//! API (so the rows are what a server writes), for `benches/scale.sh`.
//!
//! Every user gets the same password hash, computed once: `user<i>@example.com` signs in with
//! the password printed at the end. Writes go through the writer in windows of jobs, so each
//! durable commit carries a few hundred of them (one PBKDF2 run, not N).
//!
//! Usage: `cargo run --release --example scale_file -- PATH USERS [ITERATIONS]`

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Instant;

use ring::rand::{SecureRandom, SystemRandom};

use latchd::auth::storage::Storage;
use latchd::model::{AuditEvent, AuditNote, CreateUser, FamilyId, NewSession, NewUser};
use latchd::store::Store;
use latchd::time::UnixTime;

/// The password of every user of the file.
const PASSWORD: &str = "scale-bench-password-0123456789";
/// Jobs handed to the writer before waiting for them (below its queue of 4096).
const WINDOW: usize = 2048;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: scale_file PATH USERS [ITERATIONS]";
    let path = PathBuf::from(args.next().ok_or(usage)?);
    let users: usize = args.next().ok_or(usage)?.parse()?;
    let iterations: u32 = args.next().map_or(Ok(1000), |s| s.parse())?;
    let iterations = NonZeroU32::new(iterations).ok_or("ITERATIONS must be at least 1")?;
    if path.exists() {
        return Err(format!("{} exists; give a new path", path.display()).into());
    }

    let rng = SystemRandom::new();
    let hash = latchd::password::hash(PASSWORD, iterations, &rng)?.into_string();
    let store = Store::open(&path)?;
    let policy = latchd::auth::Settings::default().session;
    let now = UnixTime::now();
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let started = Instant::now();

    let mut done = 0;
    while done < users {
        let window = WINDOW.min(users - done);
        // Registrations first, then one session for each registered user.
        let created: Vec<_> = (done..done + window)
            .map(|i| {
                let user = NewUser {
                    email: format!("user{i}@example.com"),
                    password_hash: hash.clone(),
                    roles: Vec::new(),
                };
                store.create_user(user, now, AuditNote::new(AuditEvent::Registered, now))
            })
            .collect();
        let mut registered = Vec::with_capacity(window);
        for pending in created {
            match runtime.block_on(pending)? {
                CreateUser::Created(user) => registered.push(user),
                CreateUser::EmailTaken => return Err("an email was taken twice".into()),
            }
        }
        let mut opened = Vec::with_capacity(window);
        for user in &registered {
            let mut first_hash = [0u8; 32];
            rng.fill(&mut first_hash).map_err(|_| "no randomness")?;
            let session = NewSession::default();
            opened.push(store.open_session(
                FamilyId::new(),
                user,
                first_hash,
                session,
                now,
                policy,
                AuditNote::new(AuditEvent::Login, now).user(user.id),
            ));
        }
        for pending in opened {
            if !runtime.block_on(pending)? {
                return Err("a session did not open".into());
            }
        }
        done += window;
        if done % 100_000 < WINDOW {
            eprintln!(
                "{done} users and sessions, {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    drop(store);
    let size = std::fs::metadata(&path)?.len();
    eprintln!(
        "wrote {users} users + {users} live sessions to {} ({} MB) in {:.1} s",
        path.display(),
        size / 1_000_000,
        started.elapsed().as_secs_f64()
    );
    println!("{PASSWORD}");
    Ok(())
}
