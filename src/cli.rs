//! The operator's commands: `user add|list|disable|enable|delete|set-roles|totp-reset`,
//! `key rotate`, `gc`, `backup`, `audit`.
//!
//! Each becomes one [`Request`] of the operator channel ([`crate::control`]): sent to the
//! server running on the database named by `LATCHD_DB` when one answers on its socket, else
//! carried out here on the file itself, with the same code ([`control::execute`]). Nothing here
//! touches storage or HTTP. Every failure is one line on stderr and exit code 1.

use std::fmt;
use std::io::{self, BufRead, IsTerminal as _, Read as _, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches, Subcommand};

use crate::auth::storage::StoreError;
use crate::auth::{AuthError, Authority};
use crate::config::{Config, VARS};
use crate::control::{self, ChannelError, Client, Reply, Request};
use crate::runtime::{open_configured, open_storage, OpenError};

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
    /// Replace a user's roles (none given: no roles). Its access tokens with the old roles stop
    /// working at once (token version bump); its sessions live on and refresh with the new
    /// roles. The last enabled admin cannot lose `admin`.
    SetRoles {
        /// The user's id or email.
        #[arg(value_name = "ID_OR_EMAIL")]
        user: String,
        /// A role the user is to hold; repeat for several. 1-64 characters of [a-z0-9_.:-].
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
    },
    /// Turn a user's two-step verification (TOTP) off, for a user who lost the device, and end
    /// all its sessions; the user signs in with the password alone and may enrol again.
    TotpReset {
        /// The user's id or email.
        #[arg(value_name = "ID_OR_EMAIL")]
        user: String,
    },
}

/// `latchd audit`: the filters of the audit rows to print.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only rows about this user: its id (also a deleted user's) or email.
    #[arg(long, value_name = "ID_OR_EMAIL")]
    pub user: Option<String>,
    /// Only rows of this event, e.g. `login_failed` (README "Audit log" lists them).
    #[arg(long, value_name = "EVENT")]
    pub event: Option<String>,
    /// Only rows at or after this time: RFC 3339 UTC (`2026-11-23T18:07:15Z`) or Unix seconds.
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<i64>,
}

/// Runs `latchd audit`: every matching audit row, oldest first, one JSON object a line (the
/// fields of `GET /v1/admin/audit`); returns the process exit code.
pub fn audit(config: &Config, args: AuditArgs) -> ExitCode {
    finish(dispatch(config, false, move || {
        Ok(Request::Audit {
            user: args.user,
            event: args.event,
            since: args.since,
        })
    }))
}

/// `--since`: an RFC 3339 UTC timestamp or whole Unix seconds.
fn parse_since(text: &str) -> Result<i64, String> {
    if let Some(t) = crate::time::UnixTime::from_rfc3339(text) {
        return Ok(t.secs());
    }
    text.parse::<i64>().map_err(|_| {
        "expected an RFC 3339 UTC time (2026-11-23T18:07:15Z) or Unix seconds".to_owned()
    })
}

/// `latchd key …`: manage the access-token signing keys.
#[derive(Clone, Copy, Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a new 256-bit signing key and print its kid; a running server signs with it at
    /// once. Older keys are retired now: they keep verifying until one access TTL has passed,
    /// then the sweeper deletes them.
    Rotate,
}

/// The flags of the same meaning as the `LATCHD_*` variables, one per entry of
/// [`config::VARS`](crate::config::VARS); a flag overrides its variable.
#[derive(Clone, Debug, Default)]
pub struct Flags(Vec<(&'static str, String)>);

impl Flags {
    /// The flags that were given, as (variable, value) pairs for `Config::from_env_and_flags`.
    pub fn pairs(&self) -> &[(&'static str, String)] {
        &self.0
    }
}

impl FromArgMatches for Flags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Self::default();
        flags.update_from_arg_matches(matches)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for var in VARS {
            let Some(flag) = var.flag else { continue };
            if let Some(value) = matches.get_one::<String>(flag) {
                self.0.retain(|(name, _)| *name != var.name);
                self.0.push((var.name, value.clone()));
            }
        }
        Ok(())
    }
}

impl Args for Flags {
    fn augment_args(cmd: Command) -> Command {
        VARS.iter().fold(cmd, |cmd, var| match var.flag {
            Some(flag) => cmd.arg(
                Arg::new(flag)
                    .long(flag)
                    .global(true)
                    .value_name("VALUE")
                    .help(format!(
                        "{}: {} (default: {})",
                        var.name,
                        var.help,
                        var.default.text()
                    )),
            ),
            None => cmd,
        })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

/// Runs a `latchd user` command; returns the process exit code.
pub fn user(config: &Config, command: UserCommand) -> ExitCode {
    if let UserCommand::Add { roles, .. } | UserCommand::SetRoles { roles, .. } = &command {
        // Refused before the file is opened (or created) and before a password is typed.
        if let Some(bad) = roles.iter().find(|r| !crate::auth::is_valid_role(r)) {
            return finish(Err(AuthError::InvalidRole(bad.clone()).into()));
        }
    }
    // The admin bootstrap (`user add`) runs before any server has created the file.
    let create = matches!(command, UserCommand::Add { .. });
    finish(dispatch(config, create, move || {
        Ok(match command {
            UserCommand::Add { email, roles } => {
                if io::stdin().is_terminal() {
                    eprint!("password for {email} (echoed; one line): ");
                }
                let password = read_password(&mut io::stdin().lock())?;
                Request::UserAdd {
                    email,
                    roles,
                    password,
                }
            }
            UserCommand::List => Request::UserList,
            UserCommand::Disable { user } => Request::UserDisable { user },
            UserCommand::Enable { user } => Request::UserEnable { user },
            UserCommand::Delete { user } => Request::UserDelete { user },
            UserCommand::SetRoles { user, roles } => Request::UserSetRoles { user, roles },
            UserCommand::TotpReset { user } => Request::UserTotpReset { user },
        })
    }))
}

/// Runs a `latchd key` command; returns the process exit code.
pub fn key(config: &Config, command: KeyCommand) -> ExitCode {
    match command {
        KeyCommand::Rotate => finish(dispatch(config, false, || Ok(Request::KeyRotate))),
    }
}

/// Runs `latchd gc`: one sweep with the server's retention; returns the process exit code.
pub fn gc(config: &Config) -> ExitCode {
    finish(dispatch(config, false, || Ok(Request::Gc)))
}

/// Runs `latchd backup PATH`: a consistent copy of the whole database at `path`, by the
/// running server when there is one; returns the process exit code.
pub fn backup(config: &Config, path: &Path) -> ExitCode {
    if config.database.is_some() {
        return finish(Err(CliError::Command(
            "the state is in PostgreSQL (LATCHD_DATABASE_URL): back it up with pg_dump, e.g. \
             `pg_dump --format=custom --file=latchd.dump \"$LATCHD_DATABASE_URL\"`"
                .to_owned(),
        )));
    }
    // Resolved here: the server runs in another directory.
    let path = match std::path::absolute(path) {
        Ok(path) => path,
        Err(e) => return finish(Err(CliError::Io(e))),
    };
    // A symlink there, even a dangling one, is a file too.
    if std::fs::symlink_metadata(&path).is_ok() {
        return finish(Err(CliError::BackupExists(path)));
    }
    finish(dispatch(config, false, move || {
        Ok(Request::Backup { path })
    }))
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
    /// The PostgreSQL database could not be used.
    Backend(OpenError),
    /// No password line arrived on stdin.
    NoPassword,
    /// The backup's destination exists; a backup never overwrites a file.
    BackupExists(PathBuf),
    /// The running server could not be reached or answered badly.
    Channel(ChannelError),
    /// The command ran and failed; its one line.
    Command(String),
    /// Reading stdin or writing stdout failed.
    Io(io::Error),
    /// The runtime the use cases run on could not start.
    Runtime(io::Error),
    /// A use case refused (weak password, taken email, unknown user, …) or failed.
    Auth(AuthError),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Locked(path) => write!(
                f,
                "{} is locked by a process that does not answer on {} (a latchd older than \
                 this CLI, or another program); stop it first",
                path.display(),
                control::socket_path(path).display()
            ),
            Self::Backend(e) => write!(f, "{e}"),
            Self::NoDatabase(path) => write!(
                f,
                "{} does not exist (set LATCHD_DB to the server's database file)",
                path.display()
            ),
            Self::Open { path, source } => write!(f, "cannot open {}: {source}", path.display()),
            Self::NoPassword => f.write_str("no password on stdin (expected one line)"),
            Self::BackupExists(path) => write!(
                f,
                "{} already exists; latchd backup never overwrites a file",
                path.display()
            ),
            Self::Channel(e) => write!(f, "{e}"),
            Self::Command(line) => f.write_str(line),
            Self::Io(e) => write!(f, "i/o: {e}"),
            Self::Runtime(e) => write!(f, "cannot start the runtime: {e}"),
            Self::Auth(AuthError::WeakPassword(why)) => write!(f, "password refused: {why}"),
            Self::Auth(e) => write!(f, "{e}"),
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

/// Carries out the request `make` builds: by the running server when one answers on the
/// database's socket, else on the file itself (creating it only if `create`). The file is
/// opened, or the server reached, before `make` runs, so a missing or locked file is
/// reported before anyone types a password.
fn dispatch(
    config: &Config,
    create: bool,
    make: impl FnOnce() -> Result<Request, CliError>,
) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    if config.database.is_some() {
        // PostgreSQL serves any number of processes: the CLI is one more node.
        let storage = runtime
            .block_on(open_configured(config, create))
            .map_err(CliError::Backend)?;
        let request = make()?;
        let reply = runtime.block_on(async {
            let (auth, _) = Authority::open(config.auth.clone(), storage, Vec::new()).await?;
            Ok::<_, CliError>(control::execute(&auth, request).await)
        })?;
        return print(reply);
    }
    let server = runtime.block_on(Client::connect(&config.db));
    if let Some(client) = server.map_err(CliError::Channel)? {
        let request = make()?;
        return print(client.send(&request).map_err(CliError::Channel)?);
    }
    let existed = config.db.exists();
    let storage = open_storage(&config.db, config.store, create).map_err(|e| match e {
        OpenError::Locked(path) => CliError::Locked(path),
        OpenError::Missing(path) => CliError::NoDatabase(path),
        OpenError::Failed(path, source) => CliError::Open { path, source },
        e @ OpenError::Database(_) => CliError::Backend(e),
    })?;
    let outcome = make().and_then(|request| {
        let reply = runtime.block_on(async {
            // On a file with no key yet this also generates and stores one, as `serve` would.
            let (auth, _) = Authority::open(config.auth.clone(), storage, Vec::new()).await?;
            Ok::<_, CliError>(control::execute(&auth, request).await)
        })?;
        print(reply)
    });
    if !existed {
        // The store is closed by now (the authority that held it is gone).
        if outcome.is_ok() {
            eprintln!("latchd: created a new database at {}", config.db.display());
        } else {
            // A failed bootstrap leaves nothing behind: no empty database in the wrong place.
            let _ = std::fs::remove_file(&config.db);
        }
    }
    outcome
}

/// Prints a command's reply: stdout, the notes on stderr, and its error as the failure.
fn print(reply: Reply) -> Result<(), CliError> {
    io::stdout().write_all(reply.stdout.as_bytes())?;
    for line in reply.stderr.lines() {
        eprintln!("latchd: {line}");
    }
    match reply.error {
        Some(error) => Err(CliError::Command(error)),
        None => Ok(()),
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
            assert!(crate::auth::is_valid_role(ok), "{ok}");
        }
        for bad in ["", "Admin", "a b", "a,b", "é", "a/b", &"a".repeat(65)] {
            assert!(!crate::auth::is_valid_role(bad), "{bad}");
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
