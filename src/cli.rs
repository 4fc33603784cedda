//! The operator's commands: `user add|list|disable|enable|delete`, `key rotate`, `gc`.
//!
//! Each opens the redb file directly (never through HTTP) and calls the auth and store layers.
//! redb lets one process hold the file, so these run while the server is stopped; against a
//! running server they say so in one line. Every failure is one line on stderr and exit code 1.

use std::fmt;
use std::io::{self, BufRead, IsTerminal as _, Read as _, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use ring::rand::SystemRandom;
use uuid::Uuid;

use crate::auth::{self, AuthError, Authority};
use crate::config::Config;
use crate::store::{Store, StoreError, User, UserId, UserUpdate};
use crate::time::UnixTime;

/// `latchd user …`: manage accounts in the database file.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user and print its id. The password is read as one line from stdin (never from
    /// the command line or the environment) and must pass the same policy as the API.
    Add {
        /// The new user's email (unique, compared case-insensitively).
        #[arg(long)]
        email: String,
        /// A role to grant, e.g. `admin`; repeat for several. 1-64 characters of [a-z0-9_.:-].
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
    },
    /// Print every user, one tab-separated line each: id, email, roles (comma-separated),
    /// creation time (RFC 3339), and `disabled` or `enabled`.
    List,
    /// Disable a user and revoke all its sessions: its tokens stop verifying, login is refused.
    Disable {
        /// The user's id or email.
        #[arg(value_name = "ID_OR_EMAIL")]
        user: String,
    },
    /// Re-enable a disabled user. Sessions revoked by `disable` stay revoked.
    Enable {
        /// The user's id or email.
        #[arg(value_name = "ID_OR_EMAIL")]
        user: String,
    },
    /// Delete a user and all its sessions.
    Delete {
        /// The user's id or email.
        #[arg(value_name = "ID_OR_EMAIL")]
        user: String,
    },
}

/// `latchd key …`: manage the access-token signing keys.
#[derive(Clone, Copy, Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a new 256-bit signing key and print its kid. Older keys are retired now: they
    /// keep verifying until one access TTL has passed, then the sweeper deletes them.
    Rotate,
}

/// Flags of the same meaning as the `LATCHD_*` variables; a flag overrides its variable.
/// `LATCHD_SIGNING_KEY` has no flag: a key on the command line would be readable by every
/// local user through the process list.
#[derive(Args, Debug, Default)]
#[allow(clippy::doc_markdown)] // the field docs are --help text, where backticks would show
pub struct Flags {
    /// LATCHD_LISTEN: address:port to listen on.
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<String>,
    /// LATCHD_DB: path of the redb file.
    #[arg(long, global = true, value_name = "PATH")]
    db: Option<String>,
    /// LATCHD_ISSUER: `iss` to put and demand.
    #[arg(long, global = true)]
    issuer: Option<String>,
    /// LATCHD_AUDIENCE: `aud` to put and demand.
    #[arg(long, global = true)]
    audience: Option<String>,
    /// LATCHD_CLIENT_ID: `client_id` claim of access tokens.
    #[arg(long, global = true)]
    client_id: Option<String>,
    /// LATCHD_ACCESS_TTL: access-token lifetime, seconds.
    #[arg(long, global = true, value_name = "SECS")]
    access_ttl: Option<String>,
    /// LATCHD_REFRESH_TTL: sliding refresh-token lifetime, seconds.
    #[arg(long, global = true, value_name = "SECS")]
    refresh_ttl: Option<String>,
    /// LATCHD_SESSION_MAX: absolute session lifetime, seconds.
    #[arg(long, global = true, value_name = "SECS")]
    session_max: Option<String>,
    /// LATCHD_LEEWAY: clock skew allowed on exp/nbf/iat, seconds.
    #[arg(long, global = true, value_name = "SECS")]
    leeway: Option<String>,
    /// LATCHD_REFRESH_GRACE: retry grace of a just-rotated refresh token, seconds.
    #[arg(long, global = true, value_name = "SECS")]
    refresh_grace: Option<String>,
    /// LATCHD_PASSWORD_MIN: minimum password length, characters.
    #[arg(long, global = true, value_name = "CHARS")]
    password_min: Option<String>,
    /// LATCHD_PBKDF2_ITERATIONS: PBKDF2 work factor for new hashes.
    #[arg(long, global = true, value_name = "N")]
    pbkdf2_iterations: Option<String>,
    /// LATCHD_LOG: tracing filter.
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
    /// LATCHD_LOG_FORMAT: `json` or `text`.
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<String>,
    /// LATCHD_COOKIE_SECURE: `false` for plain-http development only.
    #[arg(long, global = true, value_name = "BOOL")]
    cookie_secure: Option<String>,
    /// LATCHD_OPEN_REGISTRATION: `false` makes registration admin-only.
    #[arg(long, global = true, value_name = "BOOL")]
    open_registration: Option<String>,
    /// LATCHD_TRUSTED_PROXIES: proxies whose X-Forwarded-For is believed.
    #[arg(long, global = true, value_name = "IPS")]
    trusted_proxies: Option<String>,
    /// LATCHD_METRICS_ALLOW: clients besides loopback that may read /metrics.
    #[arg(long, global = true, value_name = "IPS")]
    metrics_allow: Option<String>,
    /// LATCHD_MAX_CONNECTIONS: concurrent connections served.
    #[arg(long, global = true, value_name = "N")]
    max_connections: Option<String>,
    /// LATCHD_MAX_CONNECTIONS_PER_ADDRESS: concurrent connections of one client address.
    #[arg(long, global = true, value_name = "N")]
    max_connections_per_address: Option<String>,
    /// LATCHD_HEADER_TIMEOUT: seconds a connection may go without a request.
    #[arg(long, global = true, value_name = "SECS")]
    header_timeout: Option<String>,
    /// LATCHD_BODY_TIMEOUT: seconds a request body may take to arrive.
    #[arg(long, global = true, value_name = "SECS")]
    body_timeout: Option<String>,
    /// LATCHD_HASH_ADDRESS_PER_MIN: password hashes one address may cause per minute.
    #[arg(long, global = true, value_name = "N")]
    hash_address_per_min: Option<String>,
    /// LATCHD_MAX_SESSIONS_PER_USER: live sessions one user may have.
    #[arg(long, global = true, value_name = "N")]
    max_sessions_per_user: Option<String>,
    /// LATCHD_HASH_CONCURRENCY: password hashes computed at once.
    #[arg(long, global = true, value_name = "N")]
    hash_concurrency: Option<String>,
    /// LATCHD_HASH_PRIORITY: hashing threads' priority: idle, normal or a niceness 1-19.
    #[arg(long, global = true, value_name = "PRIORITY")]
    hash_priority: Option<String>,
    /// LATCHD_LOGIN_ACCOUNT_FAILURES: failed logins of one account before delays start.
    #[arg(long, global = true, value_name = "N")]
    login_account_failures: Option<String>,
    /// LATCHD_LOGIN_ADDRESS_PER_MIN: failed logins per minute from one address.
    #[arg(long, global = true, value_name = "N")]
    login_address_per_min: Option<String>,
}

impl Flags {
    /// The flags that were given, as (variable, value) pairs for `Config::from_env_and_flags`.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("LATCHD_LISTEN", &self.listen),
            ("LATCHD_DB", &self.db),
            ("LATCHD_ISSUER", &self.issuer),
            ("LATCHD_AUDIENCE", &self.audience),
            ("LATCHD_CLIENT_ID", &self.client_id),
            ("LATCHD_ACCESS_TTL", &self.access_ttl),
            ("LATCHD_REFRESH_TTL", &self.refresh_ttl),
            ("LATCHD_SESSION_MAX", &self.session_max),
            ("LATCHD_LEEWAY", &self.leeway),
            ("LATCHD_REFRESH_GRACE", &self.refresh_grace),
            ("LATCHD_PASSWORD_MIN", &self.password_min),
            ("LATCHD_PBKDF2_ITERATIONS", &self.pbkdf2_iterations),
            ("LATCHD_LOG", &self.log),
            ("LATCHD_LOG_FORMAT", &self.log_format),
            ("LATCHD_COOKIE_SECURE", &self.cookie_secure),
            ("LATCHD_OPEN_REGISTRATION", &self.open_registration),
            ("LATCHD_TRUSTED_PROXIES", &self.trusted_proxies),
            ("LATCHD_METRICS_ALLOW", &self.metrics_allow),
            ("LATCHD_MAX_CONNECTIONS", &self.max_connections),
            (
                "LATCHD_MAX_CONNECTIONS_PER_ADDRESS",
                &self.max_connections_per_address,
            ),
            ("LATCHD_HEADER_TIMEOUT", &self.header_timeout),
            ("LATCHD_BODY_TIMEOUT", &self.body_timeout),
            ("LATCHD_HASH_ADDRESS_PER_MIN", &self.hash_address_per_min),
            ("LATCHD_MAX_SESSIONS_PER_USER", &self.max_sessions_per_user),
            ("LATCHD_HASH_CONCURRENCY", &self.hash_concurrency),
            ("LATCHD_HASH_PRIORITY", &self.hash_priority),
            (
                "LATCHD_LOGIN_ACCOUNT_FAILURES",
                &self.login_account_failures,
            ),
            ("LATCHD_LOGIN_ADDRESS_PER_MIN", &self.login_address_per_min),
        ]
        .into_iter()
        .filter_map(|(var, value)| value.clone().map(|v| (var, v)))
        .collect()
    }
}

/// Runs a `latchd user` command; returns the process exit code.
pub fn user(config: &Config, command: UserCommand) -> ExitCode {
    let mut out = io::stdout().lock();
    finish(match command {
        UserCommand::Add { email, roles } => {
            user_add(config, &email, &roles, &mut io::stdin().lock(), &mut out)
        }
        UserCommand::List => user_list(config, &mut out),
        UserCommand::Disable { user } => set_disabled(config, &user, true, &mut out),
        UserCommand::Enable { user } => set_disabled(config, &user, false, &mut out),
        UserCommand::Delete { user } => user_delete(config, &user, &mut out),
    })
}

/// Runs a `latchd key` command; returns the process exit code.
pub fn key(config: &Config, command: KeyCommand) -> ExitCode {
    match command {
        KeyCommand::Rotate => finish(key_rotate(config, &mut io::stdout().lock())),
    }
}

/// Runs `latchd gc`: one sweep with the server's retention; returns the process exit code.
pub fn gc(config: &Config) -> ExitCode {
    finish(sweep(config, &mut io::stdout().lock()))
}

/// Why a command failed, as the one line it prints.
#[derive(Debug)]
pub enum CliError {
    /// A running server (or another latchd) holds the database file.
    Locked(PathBuf),
    /// The database file does not exist, and this command does not create one.
    NoDatabase(PathBuf),
    /// The database file could not be opened.
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: StoreError,
    },
    /// A role name breaks the role rule.
    BadRole(String),
    /// No password line arrived on stdin.
    NoPassword,
    /// No user has this id or email.
    NoSuchUser(String),
    /// `key rotate` while `LATCHD_SIGNING_KEY` is set: the stored key would never sign.
    KeyConfigured,
    /// Reading stdin or writing stdout failed.
    Io(io::Error),
    /// A use case refused (weak password, taken email, …) or failed.
    Auth(AuthError),
    /// The storage layer failed.
    Store(StoreError),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Locked(path) => write!(
                f,
                "{} is in use by a running latchd server; stop it first \
                 (or use the HTTP admin API)",
                path.display()
            ),
            Self::NoDatabase(path) => write!(
                f,
                "{} does not exist (set LATCHD_DB to the server's database file)",
                path.display()
            ),
            Self::Open { path, source } => write!(f, "cannot open {}: {source}", path.display()),
            Self::BadRole(role) => write!(
                f,
                "invalid role {role:?}: use 1-{MAX_ROLE_CHARS} characters of [a-z0-9_.:-]"
            ),
            Self::NoPassword => f.write_str("no password on stdin (expected one line)"),
            Self::NoSuchUser(who) => write!(f, "no user with id or email {who:?}"),
            Self::KeyConfigured => f.write_str(
                "LATCHD_SIGNING_KEY is set: the configured key signs, and stored keys are \
                 retired at every start, so a rotated key would never sign; rotate by changing \
                 LATCHD_SIGNING_KEY, or unset it first",
            ),
            Self::Io(e) => write!(f, "i/o: {e}"),
            Self::Auth(AuthError::WeakPassword(why)) => write!(f, "password refused: {why}"),
            Self::Auth(e) => write!(f, "{e}"),
            Self::Store(e) => write!(f, "storage: {e}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<AuthError> for CliError {
    fn from(e: AuthError) -> Self {
        Self::Auth(e)
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Whether `role` is 1-`MAX_ROLE_CHARS` characters of `[a-z0-9_.:-]`: safe in a token's roles
/// claim, in the comma-separated `X-Auth-Roles` header and in `user list` output.
pub fn is_valid_role(role: &str) -> bool {
    (1..=MAX_ROLE_CHARS).contains(&role.len())
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b))
}

/// Reads the password: the first line of `input`, without its line ending (`\n` or `\r\n`).
/// Nothing else is trimmed, since spaces may be part of a passphrase.
pub fn read_password(input: &mut impl BufRead) -> Result<String, CliError> {
    let mut line = String::new();
    // The policy allows 1024 bytes; the bound keeps a runaway pipe from filling memory.
    input
        .take(MAX_PASSWORD_LINE_BYTES)
        .read_line(&mut line)
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => {
                CliError::Io(io::Error::new(e.kind(), "password is not UTF-8"))
            }
            _ => CliError::Io(e),
        })?;
    let password = line
        .strip_suffix('\n')
        .map_or(line.as_str(), |l| l.strip_suffix('\r').unwrap_or(l));
    if password.is_empty() {
        return Err(CliError::NoPassword);
    }
    Ok(password.to_owned())
}

fn user_add(
    config: &Config,
    email: &str,
    roles: &[String],
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> Result<(), CliError> {
    if let Some(bad) = roles.iter().find(|r| !is_valid_role(r)) {
        return Err(CliError::BadRole(bad.clone()));
    }
    // Open first, so a locked file is reported before anyone types a password.
    let store = open(&config.db)?;
    if io::stdin().is_terminal() {
        eprint!("password for {email} (echoed; one line): ");
    }
    let password = read_password(input)?;
    let mut roles = roles.to_vec();
    roles.sort_unstable();
    roles.dedup();
    // Through Authority, so the email check, password policy and hashing are the API's own.
    // On a file with no key yet this also generates and stores one, as `serve` would.
    let (authority, _) = Authority::new(config, store)?;
    let created = authority.create_user(email, &password, &roles, UnixTime::now())?;
    writeln!(out, "{}", created.id)?;
    Ok(())
}

fn user_list(config: &Config, out: &mut impl Write) -> Result<(), CliError> {
    let store = open_existing(&config.db)?;
    let mut after = None;
    loop {
        let page = store.list_users(LIST_PAGE, after)?;
        for user in &page {
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}",
                user.id,
                user.email,
                user.roles.join(","),
                user.created_at.to_rfc3339(),
                if user.disabled { "disabled" } else { "enabled" }
            )?;
        }
        match page.last() {
            Some(last) if page.len() == LIST_PAGE => after = Some(last.id),
            _ => return Ok(()),
        }
    }
}

fn set_disabled(
    config: &Config,
    who: &str,
    disabled: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let store = open_existing(&config.db)?;
    let user = find_user(&store, who)?;
    checked(store.disable_user(user.id, disabled)?, who)?;
    if disabled {
        // The flag alone already refuses the user's tokens; revoking too means re-enabling
        // later does not bring the old sessions back.
        store.revoke_all_for_user(user.id, UnixTime::now())?;
        writeln!(
            out,
            "disabled {} ({}); its sessions are revoked",
            user.id, user.email
        )?;
    } else {
        writeln!(out, "enabled {} ({})", user.id, user.email)?;
    }
    Ok(())
}

fn user_delete(config: &Config, who: &str, out: &mut impl Write) -> Result<(), CliError> {
    let store = open_existing(&config.db)?;
    let user = find_user(&store, who)?;
    checked(store.delete_user(user.id)?, who)?;
    writeln!(out, "deleted {} ({})", user.id, user.email)?;
    Ok(())
}

fn key_rotate(config: &Config, out: &mut impl Write) -> Result<(), CliError> {
    if config.signing_key.is_some() {
        return Err(CliError::KeyConfigured);
    }
    let store = open_existing(&config.db)?;
    let now = UnixTime::now();
    let retiring = store
        .signing_keys()?
        .iter()
        .filter(|k| k.retired_at.is_none())
        .count();
    // The server signs with the newest key not retired and verifies with every stored key,
    // so retiring the others at `now` keeps their tokens valid until one access TTL later.
    let secret = auth::add_new_signing_key(&store, &SystemRandom::new(), now)?;
    writeln!(out, "{}", secret.kid())?;
    eprintln!(
        "latchd: retired {retiring} older key(s); they verify until {} (one access TTL), \
         then the sweeper deletes them",
        now.plus(config.access_ttl_secs).to_rfc3339()
    );
    Ok(())
}

fn sweep(config: &Config, out: &mut impl Write) -> Result<(), CliError> {
    let store = open_existing(&config.db)?;
    // The server's retention: a family or key goes only once no access token naming it can
    // still verify.
    let swept = store.sweep_expired(UnixTime::now(), config.access_ttl_secs)?;
    writeln!(
        out,
        "swept blacklist={} families={} keys={}",
        swept.blacklist, swept.families, swept.keys
    )?;
    Ok(())
}

/// An operator change's outcome as a command result.
fn checked(update: UserUpdate, who: &str) -> Result<(), CliError> {
    match update {
        UserUpdate::Done => Ok(()),
        UserUpdate::NoSuchUser => Err(CliError::NoSuchUser(who.to_owned())),
        UserUpdate::LastAdmin => Err(CliError::Auth(AuthError::LastAdmin)),
    }
}

/// Prints `err` as one line and picks the exit code.
fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Opens (or creates) the database, naming a lock by the running server as such.
fn open(path: &Path) -> Result<Store, CliError> {
    Store::open(path).map_err(|e| match e {
        StoreError::Locked => CliError::Locked(path.to_owned()),
        source => CliError::Open {
            path: path.to_owned(),
            source,
        },
    })
}

/// Opens the database, refusing to create one: a mistyped `LATCHD_DB` would otherwise list
/// no users, or rotate keys in a file no server reads.
fn open_existing(path: &Path) -> Result<Store, CliError> {
    if !path.exists() {
        return Err(CliError::NoDatabase(path.to_owned()));
    }
    open(path)
}

/// The user named by a UUID or, failing that, by an email.
fn find_user(store: &Store, who: &str) -> Result<User, CliError> {
    let by_id = match Uuid::try_parse(who.trim()) {
        Ok(id) => store.user(UserId(id))?,
        Err(_) => None,
    };
    match by_id {
        Some(user) => Ok(user),
        None => store
            .user_by_email(who)?
            .ok_or_else(|| CliError::NoSuchUser(who.to_owned())),
    }
}

/// Longest role name, in characters (all ASCII).
const MAX_ROLE_CHARS: usize = 64;
/// Users read per `list_users` call.
const LIST_PAGE: usize = 100;
/// Most bytes read from stdin for the password line.
const MAX_PASSWORD_LINE_BYTES: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_one_to_64_chars_of_the_allowed_set() {
        for ok in [
            "admin",
            "a",
            "billing:read",
            "ops.team-1_x",
            &"a".repeat(64),
        ] {
            assert!(is_valid_role(ok), "{ok}");
        }
        for bad in ["", "Admin", "a b", "a,b", "é", "a/b", &"a".repeat(65)] {
            assert!(!is_valid_role(bad), "{bad}");
        }
    }

    #[test]
    fn password_is_the_first_line_without_its_line_ending() {
        let read = |s: &str| read_password(&mut s.as_bytes());
        assert_eq!(read("pass word \n").unwrap(), "pass word ");
        assert_eq!(read("secret\r\nnext\n").unwrap(), "secret");
        assert_eq!(read("no newline").unwrap(), "no newline");
        assert!(matches!(read(""), Err(CliError::NoPassword)));
        assert!(matches!(read("\n"), Err(CliError::NoPassword)));
    }
}
