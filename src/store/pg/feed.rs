//! The change feed: how every node's in-memory view follows the database.
//!
//! Every write that changes what the view holds (a user's version, disabled flag, email or
//! roles; a session opened or ended; a blacklisted jti; the signing keys) appends one row per
//! changed subject to `latchd_changes`, in the same transaction, after taking a transaction-
//! scoped advisory lock: ids are drawn from a sequence while the lock is held and the lock is
//! released only at commit, so ids increase in commit order and a reader that has seen id `n`
//! has seen every change before it. A row names the subject only; the reader re-reads the
//! subject's current row, so applying a change twice, or late, is harmless.
//!
//! Each node runs one feed task: woken by `NOTIFY latchd_changes` (a hint only: it is lost
//! when a connection drops), and polling every [`POLL`] regardless, it reads the rows after
//! its position and applies them to the view. The instant a successful poll began is the
//! view's confirmation: a node whose last confirmation is older than [`CONFIRM_WITHIN`]
//! refuses verifications and writes with 503 until a poll succeeds again, which first applies
//! everything it missed. So a revocation committed at `t` is honoured by every node answering
//! after `t + 1 s`.
//!
//! The feed is swept after [`RETENTION_SECS`]; a node whose position fell behind the sweep
//! (cut off that long) reloads the whole view instead.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch, Notify};
use tokio_postgres::Client;
use uuid::Uuid;

use super::errors::pg_err;
use super::pool::Pool;
use super::rows;
use crate::auth::storage::StoreError;
use crate::model::{FamilyId, Jti, UserId};
use crate::store::view::{Change, View};

/// How often the feed polls when no notification wakes it.
pub(super) const POLL: Duration = Duration::from_millis(200);

/// How recent the last confirmation must be for the node to answer from its view.
pub(super) const CONFIRM_WITHIN: Duration = Duration::from_secs(1);

/// How far apart the clocks of two nodes may be for [`Feed::may_be_newer`].
const CLOCK_SLACK_MS: u64 = 2_000;

/// How long feed rows are kept (a node cut off for longer reloads its view).
pub(super) const RETENTION_SECS: i64 = 3600;

/// The advisory lock that orders change ids by commit ("latchd:c").
pub(super) const CHANGE_LOCK: i64 = 0x6c61_7463_6864_3a63;

/// The channel writers notify.
const CHANNEL: &str = "latchd_changes";

/// What a change row names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(in crate::store) enum Subject {
    User(UserId),
    Session(FamilyId),
    Blacklist(Jti),
    /// The signing keys (the subject is nil).
    Keys,
}

impl Subject {
    fn kind(self) -> i16 {
        match self {
            Self::User(_) => 1,
            Self::Session(_) => 2,
            Self::Blacklist(_) => 3,
            Self::Keys => 4,
        }
    }

    fn id(self) -> Uuid {
        match self {
            Self::User(u) => u.0,
            Self::Session(f) => f.0,
            Self::Blacklist(j) => j.0,
            Self::Keys => Uuid::nil(),
        }
    }

    fn from_row(kind: i16, id: Uuid) -> Option<Self> {
        match kind {
            1 => Some(Self::User(UserId(id))),
            2 => Some(Self::Session(FamilyId(id))),
            3 => Some(Self::Blacklist(Jti(id))),
            4 => Some(Self::Keys),
            _ => None,
        }
    }
}

/// Appends `subjects` to the feed in `tx` (which must commit for them to count) and notifies
/// the other nodes; returns the highest id written.
pub(super) async fn append(
    tx: &tokio_postgres::Transaction<'_>,
    subjects: &[Subject],
    now: i64,
) -> Result<i64, StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CHANGE_LOCK])
        .await
        .map_err(pg_err("ordering the change feed"))?;
    let kinds: Vec<i16> = subjects.iter().map(|s| s.kind()).collect();
    let ids: Vec<Uuid> = subjects.iter().map(|s| s.id()).collect();
    let row = tx
        .query_one(
            "WITH written AS (
                 INSERT INTO latchd_changes (id, at, kind, subject)
                 SELECT nextval('latchd_change_ids'), $1, k, s
                 FROM unnest($2::smallint[], $3::uuid[]) WITH ORDINALITY AS t(k, s, n)
                 ORDER BY n
                 RETURNING id
             )
             SELECT coalesce(max(id), 0) FROM written",
            &[&now, &kinds, &ids],
        )
        .await
        .map_err(pg_err("appending to the change feed"))?;
    tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL])
        .await
        .map_err(pg_err("notifying the change feed"))?;
    Ok(row.get(0))
}

/// The feed's state, shared by the store and its task.
pub(super) struct Feed {
    /// The instant every confirmation is measured from.
    base: Instant,
    /// Nanoseconds after `base` at which the last successful poll began; 0 = never.
    confirmed: AtomicU64,
    /// The same instant as Unix milliseconds, to compare with the times in session ids.
    confirmed_unix_ms: AtomicU64,
    /// The highest change id applied to the view.
    applied: watch::Sender<i64>,
    /// The random `nonce` of the feed row at that id, when this node read it: a row with
    /// that id and another nonce means the ids were handed out again (a failover to a
    /// replica that had not seen the newest rows, a restore), and the view is reloaded.
    applied_nonce: std::sync::Mutex<Option<i64>>,
    /// How many times the signing keys changed (through any node) since start.
    keys: watch::Sender<u64>,
    /// Wakes the task at once (a write of this node waits for its change).
    kick: Notify,
    /// Bumped at every confirmation, for writers waiting for one.
    confirmations: watch::Sender<u64>,
}

impl Feed {
    /// A feed at `position`, confirmed as of `read_at` (when the view's read began).
    pub(super) fn new(position: i64, nonce: Option<i64>, read_at: Instant) -> Arc<Feed> {
        let feed = Arc::new(Feed {
            applied_nonce: std::sync::Mutex::new(nonce),
            base: Instant::now(),
            confirmed: AtomicU64::new(0),
            confirmed_unix_ms: AtomicU64::new(0),
            applied: watch::channel(position).0,
            keys: watch::channel(0).0,
            kick: Notify::new(),
            confirmations: watch::channel(0).0,
        });
        feed.confirm(read_at);
        feed
    }

    fn confirm(&self, started: Instant) {
        let nanos = u64::try_from(started.duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.saturating_sub(started.elapsed()).as_millis());
        self.confirmed_unix_ms.fetch_max(
            u64::try_from(unix_ms).unwrap_or(u64::MAX),
            Ordering::Release,
        );
        self.confirmed.fetch_max(nanos.max(1), Ordering::Release);
        self.confirmations.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Records that the view has applied the feed up to row `id`, whose nonce is `nonce`.
    fn set_applied(&self, id: i64, nonce: Option<i64>) {
        *self
            .applied_nonce
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = nonce;
        self.applied.send_replace(id);
    }

    /// Whether something created at `unix_ms` (a session id's time, on the clock of the node
    /// that opened it) may be newer than what the view has read: created later than
    /// [`CLOCK_SLACK_MS`] before the last confirmed poll began.
    pub(super) fn may_be_newer(&self, unix_ms: u64) -> bool {
        unix_ms.saturating_add(CLOCK_SLACK_MS) >= self.confirmed_unix_ms.load(Ordering::Acquire)
    }

    /// Blocks the calling thread until a poll that began after this call has confirmed the
    /// view, or `within` has passed. The feed task must be able to run meanwhile (on another
    /// thread: call it under `block_in_place`).
    pub(super) fn wait_for_fresh_poll(&self, within: Duration) {
        let asked = Instant::now();
        let since = u64::try_from(asked.duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        self.kick.notify_one();
        while self.confirmed.load(Ordering::Acquire) <= since && asked.elapsed() < within {
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Whether the view was confirmed current within the last [`CONFIRM_WITHIN`].
    pub(super) fn is_confirmed(&self) -> bool {
        let confirmed = self.confirmed.load(Ordering::Acquire);
        if confirmed == 0 {
            return false;
        }
        let now = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let window = u64::try_from(CONFIRM_WITHIN.as_nanos()).unwrap_or(u64::MAX);
        now.saturating_sub(confirmed) < window
    }

    /// Ok once the view is confirmed current: at once if it is, else after asking the feed
    /// to poll now and waiting for it (at most [`CONFIRM_WITHIN`]: a node whose task has
    /// not run for a while, like the CLI's while it read a password, confirms on the spot);
    /// `Unavailable` if it cannot.
    pub(super) async fn ready(&self) -> Result<(), StoreError> {
        if self.is_confirmed() {
            return Ok(());
        }
        let mut confirmations = self.confirmations.subscribe();
        self.kick.notify_one();
        let confirmed = confirmations.wait_for(|_| self.is_confirmed());
        let ready = matches!(
            tokio::time::timeout(CONFIRM_WITHIN, confirmed).await,
            Ok(Ok(_))
        );
        if ready {
            Ok(())
        } else {
            Err(StoreError::Unavailable)
        }
    }

    /// Waits (at most [`CONFIRM_WITHIN`]) until the view has applied change `id`: a write
    /// is answered only once this node honours it. If the feed cannot catch up in time the
    /// node stops confirming, so nothing is answered from the stale view either way.
    pub(super) async fn wait_applied(&self, id: i64) {
        let mut applied = self.applied.subscribe();
        self.kick.notify_one();
        drop(tokio::time::timeout(CONFIRM_WITHIN, applied.wait_for(|&at| at >= id)).await);
    }

    /// A receiver that changes whenever the signing keys change.
    pub(super) fn keys(&self) -> watch::Receiver<u64> {
        self.keys.subscribe()
    }
}

/// The feed task: runs until `stop` fires.
pub(super) async fn run(feed: Arc<Feed>, pool: Arc<Pool>, view: Arc<View>, stop: Arc<Notify>) {
    // Growing pauses between failed attempts (a broken row, a database that refuses us), so
    // a failing feed does not hammer the database; reset by every confirmation.
    let mut pause = POLL;
    loop {
        let session = tokio::select! {
            () = stop.notified() => return,
            session = listen(&pool) => session,
        };
        let Ok((client, wake, mut ended)) = session else {
            tokio::select! {
                () = stop.notified() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(MAX_PAUSE);
            continue;
        };
        loop {
            let started = Instant::now();
            // A poll that hangs (a peer gone without a reset) is a lost connection too.
            let polled =
                tokio::time::timeout(CONFIRM_WITHIN, catch_up(&feed, &client, &view)).await;
            match polled {
                Ok(Ok(Caught::Up)) => {
                    feed.confirm(started);
                    pause = POLL;
                }
                Ok(Ok(Caught::Behind)) => {
                    // The rest of the backlog at once; no confirmation until it is read.
                    continue;
                }
                Ok(Ok(Caught::Reload)) => {
                    // A whole view may take longer than a poll may: not under its timeout,
                    // and confirmed only by the poll after it.
                    match tokio::time::timeout(RELOAD_WITHIN, reload(&feed, &client, &view)).await {
                        Ok(Ok(())) => continue,
                        Ok(Err(e)) => tracing::warn!(error = %e, "change feed: reload failed"),
                        Err(_) => tracing::warn!("change feed: reload timed out"),
                    }
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "change feed: poll failed; reconnecting");
                    break;
                }
                Err(_) => {
                    tracing::warn!("change feed: poll timed out; reconnecting");
                    break;
                }
            }
            tokio::select! {
                () = stop.notified() => return,
                () = wake.notified() => {}
                () = feed.kick.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                _ = &mut ended => break,
            }
        }
        // Dropping the client ends its connection task.
        drop(client);
        tokio::select! {
            () = stop.notified() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// A fresh connection that LISTENs on the feed's channel, the signal its notifications
/// raise, and a receiver that resolves when the connection ends.
async fn listen(pool: &Pool) -> Result<(Client, Arc<Notify>, oneshot::Receiver<()>), StoreError> {
    let wake = Arc::new(Notify::new());
    let (client, driver) = pool.connect_raw(Some(Arc::clone(&wake))).await?;
    let (ended_tx, ended) = oneshot::channel();
    tokio::spawn(async move {
        if let Err(e) = driver.await {
            tracing::debug!(error = %e, "change feed connection ended");
        }
        ended_tx.send(()).ok(); // nobody waiting: the feed stopped first
    });
    let listened = tokio::time::timeout(
        CONFIRM_WITHIN,
        client.batch_execute(&format!("LISTEN {CHANNEL}")),
    )
    .await;
    match listened {
        Ok(Ok(())) => Ok((client, wake, ended)),
        Ok(Err(e)) => Err(pg_err("listening for changes")(e)),
        Err(_) => Err(StoreError::Unavailable),
    }
}

/// What one poll of the feed found.
enum Caught {
    /// Every change committed before the poll began is applied.
    Up,
    /// A full batch was applied and more may follow.
    Behind,
    /// The feed no longer holds what follows this node's position (swept past it, or a
    /// database whose ids went back: a failover to a replica that had not seen them, a
    /// restore): the view must be reloaded.
    Reload,
}

/// The most feed rows one poll reads.
const BATCH: i64 = 10_000;

/// How long reloading the whole view may take before the feed gives up and tries again.
const RELOAD_WITHIN: Duration = Duration::from_secs(120);

/// The longest pause between failed attempts to reach the feed.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Applies the changes after the view's position, at most [`BATCH`].
async fn catch_up(feed: &Feed, client: &Client, view: &View) -> Result<Caught, StoreError> {
    let position = *feed.applied.borrow();
    let rows = client
        .query(
            "SELECT id, kind, subject, nonce FROM latchd_changes WHERE id > $1 ORDER BY id
             LIMIT $2",
            &[&position, &BATCH],
        )
        .await
        .map_err(pg_err("reading the change feed"))?;
    // Read after the rows: a sweep between the two reads shows here. The head is the
    // highest id the feed has ever held (rows, or what a sweep removed); `at` is the nonce
    // of the row at this node's position, if it is still there.
    let (swept, head, at): (i64, i64, Option<i64>) = {
        let row = client
            .query_one(
                "SELECT value, greatest(value, (SELECT coalesce(max(id), 0) FROM latchd_changes)),
                        (SELECT nonce FROM latchd_changes WHERE id = $1)
                 FROM latchd_state WHERE name = 'changes_swept_through'",
                &[&position],
            )
            .await
            .map_err(pg_err("reading the change feed"))?;
        (row.get(0), row.get(1), row.get(2))
    };
    let known = *feed
        .applied_nonce
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Below the sweep the row may be gone; above it, it must be the one this node read.
    let replaced = position > swept && known.is_some() && at != known;
    if swept > position || head < position || replaced {
        tracing::warn!(
            position,
            swept,
            head,
            replaced,
            "the change feed no longer holds what follows this node's position: reloading the view"
        );
        return Ok(Caught::Reload);
    }
    let Some(last) = rows.last().map(|r| r.get::<_, i64>(0)) else {
        return Ok(Caught::Up);
    };
    let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= BATCH;
    let mut users = HashSet::new();
    let mut sessions = HashSet::new();
    let mut jtis = HashSet::new();
    let mut keys = false;
    for row in &rows {
        match Subject::from_row(row.get(1), row.get(2)) {
            Some(Subject::User(u)) => drop(users.insert(u)),
            Some(Subject::Session(f)) => drop(sessions.insert(f)),
            Some(Subject::Blacklist(j)) => drop(jtis.insert(j)),
            Some(Subject::Keys) => keys = true,
            None => {} // a kind a newer latchd writes: it changes nothing this build mirrors
        }
    }
    let mut changes: Vec<Change> = Vec::new();
    let users: Vec<UserId> = users.into_iter().collect();
    let sessions: Vec<FamilyId> = sessions.into_iter().collect();
    let jtis: Vec<Jti> = jtis.into_iter().collect();
    let (mut user_changes, gone) = rows::users_now(client, &users).await?;
    changes.append(&mut user_changes);
    changes.extend(rows::sessions_now(client, &sessions).await?);
    changes.extend(rows::blacklist_now(client, &jtis).await?);
    changes.extend(gone.into_iter().map(Change::UserGone));
    view.apply(changes);
    feed.set_applied(last, rows.last().map(|r| r.get(3)));
    if keys {
        feed.keys.send_modify(|n| *n += 1);
    }
    Ok(if full { Caught::Behind } else { Caught::Up })
}

/// Replaces the view with one read whole, and the position with the one it reflects.
async fn reload(feed: &Feed, client: &Client, view: &View) -> Result<(), StoreError> {
    let (fresh, at, nonce) = rows::load_view(client).await?;
    view.replace(fresh);
    feed.set_applied(at, nonce);
    feed.keys.send_modify(|n| *n += 1);
    Ok(())
}
