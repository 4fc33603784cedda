//! The PostgreSQL implementation of auth's [`Storage`] port (feature `postgres`): the state of
//! any number of latchd processes in one database (`LATCHD_DATABASE_URL`).
//!
//! - **Writes** run in `SERIALIZABLE` transactions, run again from the start when PostgreSQL
//!   aborts one for a conflict: every read-decide-write (a rotation's compare-and-swap, the
//!   last-admin rule, the session cap) holds as if the transactions of every node ran one at
//!   a time, so two nodes rotating one token can never both win. A write resolves after its
//!   `COMMIT` returns, which is durable as the server's `synchronous_commit` makes it (on,
//!   PostgreSQL's default, is what latchd assumes).
//! - **The view** ([`crate::store::view`], the same one the redb store keeps) is loaded at
//!   start and then follows the change feed ([`feed`]): a write that changes what it holds
//!   appends to the feed in its transaction, and answers only once this node's view has
//!   applied it. A node that cannot confirm within a second that its view is current refuses
//!   verifications and writes with 503 until it has caught up.
//! - **Records** are the redb store's own JSON encodings (`store::records`) in `jsonb`
//!   columns beside the columns SQL needs, so the two backends decode one format.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::{IsolationLevel, Transaction};

use crate::auth::storage::{Pending, Storage, StoreError};
use crate::model::{
    AccessDenied, AuditNote, AuditQuery, AuditRow, Backup, BrowserStanding, Counts, CreateUser,
    FamilyId, Jti, MfaChallenge, MfaCompletion, NewSession, NewUser, Origin, Presented,
    RefreshStanding, Rotation, SecondFactor, SessionInfo, SessionPolicy, StoredKey, Successor,
    Sweep, Totp, TotpUpdate, User, UserFacts, UserId, UserUpdate,
};
use crate::store::view::View;
use crate::time::UnixTime;

mod audit;
pub(super) mod errors;
mod feed;
mod keys;
mod pool;
mod rows;
mod schema;
mod sessions;
mod totp;
mod users;

use errors::{is_retryable, pg_err};
use feed::{Feed, Subject};
use pool::Pool;

/// How a PostgreSQL backend connects.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// The database, as a `postgres://` URL (`LATCHD_DATABASE_URL`).
    pub url: String,
    /// The most connections this node opens for requests (`LATCHD_DATABASE_POOL`); the
    /// change feed keeps one more.
    pub pool_size: usize,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password.
        f.debug_struct("Settings")
            .field("url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// Warns when the server does not flush a commit before it answers: latchd answers a write
/// once its `COMMIT` returns, and calls that durable.
async fn check_durability(client: &tokio_postgres::Client) -> Result<(), StoreError> {
    let setting: String = client
        .query_one("SELECT current_setting('synchronous_commit')", &[])
        .await
        .map_err(pg_err("reading synchronous_commit"))?
        .get(0);
    if setting == "off" {
        tracing::warn!(
            synchronous_commit = %setting,
            "PostgreSQL acknowledges commits before they are flushed: an acknowledged write \
             can be lost in a crash of the database server"
        );
    }
    Ok(())
}

/// The default of [`Settings::pool_size`].
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How often a transaction PostgreSQL aborted for a conflict is run again before the write
/// fails.
const MAX_ATTEMPTS: u32 = 20;

/// The longest pause before a transaction aborted for a conflict runs again (see
/// [`retry_pause`]).
const MAX_RETRY_PAUSE: Duration = Duration::from_millis(64);

/// Waits before attempt `attempt + 1` of a transaction PostgreSQL aborted for a conflict: a
/// random span up to 1 ms, doubling with each attempt up to [`MAX_RETRY_PAUSE`] (under a
/// second over all the attempts). Run again at once, a transaction meets the ones it
/// conflicted with still running and is aborted again: 24 logins of one user at once over two
/// nodes spent all their attempts so, and about one in thirty answered 500
/// (`tests/it/nodes.rs`). A transaction run again after the one it conflicted with has ended
/// does not fail for the same reason (PostgreSQL's safe retry); the random part keeps racing
/// writers from meeting again.
pub(super) async fn retry_pause(attempt: u32) {
    let cap = Duration::from_millis(1 << attempt.saturating_sub(1).min(6)).min(MAX_RETRY_PAUSE);
    let mut random = [0u8; 2];
    // Without randomness the full span, which still lets the other transaction finish.
    let fraction =
        match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random) {
            Ok(()) => f64::from(u16::from_be_bytes(random)) / f64::from(u16::MAX),
            Err(_) => 1.0,
        };
    tokio::time::sleep(cap.mul_f64(fraction)).await;
}

/// How long one operation may take before the database counts as unreachable.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// The PostgreSQL backend. `Send + Sync`; share it in an `Arc`.
pub struct PgStore {
    shared: Arc<Shared>,
    stop: Arc<Notify>,
}

/// What the store's operations and its feed task share.
pub(super) struct Shared {
    pool: Arc<Pool>,
    view: Arc<View>,
    feed: Arc<Feed>,
    refresh_mac_key: [u8; 32],
    /// The newest audit id this node wrote: ids increase on each node.
    audit_floor: Mutex<u128>,
    /// This node's random low 32 bits of every audit id it writes, so two nodes writing in
    /// the same second cannot collide.
    node_tag: u32,
    /// The browser touches handed to the background and not yet done.
    touches: Touches,
}

/// Browser touches under way ([`Storage::touch_session`]): a write begun after a touch was
/// handed over waits until it is done, so this node's writes are ordered after its earlier
/// touches as the redb store's one write queue orders them (a touch, then a write, then a
/// restart: the touch is on disk).
#[derive(Default)]
struct Touches {
    state: Mutex<TouchState>,
    done: Notify,
}

#[derive(Default)]
struct TouchState {
    next: u64,
    running: std::collections::BTreeSet<u64>,
}

/// One touch under way: done when dropped (finished, failed, timed out or cancelled).
struct TouchTicket {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for TouchTicket {
    fn drop(&mut self) {
        let touches = &self.shared.touches;
        touches
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .running
            .remove(&self.id);
        touches.done.notify_waiters();
    }
}

impl Touches {
    /// Registers a touch of `shared`'s, under way from now.
    fn start(shared: &Arc<Shared>) -> TouchTicket {
        let mut state = shared
            .touches
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let id = state.next;
        state.next += 1;
        state.running.insert(id);
        TouchTicket {
            shared: Arc::clone(shared),
            id,
        }
    }

    /// Waits until every touch registered before this call is done (later ones do not
    /// hold it up). Each touch is bounded by [`OPERATION_TIMEOUT`], so this is too.
    async fn after_earlier(&self) {
        let upto = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next;
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let pending = self
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .running
                .first()
                .is_some_and(|&first| first < upto);
            if !pending {
                return;
            }
            notified.await;
        }
    }
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("counts", &self.shared.view.counts())
            .field("confirmed", &self.shared.feed.is_confirmed())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, applies migrations (refusing a newer schema), loads the view and starts the
    /// change feed. Must be called inside a tokio runtime, which runs the feed.
    ///
    /// # Errors
    /// `Unavailable` if the database cannot be reached; `SchemaTooNew`; `NotADatabase` for a
    /// URL that does not parse.
    pub async fn connect(settings: &Settings) -> Result<PgStore, StoreError> {
        let pool = Arc::new(Pool::new(&settings.url, settings.pool_size)?);
        let mut client = pool.get().await?;
        schema::migrate(&mut client).await?;
        let refresh_mac_key = keys::refresh_mac_key(&client).await?;
        check_durability(&client).await?;
        // The view is as current as the moment its read began, not when it ended.
        let read_at = std::time::Instant::now();
        let (view, position, nonce) = rows::load_view(&client).await?;
        drop(client);
        let view = Arc::new(view);
        let feed = Feed::new(position, nonce, read_at);
        let stop = Arc::new(Notify::new());
        tokio::spawn(feed::run(
            Arc::clone(&feed),
            Arc::clone(&pool),
            Arc::clone(&view),
            Arc::clone(&stop),
        ));
        let mut tag = [0u8; 4];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut tag)
            .map_err(|_| StoreError::Random)?;
        Ok(PgStore {
            shared: Arc::new(Shared {
                pool,
                view,
                feed,
                refresh_mac_key,
                audit_floor: Mutex::new(0),
                node_tag: u32::from_be_bytes(tag),
                touches: Touches::default(),
            }),
            stop,
        })
    }

    /// Whether this node has confirmed within the last second that its view is current.
    pub fn is_confirmed(&self) -> bool {
        self.shared.feed.is_confirmed()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

/// An open `SERIALIZABLE` transaction of one write, and what it noted for after the commit.
pub(super) struct Txn<'c> {
    tx: Transaction<'c>,
    now: i64,
    noted: Mutex<Noted>,
}

#[derive(Default)]
struct Noted {
    subjects: Vec<Subject>,
    audited: Vec<AuditRow>,
}

/// What a committed write leaves to do: wait for the view, log its audit rows.
pub(super) struct Committed {
    change: Option<i64>,
    audited: Vec<AuditRow>,
}

impl<'c> std::ops::Deref for Txn<'c> {
    type Target = Transaction<'c>;

    fn deref(&self) -> &Transaction<'c> {
        &self.tx
    }
}

impl<'c> Txn<'c> {
    /// Begins a write transaction on `client`.
    pub(super) async fn begin(
        client: &'c mut tokio_postgres::Client,
        now: UnixTime,
    ) -> Result<Txn<'c>, StoreError> {
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::Serializable)
            .start()
            .await
            .map_err(pg_err("beginning a transaction"))?;
        Ok(Txn {
            tx,
            now: now.secs(),
            noted: Mutex::new(Noted::default()),
        })
    }

    /// Notes that `subject` changed: the commit appends it to the change feed.
    pub(super) fn changed(&self, subject: Subject) {
        let mut noted = self.noted.lock().unwrap_or_else(PoisonError::into_inner);
        if !noted.subjects.contains(&subject) {
            noted.subjects.push(subject);
        }
    }

    /// Records `note` in this transaction.
    pub(super) async fn audit(&self, shared: &Shared, note: AuditNote) -> Result<(), StoreError> {
        let row = audit::insert(self, shared, note).await?;
        self.noted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .audited
            .push(row);
        Ok(())
    }

    /// Appends what changed to the feed and commits.
    async fn commit(self) -> Result<Committed, StoreError> {
        let noted = self
            .noted
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let change = if noted.subjects.is_empty() {
            None
        } else {
            Some(feed::append(&self.tx, &noted.subjects, self.now).await?)
        };
        self.tx.commit().await.map_err(pg_err("committing"))?;
        Ok(Committed {
            change,
            audited: noted.audited,
        })
    }
}

/// Runs `$body` (a block evaluating to `Result<T, StoreError>`, with `$tx` a [`Txn`]) as one
/// write transaction on `$shared` at `$now`: begun after this node's earlier browser touches
/// are done, refused with `Unavailable` while the view cannot be confirmed, run again from the
/// start when PostgreSQL aborts it for a conflict, committed with its feed rows, and resolved
/// once this node's view has applied them.
///
/// `write_txn!(unordered ...)` does not wait for earlier touches: for a touch itself.
macro_rules! write_txn {
    ($shared:expr, $now:expr, |$tx:ident| $body:block) => {{
        let shared: &$crate::store::pg::Shared = $shared;
        shared.after_touches().await;
        $crate::store::pg::write_txn!(unordered shared, $now, |$tx| $body)
    }};
    (unordered $shared:expr, $now:expr, |$tx:ident| $body:block) => {{
        let shared: &$crate::store::pg::Shared = $shared;
        shared.write_gate().await?;
        let mut client = shared.client().await?;
        let attempts = $crate::store::pg::write_txn!(@attempts client, shared, $now, |$tx| $body);
        drop(client);
        let (value, committed) = attempts?;
        shared.settle(committed).await;
        Ok(value)
    }};
    // One user's writes that read all its sessions and add one (a sign-in), one at a time:
    // the lock is a session-level advisory lock taken BEFORE the transaction begins, so the
    // transaction's snapshot is taken after the previous holder committed and sees its
    // session. Under the transaction's own locks they would all read the same snapshot and
    // all but one be aborted as conflicts, again and again.
    (serialized $key:expr, $shared:expr, $now:expr, |$tx:ident| $body:block) => {{
        let shared: &$crate::store::pg::Shared = $shared;
        shared.after_touches().await;
        shared.write_gate().await?;
        let mut client = shared.client().await?;
        let (class, id): (i32, i32) = $key;
        // Should this future be dropped while the lock is held, the connection is closed
        // rather than pooled, which releases the lock.
        client.holds_session_state();
        client
            .execute("SELECT pg_advisory_lock($1, $2)", &[&class, &id])
            .await
            .map_err($crate::store::pg::errors::pg_err("locking a user's sign-ins"))?;
        let attempts = $crate::store::pg::write_txn!(@attempts client, shared, $now, |$tx| $body);
        if client
            .execute("SELECT pg_advisory_unlock($1, $2)", &[&class, &id])
            .await
            .is_ok()
        {
            client.session_state_clean();
        }
        drop(client);
        let (value, committed) = attempts?;
        shared.settle(committed).await;
        Ok(value)
    }};
    // The attempts of one write on `$client`: `Ok((value, committed))` or the last error.
    (@attempts $client:ident, $shared:ident, $now:expr, |$tx:ident| $body:block) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let done = {
                let $tx = match $crate::store::pg::Txn::begin(&mut $client, $now).await {
                    Ok(tx) => tx,
                    Err(e) => break Err(e),
                };
                let outcome: Result<_, $crate::auth::storage::StoreError> =
                    async { $body }.await;
                match outcome {
                    Ok(value) => $tx.commit().await.map(|c| (value, c)),
                    Err(e) => Err(e),
                }
            };
            match done {
                Ok(done) => break Ok(done),
                Err(e) if $shared.retry(&e, attempt) => {
                    $crate::store::pg::retry_pause(attempt).await;
                }
                Err(e) => break Err(e),
            }
        }
    }};
}
pub(super) use write_txn;

impl Shared {
    /// `Unavailable` unless the view is confirmed current (waiting up to a second for it).
    pub(super) async fn write_gate(&self) -> Result<(), StoreError> {
        self.feed.ready().await
    }

    /// Waits until the browser touches handed over before this call are done.
    pub(super) async fn after_touches(&self) {
        self.touches.after_earlier().await;
    }

    /// A pooled client, or `Unavailable`.
    pub(super) async fn client(&self) -> Result<pool::Lent<'_>, StoreError> {
        match tokio::time::timeout(OPERATION_TIMEOUT, self.pool.get()).await {
            Ok(lent) => lent,
            Err(_) => Err(StoreError::Unavailable),
        }
    }

    /// Whether a failed attempt is run again (a conflict, fewer than the most attempts).
    #[allow(clippy::unused_self)] // a method, so that write_txn! needs only the store
    pub(super) fn retry(&self, err: &StoreError, attempt: u32) -> bool {
        is_retryable(err) && attempt < MAX_ATTEMPTS
    }

    /// After a commit: waits for this node's view to apply its feed rows, then logs the
    /// audit rows (durable now).
    pub(super) async fn settle(&self, committed: Committed) {
        if let Some(id) = committed.change {
            self.feed.wait_applied(id).await;
        }
        for row in &committed.audited {
            crate::store::audit::log(row);
        }
    }
}

/// The longest a check of a token fresh from another node waits for this node's feed.
const FRESH_WAIT: Duration = Duration::from_millis(100);

/// When session `family` began, from its UUID v7 id.
fn created_unix_ms(family: FamilyId) -> Option<u64> {
    let (secs, nanos) = family.0.get_timestamp()?.to_unix();
    Some(
        secs.saturating_mul(1000)
            .saturating_add(u64::from(nanos / 1_000_000)),
    )
}

/// Whether this thread may block in place: on a worker of a multi-thread runtime, whose other
/// tasks (the feed among them) move to another thread meanwhile.
fn can_block_in_place() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Runs `future` with the operation timeout: a database that stops answering is
/// `Unavailable`, not a hang.
fn bounded<'a, T: Send + 'a>(
    future: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'a,
) -> Pending<'a, T> {
    Box::pin(async move {
        tokio::time::timeout(OPERATION_TIMEOUT, future)
            .await
            .unwrap_or(Err(StoreError::Unavailable))
    })
}

impl Storage for PgStore {
    fn check_access(
        &self,
        user: UserId,
        family: FamilyId,
        jti: Jti,
        version: u64,
    ) -> Result<(), AccessDenied> {
        if !self.shared.feed.is_confirmed() {
            return Err(AccessDenied::Unconfirmed);
        }
        let answer = self.shared.view.check_access(user, family, jti, version);
        // A token fresh from another node names a session (or user) this view may not have
        // read yet: its feed row is milliseconds old. Session ids are UUID v7, so the id says
        // when the session began; one that began around or after the last confirmed poll
        // waits for one more poll (milliseconds) before it is refused. Only tokens whose MAC
        // checked get here, so nobody can make a node wait with made-up ids.
        if matches!(
            answer,
            Err(AccessDenied::UnknownUser | AccessDenied::FamilyRevoked)
        ) && created_unix_ms(family).is_some_and(|ms| self.shared.feed.may_be_newer(ms))
            && can_block_in_place()
        {
            tokio::task::block_in_place(|| self.shared.feed.wait_for_fresh_poll(FRESH_WAIT));
            return self.shared.view.check_access(user, family, jti, version);
        }
        answer
    }

    fn check_browser(
        &self,
        cookie_hash: &[u8; 32],
        now: UnixTime,
        policy: &SessionPolicy,
    ) -> Result<BrowserStanding, AccessDenied> {
        if !self.shared.feed.is_confirmed() {
            return Err(AccessDenied::Unconfirmed);
        }
        self.shared.view.check_browser(cookie_hash, now, policy)
    }

    fn user_facts(&self, user: UserId) -> Option<UserFacts> {
        self.shared.view.user_facts(user)
    }

    fn touch_session(&self, family: FamilyId, at: UnixTime) {
        // Registered now, so that this node's later writes are ordered after it; nobody waits
        // for the answer. A failure leaves the last use on disk older, which the view notices
        // and asks again.
        let ticket = Touches::start(&self.shared);
        tokio::spawn(async move {
            let touched = bounded(sessions::touch(&ticket.shared, family, at)).await;
            if let Err(e) = touched {
                tracing::debug!(error = %e, "recording a browser session's use failed");
            }
            drop(ticket);
        });
    }

    fn counts(&self) -> Counts {
        self.shared.view.counts()
    }

    fn keys_changed(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.shared.feed.keys())
    }

    fn refresh_mac_key(&self) -> [u8; 32] {
        self.shared.refresh_mac_key
    }

    fn user(&self, id: UserId) -> Pending<'_, Option<User>> {
        bounded(users::user(&self.shared, id))
    }

    fn user_by_email<'a>(&'a self, email: &'a str) -> Pending<'a, Option<User>> {
        bounded(users::user_by_email(&self.shared, email))
    }

    fn list_users(&self, limit: usize, after: Option<UserId>) -> Pending<'_, Vec<User>> {
        bounded(users::list(&self.shared, limit, after))
    }

    fn create_user(
        &self,
        user: NewUser,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, CreateUser> {
        bounded(users::create(&self.shared, user, now, note))
    }

    fn open_session<'a>(
        &'a self,
        family: FamilyId,
        seen: &'a User,
        first_hash: [u8; 32],
        session: NewSession,
        now: UnixTime,
        policy: SessionPolicy,
        note: AuditNote,
    ) -> Pending<'a, bool> {
        bounded(sessions::open(
            &self.shared,
            family,
            seen,
            first_hash,
            session,
            now,
            policy,
            note,
        ))
    }

    fn rotate(
        &self,
        presented: Presented,
        next: Successor,
        now: UnixTime,
        policy: SessionPolicy,
        note: AuditNote,
    ) -> Pending<'_, Rotation> {
        bounded(sessions::rotate(
            &self.shared,
            presented,
            next,
            now,
            policy,
            note,
        ))
    }

    fn blacklist(&self, jti: Jti, exp: UnixTime) -> Pending<'_, ()> {
        bounded(sessions::blacklist(&self.shared, jti, exp))
    }

    fn end_session(
        &self,
        family: FamilyId,
        jti: Jti,
        exp: UnixTime,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, ()> {
        bounded(sessions::end_session(
            &self.shared,
            family,
            jti,
            exp,
            now,
            note,
        ))
    }

    fn sessions(&self, user: UserId, now: UnixTime) -> Pending<'_, Vec<SessionInfo>> {
        bounded(sessions::list(&self.shared, user, now))
    }

    fn end_own_session(
        &self,
        user: UserId,
        family: FamilyId,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, bool> {
        bounded(sessions::end_own(&self.shared, user, family, now, note))
    }

    fn refresh_standing(
        &self,
        presented: Presented,
        now: UnixTime,
    ) -> Pending<'_, Option<RefreshStanding>> {
        bounded(sessions::standing(&self.shared, presented, now))
    }

    fn revoke_refresh(
        &self,
        presented: Presented,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, Option<UserId>> {
        bounded(sessions::revoke_refresh(&self.shared, presented, now, note))
    }

    fn revoke_session(
        &self,
        family: FamilyId,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, bool> {
        bounded(sessions::revoke_session(&self.shared, family, now, note))
    }

    fn revoke_user(&self, user: UserId, now: UnixTime, note: AuditNote) -> Pending<'_, bool> {
        bounded(users::revoke_user(&self.shared, user, now, note))
    }

    fn change_password<'a>(
        &'a self,
        user: UserId,
        expected: &'a str,
        new_hash: &'a str,
        keep: Option<FamilyId>,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'a, bool> {
        bounded(users::change_password(
            &self.shared,
            user,
            expected,
            new_hash,
            keep,
            now,
            note,
        ))
    }

    fn upgrade_password_hash<'a>(
        &'a self,
        user: UserId,
        expected: &'a str,
        new_hash: &'a str,
    ) -> Pending<'a, bool> {
        bounded(users::upgrade_password_hash(
            &self.shared,
            user,
            expected,
            new_hash,
        ))
    }

    fn set_roles<'a>(
        &'a self,
        user: UserId,
        roles: &'a [String],
        note: AuditNote,
    ) -> Pending<'a, UserUpdate> {
        bounded(users::set_roles(&self.shared, user, roles, note))
    }

    fn disable_user(
        &self,
        user: UserId,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, UserUpdate> {
        bounded(users::disable(&self.shared, user, now, note))
    }

    fn enable_user(&self, user: UserId, note: AuditNote) -> Pending<'_, UserUpdate> {
        bounded(users::enable(&self.shared, user, note))
    }

    fn delete_user(&self, user: UserId, note: AuditNote) -> Pending<'_, UserUpdate> {
        bounded(users::delete(&self.shared, user, note))
    }

    fn totp(&self, user: UserId) -> Pending<'_, Option<Totp>> {
        bounded(totp::get(&self.shared, user))
    }

    fn begin_totp(
        &self,
        user: UserId,
        secret: [u8; 20],
        session: FamilyId,
        now: UnixTime,
    ) -> Pending<'_, TotpUpdate> {
        bounded(totp::begin(&self.shared, user, secret, session, now))
    }

    fn confirm_totp(
        &self,
        user: UserId,
        secret: [u8; 20],
        step: u64,
        salt: [u8; 16],
        recovery: Vec<[u8; 32]>,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, TotpUpdate> {
        bounded(totp::confirm(
            &self.shared,
            user,
            secret,
            step,
            salt,
            recovery,
            now,
            note,
        ))
    }

    fn disable_totp(
        &self,
        user: UserId,
        factor: SecondFactor,
        note: AuditNote,
    ) -> Pending<'_, TotpUpdate> {
        bounded(totp::disable(&self.shared, user, factor, note))
    }

    fn reset_totp(&self, user: UserId, now: UnixTime, note: AuditNote) -> Pending<'_, bool> {
        bounded(totp::reset(&self.shared, user, now, note))
    }

    fn open_challenge(&self, hash: [u8; 32], challenge: MfaChallenge) -> Pending<'_, ()> {
        bounded(totp::open_challenge(&self.shared, hash, challenge))
    }

    fn challenge(&self, hash: [u8; 32], now: UnixTime) -> Pending<'_, Option<MfaChallenge>> {
        bounded(totp::challenge(&self.shared, hash, now))
    }

    fn fail_challenge(
        &self,
        hash: [u8; 32],
        max_failures: u32,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, bool> {
        bounded(totp::fail_challenge(
            &self.shared,
            hash,
            max_failures,
            now,
            note,
        ))
    }

    fn complete_challenge(
        &self,
        hash: [u8; 32],
        factor: SecondFactor,
        family: FamilyId,
        first_hash: [u8; 32],
        origin: Origin,
        now: UnixTime,
        policy: SessionPolicy,
        note: AuditNote,
    ) -> Pending<'_, MfaCompletion> {
        bounded(totp::complete_challenge(
            &self.shared,
            hash,
            factor,
            family,
            first_hash,
            origin,
            now,
            policy,
            note,
        ))
    }

    fn signing_keys(&self) -> Pending<'_, Vec<StoredKey>> {
        bounded(keys::list(&self.shared))
    }

    fn add_signing_key(
        &self,
        key: StoredKey,
        retire_others_at: Option<UnixTime>,
        note: AuditNote,
    ) -> Pending<'_, ()> {
        bounded(keys::add(&self.shared, key, retire_others_at, note))
    }

    fn retire_signing_keys(&self, at: UnixTime) -> Pending<'_, u64> {
        bounded(keys::retire(&self.shared, at))
    }

    fn record(&self, note: AuditNote) -> Pending<'_, ()> {
        bounded(audit::record(&self.shared, note))
    }

    fn audit(&self, query: AuditQuery) -> Pending<'_, Vec<AuditRow>> {
        bounded(audit::list(&self.shared, query))
    }

    fn sweep(&self, now: UnixTime, retain_secs: i64, audit_retain_secs: i64) -> Pending<'_, Sweep> {
        bounded(audit::sweep(
            &self.shared,
            now,
            retain_secs,
            audit_retain_secs,
        ))
    }

    fn backup(&self, _dest: &Path) -> Pending<'_, Backup> {
        Box::pin(std::future::ready(Err(StoreError::Unsupported(
            "the state is in PostgreSQL: back it up with pg_dump (README \"Running several \
             nodes\")",
        ))))
    }
}
