//! The operator's channel: the CLI's commands as [`Request`]s, the one place each is carried out
//! ([`execute`], on the operator's authority), and the local socket a running server answers
//! them on, so that `latchd user …`, `key rotate`, `gc` and `backup` work beside it.
//!
//! redb lets one process hold the file, so while a server runs it must carry out the commands
//! itself: that keeps its in-memory view true (a user disabled from the CLI is refused at once)
//! and every write goes through its writer. The server listens on a Unix socket next to the
//! database file (`<db>.sock`), owner-only (0600): nothing reaches it over the network, and the
//! file's permissions are the authentication (the server's user and root). Each connection
//! carries one request, one JSON line, and gets one [`Reply`], one JSON line. With no server
//! answering there, the CLI opens the file itself and runs the same [`execute`].
//!
//! Adding a command: a variant of [`Request`], its arm in `run`, and the clap subcommand in
//! `cli.rs` that builds it; it then works against a running server and a stopped one alike.

use std::fmt::Write as _;
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

use crate::auth::{Actor, AuthError, Authority};
use crate::model::{AuditEvent, AuditQuery, User, UserId};
use crate::time::UnixTime;

/// One operator command, as the CLI sends it to the server.
#[derive(Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// `latchd user add`: the password was read by the CLI from its stdin.
    UserAdd {
        /// The new user's email.
        email: String,
        /// Roles to grant.
        roles: Vec<String>,
        /// The password (travels only over the owner-only socket).
        password: String,
    },
    /// `latchd user list`.
    UserList,
    /// `latchd user disable`.
    UserDisable {
        /// The user's id or email.
        user: String,
    },
    /// `latchd user enable`.
    UserEnable {
        /// The user's id or email.
        user: String,
    },
    /// `latchd user delete`.
    UserDelete {
        /// The user's id or email.
        user: String,
    },
    /// `latchd user set-roles`: the user's roles become exactly `roles`.
    UserSetRoles {
        /// The user's id or email.
        user: String,
        /// The roles it holds afterwards.
        roles: Vec<String>,
    },
    /// `latchd user totp-reset`.
    UserTotpReset {
        /// The user's id or email.
        user: String,
    },
    /// `latchd key rotate`.
    KeyRotate,
    /// `latchd gc`.
    Gc,
    /// `latchd audit`: the audit rows matching every filter given, oldest first.
    Audit {
        /// Only rows about this user (an id, which may be a deleted user's, or an email).
        user: Option<String>,
        /// Only rows of this event (API.md's name).
        event: Option<String>,
        /// Only rows at or after this time (Unix seconds).
        since: Option<i64>,
    },
    /// `latchd backup PATH`: `path` is absolute (the CLI resolved it), written by the server.
    Backup {
        /// Where the copy goes; must not exist.
        path: PathBuf,
    },
}

/// What a command printed: its standard output, notes for standard error, and the one-line
/// error that failed it, if any (exit code 1).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// Lines for stdout.
    pub stdout: String,
    /// Notes for stderr (without the `latchd: ` prefix).
    pub stderr: String,
    /// Why the command failed.
    pub error: Option<String>,
}

/// Carries out `request` on the operator's authority; never fails, the failure is in the reply.
pub async fn execute(auth: &Authority, request: Request) -> Reply {
    let mut reply = Reply::default();
    if let Err(e) = run(auth, request, &mut reply).await {
        reply.error = Some(e.to_string());
    }
    reply
}

/// The socket a server on the database `db` listens on: `<db>.sock`, beside it.
pub fn socket_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".sock");
    PathBuf::from(name)
}

/// A connection to the server that holds a database.
#[derive(Debug)]
pub struct Client {
    #[cfg(unix)]
    stream: std::os::unix::net::UnixStream,
}

/// Why the channel failed.
#[derive(Debug)]
pub enum ChannelError {
    /// The socket exists but may not be connected to (another user's server).
    Connect(PathBuf, io::Error),
    /// Sending the request or reading the answer failed.
    Io(io::Error),
    /// The server's answer is not a reply.
    BadReply(String),
    /// The process listening on the socket is neither the database's owner nor root.
    Untrusted {
        /// The socket.
        socket: PathBuf,
        /// The uid of the process listening.
        server: u32,
        /// The uid owning the database file, if it exists.
        owner: Option<u32>,
    },
}

/// Whether a peer running as `peer` may be talked to on behalf of `owner`'s database or
/// server: the same user, or root.
fn trusted(peer: u32, owner: Option<u32>) -> bool {
    peer == 0 || Some(peer) == owner
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(path, e) => write!(
                f,
                "cannot reach the running server at {}: {e} (run as the server's user)",
                path.display()
            ),
            Self::Io(e) => write!(f, "talking to the running server: {e}"),
            Self::BadReply(why) => write!(f, "the running server answered badly: {why}"),
            Self::Untrusted {
                socket,
                server,
                owner,
            } => {
                write!(
                    f,
                    "refusing to talk to {}: the process listening runs as uid {server}, ",
                    socket.display()
                )?;
                match owner {
                    Some(owner) => write!(f, "not as the database's owner (uid {owner}) or root")?,
                    None => f.write_str("and there is no database beside it")?,
                }
                f.write_str("; nothing was sent")
            }
        }
    }
}

impl std::error::Error for ChannelError {}

impl Client {
    /// Connects to the server on `db`; `None` when none is listening (no socket, or a stale
    /// one a crashed server left). Call within a Tokio runtime.
    ///
    /// The process listening must be the owner of `db` or root (its `SO_PEERCRED`), checked
    /// before anything is sent: a socket another user planted at the path (or a symlink there
    /// to one of theirs) would otherwise receive `user add`'s password and fake the reply.
    ///
    /// # Errors
    /// [`ChannelError::Connect`] when a socket is there but refuses this user;
    /// [`ChannelError::Untrusted`] when another user listens on it.
    pub async fn connect(db: &Path) -> Result<Option<Client>, ChannelError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            let path = socket_path(db);
            let stream = match tokio::net::UnixStream::connect(&path).await {
                Ok(stream) => stream,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(ChannelError::Connect(path, e)),
            };
            let server = stream.peer_cred().map_err(ChannelError::Io)?.uid();
            // A server holds its database, so a socket beside a missing file is nobody's.
            let owner = std::fs::metadata(db).ok().map(|m| m.uid());
            if !trusted(server, owner) {
                return Err(ChannelError::Untrusted {
                    socket: path,
                    server,
                    owner,
                });
            }
            let stream = stream.into_std().map_err(ChannelError::Io)?;
            stream.set_nonblocking(false).map_err(ChannelError::Io)?;
            Ok(Some(Client { stream }))
        }
        #[cfg(not(unix))]
        {
            let _ = db;
            Ok(None)
        }
    }

    /// Sends `request` and waits for the reply (a backup of a large file takes a while).
    ///
    /// # Errors
    /// [`ChannelError::Io`] or [`ChannelError::BadReply`].
    pub fn send(self, request: &Request) -> Result<Reply, ChannelError> {
        #[cfg(unix)]
        {
            let mut line =
                serde_json::to_vec(request).map_err(|e| ChannelError::Io(io::Error::other(e)))?;
            line.push(b'\n');
            let mut stream = self.stream;
            stream.write_all(&line).map_err(ChannelError::Io)?;
            stream
                .shutdown(std::net::Shutdown::Write)
                .map_err(ChannelError::Io)?;
            let mut answer = String::new();
            BufReader::new(stream)
                .take(MAX_REPLY_BYTES)
                .read_line(&mut answer)
                .map_err(ChannelError::Io)?;
            if answer.is_empty() {
                return Err(ChannelError::BadReply(
                    "it closed the connection without answering".to_owned(),
                ));
            }
            serde_json::from_str(&answer).map_err(|e| ChannelError::BadReply(e.to_string()))
        }
        #[cfg(not(unix))]
        {
            let _ = request;
            Err(ChannelError::Io(io::Error::from(
                io::ErrorKind::Unsupported,
            )))
        }
    }
}

/// The server's end: a listening socket beside the database, removed when dropped.
#[derive(Debug)]
pub struct Socket {
    #[cfg(unix)]
    listener: std::os::unix::net::UnixListener,
    /// The uid this server runs as (the owner of the socket it bound).
    #[cfg(unix)]
    uid: u32,
    path: PathBuf,
}

impl Socket {
    /// Listens on [`socket_path`]`(db)`, owner-only. Call only while holding the database
    /// (after opening it), so that a socket already there is a dead server's and is replaced.
    ///
    /// The socket is bound inside a fresh 0700 directory, made 0600, then renamed into place:
    /// no other user can connect in the moment before its mode is set, whatever the umask.
    ///
    /// # Errors
    /// The path is taken by something that is not a socket, or binding failed.
    pub fn bind(db: &Path) -> io::Result<Socket> {
        let path = socket_path(db);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{
                DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _,
            };
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(&path)?,
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a socket", path.display()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let mut private = path.as_os_str().to_owned();
            private.push(format!(".{}.d", std::process::id()));
            let private = PathBuf::from(private);
            let _ = std::fs::remove_dir_all(&private);
            std::fs::DirBuilder::new().mode(0o700).create(&private)?;
            let staged = private.join("s");
            let bound = std::os::unix::net::UnixListener::bind(&staged).and_then(|listener| {
                std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
                // Created by this process: owned by the uid it runs as.
                let uid = std::fs::symlink_metadata(&staged)?.uid();
                std::fs::rename(&staged, &path)?;
                listener.set_nonblocking(true)?;
                Ok((listener, uid))
            });
            let _ = std::fs::remove_file(&staged);
            let _ = std::fs::remove_dir(&private);
            let (listener, uid) = bound?;
            Ok(Socket {
                listener,
                uid,
                path,
            })
        }
        #[cfg(not(unix))]
        Ok(Socket { path })
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Answers operator commands on `socket` with `auth`, forever; abort the task to stop it.
pub async fn serve(socket: Socket, auth: Arc<Authority>) {
    #[cfg(unix)]
    {
        let listener = match socket
            .listener
            .try_clone()
            .and_then(tokio::net::UnixListener::from_std)
        {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(error = %e, "operator socket failed; the CLI cannot reach this server");
                return;
            }
        };
        tracing::info!(socket = %socket.path.display(), "answering operator commands");
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream, socket.uid, Arc::clone(&auth)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "operator socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (socket, auth);
    }
}

/// One connection: one request line (bounded, within a deadline), one reply line. Only a
/// process of the server's own user (`uid`) or root is answered: the socket's mode says the
/// same, but a mode loosened by hand (or a directory an operator shares) must not hand the
/// operator's powers to every local user.
#[cfg(unix)]
async fn answer(stream: tokio::net::UnixStream, uid: u32, auth: Arc<Authority>) {
    let peer = stream.peer_cred().map(|c| c.uid());
    let (read, mut write) = stream.into_split();
    // Read even when refusing: closing with the request unread would reset the connection
    // before the refusal arrives.
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST_BYTES));
    let Ok(read) = tokio::time::timeout(REQUEST_DEADLINE, reader.read_line(&mut line)).await else {
        return;
    };
    let refuse = |why: String| Reply {
        error: Some(why),
        ..Reply::default()
    };
    let reply = match (peer, read) {
        (Ok(peer), _) if !trusted(peer, Some(uid)) => {
            tracing::warn!(
                peer_uid = peer,
                "operator socket: refused a process of another user"
            );
            refuse(format!(
                "refused: this process runs as uid {peer}; the server answers only its own \
                 user (uid {uid}) and root"
            ))
        }
        (Err(e), _) => refuse(format!("refused: cannot tell who is connecting: {e}")),
        (Ok(_), Err(e)) => refuse(format!("reading the request: {e}")),
        (Ok(_), Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                tracing::info!(command = request.name(), "operator command");
                execute(&auth, request).await
            }
            Err(e) => refuse(format!(
                "the server does not understand this command ({e}); \
                 is the CLI a different latchd version than the server?"
            )),
        },
    };
    let Ok(mut bytes) = serde_json::to_vec(&reply) else {
        return;
    };
    bytes.push(b'\n');
    let _ = write.write_all(&bytes).await;
    let _ = write.shutdown().await;
}

impl Request {
    /// The command's name, for the log.
    fn name(&self) -> &'static str {
        match self {
            Self::UserAdd { .. } => "user add",
            Self::UserList => "user list",
            Self::UserDisable { .. } => "user disable",
            Self::UserEnable { .. } => "user enable",
            Self::UserDelete { .. } => "user delete",
            Self::UserSetRoles { .. } => "user set-roles",
            Self::UserTotpReset { .. } => "user totp-reset",
            Self::KeyRotate => "key rotate",
            Self::Gc => "gc",
            Self::Audit { .. } => "audit",
            Self::Backup { .. } => "backup",
        }
    }
}

/// Why a command failed, as its one line.
#[derive(Debug)]
enum CommandError {
    NoSuchUser(String),
    RelativeBackup(PathBuf),
    NoSuchEvent(String),
    Backup(PathBuf, AuthError),
    Auth(AuthError),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoSuchUser(who) => write!(f, "no user with id or email {who:?}"),
            Self::RelativeBackup(path) => write!(
                f,
                "cannot back up to {}: the path must be absolute",
                path.display()
            ),
            Self::NoSuchEvent(name) => write!(f, "no audit event is called {name:?}"),
            Self::Backup(path, e) => write!(f, "cannot back up to {}: {e}", path.display()),
            Self::Auth(AuthError::WeakPassword(why)) => write!(f, "password refused: {why}"),
            Self::Auth(e) => write!(f, "{e}"),
        }
    }
}

impl From<AuthError> for CommandError {
    fn from(e: AuthError) -> Self {
        Self::Auth(e)
    }
}

async fn run(auth: &Authority, request: Request, out: &mut Reply) -> Result<(), CommandError> {
    let now = UnixTime::now();
    // `write!` to a String cannot fail.
    let stdout = &mut out.stdout;
    match request {
        Request::UserAdd {
            email,
            roles,
            password,
        } => {
            let created = auth
                .create_user(Actor::Operator, &email, &password, &roles, now)
                .await?;
            let _ = writeln!(stdout, "{}", created.id);
        }
        Request::UserList => user_list(auth, stdout).await?,
        Request::UserDisable { user } => {
            let found = find(auth, &user).await?;
            auth.disable_user(Actor::Operator, found.id, now).await?;
            let _ = writeln!(
                stdout,
                "disabled {} ({}); its sessions are revoked",
                found.id, found.email
            );
        }
        Request::UserEnable { user } => {
            let found = find(auth, &user).await?;
            auth.enable_user(Actor::Operator, found.id, now).await?;
            let _ = writeln!(stdout, "enabled {} ({})", found.id, found.email);
        }
        Request::UserDelete { user } => {
            let found = find(auth, &user).await?;
            auth.delete_user(Actor::Operator, found.id, now).await?;
            let _ = writeln!(stdout, "deleted {} ({})", found.id, found.email);
        }
        Request::UserSetRoles { user, roles } => {
            let found = find(auth, &user).await?;
            auth.set_roles(Actor::Operator, found.id, &roles, now)
                .await?;
            let now_held = find(auth, &found.id.to_string()).await?;
            let _ = writeln!(
                stdout,
                "roles of {} ({}) are now: {}",
                found.id,
                found.email,
                now_held.roles.join(",")
            );
        }
        Request::UserTotpReset { user } => {
            let found = find(auth, &user).await?;
            auth.reset_totp(Actor::Operator, found.id, now).await?;
            let _ = writeln!(
                stdout,
                "two-step verification is off for {} ({}); its sessions are revoked",
                found.id, found.email
            );
        }
        Request::KeyRotate => {
            let kid = auth.rotate_signing_key(Actor::Operator, now).await?;
            let _ = writeln!(stdout, "{kid}");
            let _ = writeln!(
                out.stderr,
                "retired the older key(s); they verify until {} (one access TTL), \
                 then the sweeper deletes them",
                now.plus(auth.access_ttl_secs()).to_rfc3339()
            );
        }
        Request::Gc => {
            let swept = auth.sweep(now).await?;
            let _ = writeln!(
                stdout,
                "swept blacklist={} families={} keys={} challenges={} audit={}",
                swept.blacklist, swept.families, swept.keys, swept.challenges, swept.audit
            );
        }
        Request::Audit { user, event, since } => {
            let query = audit_query(auth, user, event, since).await?;
            audit_rows(auth, query, stdout).await?;
        }
        Request::Backup { path } => {
            // Whoever sent it resolved it: the server's working directory is not theirs.
            if !path.is_absolute() {
                return Err(CommandError::RelativeBackup(path));
            }
            let done = auth
                .backup(Actor::Operator, &path)
                .await
                .map_err(|e| CommandError::Backup(path.clone(), e))?;
            let _ = writeln!(
                stdout,
                "backed up {} users, {} sessions ({} rows, {} bytes) to {}",
                done.users,
                done.sessions,
                done.rows,
                done.bytes,
                path.display()
            );
        }
    }
    Ok(())
}

/// The user named by a UUID or, failing that, an email.
async fn find(auth: &Authority, who: &str) -> Result<User, CommandError> {
    match auth.find_user(Actor::Operator, who).await {
        Err(AuthError::NotFound) => Err(CommandError::NoSuchUser(who.to_owned())),
        found => Ok(found?),
    }
}

async fn user_list(auth: &Authority, out: &mut String) -> Result<(), CommandError> {
    let mut after: Option<UserId> = None;
    loop {
        let page = auth.list_users(Actor::Operator, LIST_PAGE, after).await?;
        for user in &page {
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}",
                user.id,
                user.email,
                user.roles.join(","),
                user.created_at.to_rfc3339(),
                if user.disabled { "disabled" } else { "enabled" }
            );
        }
        match page.last() {
            Some(last) if page.len() == LIST_PAGE => after = Some(last.id),
            _ => return Ok(()),
        }
    }
}

/// The query of `latchd audit`'s filters, from its first page.
async fn audit_query(
    auth: &Authority,
    user: Option<String>,
    event: Option<String>,
    since: Option<i64>,
) -> Result<AuditQuery, CommandError> {
    let user = match user {
        // An id is taken as it is: the rows of a deleted user outlive it.
        Some(who) => Some(match UserId::parse(who.trim()) {
            Some(id) => id,
            None => find(auth, &who).await?.id,
        }),
        None => None,
    };
    let event = match event {
        Some(name) => Some(AuditEvent::from_label(&name).ok_or(CommandError::NoSuchEvent(name))?),
        None => None,
    };
    Ok(AuditQuery {
        user,
        event,
        after: None,
        since: since.map(UnixTime),
        limit: AUDIT_PAGE,
    })
}

/// Prints every row `query` matches, one JSON object a line, reading `query.limit` at a time.
async fn audit_rows(
    auth: &Authority,
    mut query: AuditQuery,
    out: &mut String,
) -> Result<(), CommandError> {
    loop {
        let page = auth.audit(Actor::Operator, query).await?;
        for row in &page {
            match serde_json::to_string(row) {
                Ok(line) => {
                    let _ = writeln!(out, "{line}");
                }
                Err(e) => return Err(CommandError::Auth(AuthError::Internal(e.to_string()))),
            }
        }
        match page.last() {
            Some(last) if page.len() == query.limit => query.after = Some(last.id),
            _ => return Ok(()),
        }
    }
}

/// Audit rows read per call.
const AUDIT_PAGE: usize = 1000;
/// Users read per listing call.
const LIST_PAGE: usize = 100;
/// Most bytes of one request (a user add with its password is well under 4 KiB).
const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// Most bytes of one reply (the user list of a million users is about 100 MB).
const MAX_REPLY_BYTES: u64 = 1 << 30;
/// How long a connection may take to send its request.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
