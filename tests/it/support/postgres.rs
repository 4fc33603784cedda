//! A throw-away PostgreSQL for the tests of the `postgres` feature: a cluster of its own in a temp
//! directory, on a free loopback port, with trust authentication for the superuser `postgres`.
//!
//! [`cluster`] starts one cluster for the whole test binary on first use; every test takes a
//! database of its own from it ([`Cluster::fresh_database`]), so tests run in parallel on it.
//! Tests that stop PostgreSQL take a [`Cluster::private`] one instead, which stops and starts
//! on the same port and data directory and goes away when dropped.
//!
//! The binaries are Debian's (`pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/*/bin`, else `initdb` and `postgres` on PATH; `LATCHD_TEST_PG_BINDIR`
//! names the directory instead, and hides the others). Without them [`cluster`] and
//! [`Cluster::private`] return `None` after one line on stderr, and fail the test when `CI` is
//! set (`.ci/run` installs Debian's `postgresql`): the rule of [`super::require`]. `initdb` and
//! `postgres` refuse to run as root, so as root (CI containers) they run as the `postgres`
//! system user, which Debian's package creates, through `setpriv`.
//!
//! No cluster outlives the test process, although a test binary never drops its statics: the
//! postmaster is the child of a watchdog shell (see [`WATCHDOG`]), in a process group of its
//! own (a Ctrl-C reaches the tests, not it), which reads commands from a pipe this process
//! holds open. When the pipe closes (the [`Cluster`] is dropped, or this process ends in any
//! way, a SIGKILL included) the watchdog shuts PostgreSQL down immediately, waits for it and
//! removes the directory.

use std::fs;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// The superuser `initdb -U` creates, the only role the tests use.
pub const SUPERUSER: &str = "postgres";

/// The test-only override of where `initdb` and `postgres` are; when set, nothing else is tried.
const BINDIR_VAR: &str = "LATCHD_TEST_PG_BINDIR";
/// The system user PostgreSQL runs as when the tests run as root (Debian's package creates it).
const SYSTEM_USER: &str = "postgres";
/// How long `initdb` may take (about a second here).
const INITDB_DEADLINE: Duration = Duration::from_secs(60);
/// How long a started postmaster gets to accept a query.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a stop may take; the watchdog sends SIGKILL after 10 s (see [`WATCHDOG`]).
const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// How many free ports the first start tries, should another process take one first.
const PORT_ATTEMPTS: usize = 5;
/// How long a connection attempt of the readiness loop and the admin queries may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `pg_terminate_backend` waits for each backend to be gone, in milliseconds.
const TERMINATE_WAIT_MS: i64 = 5_000;
const POLL: Duration = Duration::from_millis(50);

/// The watchdog: `sh -c WATCHDOG sh DIR POSTGRES...` where `POSTGRES...` is the postgres
/// command line but its port. It reads one command a line from stdin and answers on stdout:
///
/// - `start PORT`: starts `POSTGRES... -p PORT` in the background (log in DIR/postgres.log),
///   answers `started PID`;
/// - `stop SIGNAL`: sends SIGNAL to the postmaster (INT: fast shutdown, QUIT: immediate), waits
///   for it to exit (SIGKILL after 10 s), answers `stopped`.
///
/// At end of input it stops PostgreSQL with QUIT and removes DIR. postgres runs directly under
/// it (`setpriv` execs), so `$!` is the postmaster and `wait` reaps it.
const WATCHDOG: &str = r#"
dir=$1; shift
pg=
halt() {
    [ -n "$pg" ] || return 0
    kill "-$1" "$pg" 2>/dev/null
    (
        trap 'kill "$s" 2>/dev/null; wait "$s"; exit 0' TERM
        sleep 10 & s=$!
        wait "$s"
        kill -KILL "$pg" 2>/dev/null
    ) </dev/null >/dev/null 2>&1 &
    timer=$!
    wait "$pg"
    kill "$timer" 2>/dev/null
    pg=
}
while read -r cmd arg; do
    case $cmd in
        start) "$@" -p "$arg" </dev/null >>"$dir/postgres.log" 2>&1 & pg=$!; echo "started $pg" ;;
        stop) halt "$arg"; echo stopped ;;
    esac
done
halt QUIT
rm -rf "$dir"
"#;

/// The cluster of this test binary, started on first use and shared by every test: take a
/// database of your own with [`Cluster::fresh_database`], and do not stop it (stop and start a
/// [`Cluster::private`] one). `None` after a line on stderr when PostgreSQL is not installed;
/// a panic instead when `CI` is set, or when PostgreSQL is there but does not start.
pub fn cluster() -> Option<&'static Cluster> {
    static SHARED: OnceLock<Result<Cluster, Unavailable>> = OnceLock::new();
    match SHARED.get_or_init(|| Cluster::launch(true)) {
        Ok(cluster) => Some(cluster),
        Err(Unavailable::Missing(why)) => skip(why),
        Err(Unavailable::Broken(why)) => panic!("the test PostgreSQL did not start: {why}"),
    }
}

/// A running test cluster: the shared one of [`cluster`], or a [`Cluster::private`] one.
pub struct Cluster {
    port: u16,
    dir: PathBuf,
    shared: bool,
    databases: AtomicU32,
    control: Mutex<Control>,
}

impl Cluster {
    /// A cluster of the caller's own, for tests that stop, crash or restart PostgreSQL: the
    /// same setup as the shared one (a second `initdb`, about a second). Dropping it shuts it
    /// down and removes its directory. `None` (or a panic) as for [`cluster`].
    pub fn private() -> Option<Self> {
        match Self::launch(false) {
            Ok(cluster) => Some(cluster),
            Err(Unavailable::Missing(why)) => skip(&why),
            Err(Unavailable::Broken(why)) => panic!("the test PostgreSQL did not start: {why}"),
        }
    }

    /// Creates a new, empty database with a name no other call on this cluster gets and
    /// returns its URL, `postgres://postgres@127.0.0.1:PORT/NAME`.
    pub fn fresh_database(&self) -> String {
        let name = format!(
            "latchd_{}",
            self.databases.fetch_add(1, Ordering::Relaxed) + 1
        );
        let admin = self.url("postgres");
        let statement = format!("CREATE DATABASE {name}");
        block_on(async {
            let client = connect(&admin).await;
            client.batch_execute(&statement).await
        })
        .unwrap_or_else(|e| panic!("{statement}: {e}; postgres log:\n{}", self.log()));
        self.url(&name)
    }

    /// The URL of database `name` on this cluster as the superuser.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// The loopback port, the same for the cluster's whole life.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory: `data/` (the data directory, also holding the Unix socket) and
    /// `postgres.log`. Removed when the cluster goes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What PostgreSQL logged so far, for assertion messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// Ends every client session connected to `database` (a name, or a URL from
    /// [`Cluster::fresh_database`]), waiting until each is gone (up to 5 s, with
    /// `pg_terminate_backend(pid, timeout)` of PostgreSQL 14 and later); returns how many were
    /// ended. Autovacuum workers are left alone. The clients see their connection closed, as
    /// after a server-side failure.
    pub fn terminate_backends(&self, database: &str) -> u64 {
        let name = database.rsplit('/').next().unwrap_or(database).to_owned();
        let admin = self.url("postgres");
        let ended: i64 = block_on(async {
            let client = connect(&admin).await;
            client
                .query_one(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, $2)) \
                     FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() \
                     AND backend_type = 'client backend'",
                    &[&name, &TERMINATE_WAIT_MS],
                )
                .await
                .map(|row| row.get(0))
        })
        .unwrap_or_else(|e| panic!("terminating the sessions of {name}: {e}"));
        u64::try_from(ended).expect("a count")
    }

    /// Shuts PostgreSQL down (fast shutdown: sessions are ended, a checkpoint is written) and
    /// returns when the postmaster is gone; [`Cluster::start`] brings it back on the same port
    /// with the same data. Panics on the shared cluster: other tests are using it.
    pub fn stop(&self) {
        self.halt("INT");
    }

    /// Kills PostgreSQL as a crash would (immediate shutdown: no checkpoint; the next
    /// [`Cluster::start`] runs crash recovery, which keeps every committed transaction) and
    /// returns when the postmaster is gone. Panics on the shared cluster.
    pub fn crash(&self) {
        self.halt("QUIT");
    }

    /// Starts a stopped (or crashed) cluster again on its port and data directory, and returns
    /// once it answers queries.
    pub fn start(&self) {
        let mut control = self.lock();
        assert!(control.postgres.is_none(), "the cluster is already running");
        if let Err(why) = control.start(self.port) {
            panic!("restarting PostgreSQL on port {}: {why}", self.port);
        }
    }

    fn halt(&self, signal: &str) {
        assert!(
            !self.shared,
            "the shared cluster must keep running for the other tests: use Cluster::private()"
        );
        let mut control = self.lock();
        assert!(control.postgres.is_some(), "the cluster is not running");
        control.halt(signal);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn launch(shared: bool) -> Result<Self, Unavailable> {
        let binaries = Binaries::find().map_err(Unavailable::Missing)?;
        let owner = Owner::find().map_err(Unavailable::Missing)?;
        let dir = tempfile::Builder::new()
            .prefix("latchd-pg-")
            .tempdir()
            .map_err(|e| Unavailable::Broken(format!("a temp dir: {e}")))?
            .keep();
        // From here on the watchdog, or this function on an early error, removes `dir`.
        let mut control = match Control::prepare(&binaries, owner.as_ref(), &dir) {
            Ok(control) => control,
            Err(why) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(Unavailable::Broken(why));
            }
        };
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port().map_err(Unavailable::Broken)?;
            match control.start(port) {
                Ok(()) => {
                    return Ok(Self {
                        port,
                        dir,
                        shared,
                        databases: AtomicU32::new(0),
                        control: Mutex::new(control),
                    })
                }
                // Another process took the port between free_port and postgres's bind.
                Err(why) if why.contains("Address already in use") => last = why,
                Err(why) => return Err(Unavailable::Broken(why)),
            }
        }
        Err(Unavailable::Broken(format!(
            "no free port in {PORT_ATTEMPTS} attempts: {last}"
        )))
    }
}

/// Why there is no cluster.
enum Unavailable {
    /// PostgreSQL is not installed (or cannot be run as this user): the skip rule applies.
    Missing(String),
    /// It is installed but did not start: always a failure.
    Broken(String),
}

/// The skip rule of [`super::require`]: a failure under `CI`, else one line on stderr.
fn skip<T>(why: &str) -> Option<T> {
    assert!(
        !super::ci(),
        "PostgreSQL not found and CI is set ({why}): .ci/run installs Debian's postgresql"
    );
    eprintln!(
        "skipping: PostgreSQL not found ({why}); install Debian's postgresql, or set \
         {BINDIR_VAR} to the directory of initdb and postgres"
    );
    None
}

/// The server binaries used.
struct Binaries {
    initdb: PathBuf,
    postgres: PathBuf,
}

impl Binaries {
    fn find() -> Result<Self, String> {
        if let Some(dir) = std::env::var_os(BINDIR_VAR) {
            let dir = PathBuf::from(dir);
            return Self::in_dir(&dir).ok_or_else(|| {
                format!("no initdb and postgres in {BINDIR_VAR}={}", dir.display())
            });
        }
        let from_pg_config = Command::new("pg_config")
            .arg("--bindir")
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        // Debian's pg_config comes with libpq-dev too, naming a bindir without a server in it.
        if let Some(found) = from_pg_config.as_deref().and_then(Self::in_dir) {
            return Ok(found);
        }
        if let Some(found) = newest_debian_bindir().as_deref().and_then(Self::in_dir) {
            return Ok(found);
        }
        match (super::tool_path("initdb"), super::tool_path("postgres")) {
            (Some(initdb), Some(postgres)) => Ok(Self { initdb, postgres }),
            _ => Err("no initdb and postgres in `pg_config --bindir`, \
                      /usr/lib/postgresql/*/bin or PATH"
                .to_owned()),
        }
    }

    fn in_dir(dir: &Path) -> Option<Self> {
        let (initdb, postgres) = (dir.join("initdb"), dir.join("postgres"));
        (initdb.is_file() && postgres.is_file()).then_some(Self { initdb, postgres })
    }
}

/// `/usr/lib/postgresql/N/bin` of the highest major version N installed.
fn newest_debian_bindir() -> Option<PathBuf> {
    fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
}

/// Who PostgreSQL runs as when this process is root: `setpriv` to the `postgres` system user.
/// `None` when it is not root: then as this process's user.
struct Owner {
    uid: u32,
    gid: u32,
    setpriv: PathBuf,
}

impl Owner {
    fn find() -> Result<Option<Self>, String> {
        if effective_uid() != Some(0) {
            return Ok(None);
        }
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id")
                .args([flag, SYSTEM_USER])
                .stderr(Stdio::null())
                .output()
                .ok()?;
            out.status.success().then_some(())?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        let (Some(uid), Some(gid)) = (id("-u"), id("-g")) else {
            return Err(format!(
                "running as root, which initdb refuses, and there is no `{SYSTEM_USER}` system \
                 user to run it as (Debian's postgresql package creates it)"
            ));
        };
        let setpriv = super::tool_path("setpriv")
            .ok_or("running as root and no setpriv (Debian's util-linux) to drop to postgres")?;
        Ok(Some(Self { uid, gid, setpriv }))
    }

    /// `program` run as this owner: `setpriv ... -- program`.
    fn command(owner: Option<&Self>, program: &Path) -> Command {
        match owner {
            None => Command::new(program),
            Some(owner) => {
                let mut cmd = Command::new(&owner.setpriv);
                cmd.arg(format!("--reuid={}", owner.uid))
                    .arg(format!("--regid={}", owner.gid))
                    .args(["--init-groups", "--"])
                    .arg(program);
                cmd
            }
        }
    }
}

/// The effective uid of this process (the second `Uid:` field of /proc/self/status).
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The watchdog of one cluster and what it last reported.
struct Control {
    /// The watchdog shell, leader of its own process group.
    watchdog: Child,
    /// Its stdin: commands; closing it ends the cluster (see [`WATCHDOG`]).
    commands: Option<ChildStdin>,
    /// Its answers, line by line.
    answers: Receiver<String>,
    /// The postmaster's pid while it runs.
    postgres: Option<u32>,
    dir: PathBuf,
}

impl Control {
    /// Runs initdb in `dir/data` and starts the watchdog, PostgreSQL not yet running.
    fn prepare(binaries: &Binaries, owner: Option<&Owner>, dir: &Path) -> Result<Self, String> {
        let data = dir.join("data");
        fs::create_dir(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
        if let Some(owner) = owner {
            for path in [dir, &data] {
                std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
                    .map_err(|e| format!("chown {}: {e}", path.display()))?;
            }
        }
        let mut initdb = Owner::command(owner, &binaries.initdb);
        // Trust for every local connection: the cluster listens on 127.0.0.1 and a socket in
        // its own 0700 data directory only.
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "-A", "trust", "--no-sync"])
            .args(["-E", "UTF8", "--locale=C"]);
        isolate(&mut initdb, dir);
        let out = run_bounded(initdb, INITDB_DEADLINE)?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }

        let mut sh = Command::new("/bin/sh");
        sh.args(["-c", WATCHDOG, "sh"]).arg(dir);
        let postgres = Owner::command(owner, &binaries.postgres);
        sh.arg(postgres.get_program()).args(postgres.get_args());
        sh.arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"])
            // Room for the connection pools of many parallel tests.
            .args(["-c", "max_connections=200"]);
        isolate(&mut sh, dir);
        sh.process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut watchdog = sh.spawn().map_err(|e| format!("spawning sh: {e}"))?;
        let commands = watchdog.stdin.take();
        let stdout = watchdog.stdout.take().ok_or("no stdout pipe")?;
        let (tx, answers) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            watchdog,
            commands,
            answers,
            postgres: None,
            dir: dir.to_owned(),
        })
    }

    /// Sends one command and waits for its answer.
    fn ask(&mut self, command: &str, deadline: Duration) -> Result<String, String> {
        let pipe = self.commands.as_mut().ok_or("the watchdog is gone")?;
        writeln!(pipe, "{command}")
            .and_then(|()| pipe.flush())
            .map_err(|e| format!("telling the watchdog `{command}`: {e}"))?;
        self.answers
            .recv_timeout(deadline)
            .map_err(|e| format!("no answer from the watchdog to `{command}`: {e}"))
    }

    /// Starts postgres on `port` and waits until it answers a query.
    fn start(&mut self, port: u16) -> Result<(), String> {
        let log = self.dir.join("postgres.log");
        let logged_before = fs::metadata(&log).map_or(0, |m| m.len());
        let answer = self.ask(&format!("start {port}"), START_DEADLINE)?;
        let pid: u32 = answer
            .strip_prefix("started ")
            .and_then(|pid| pid.parse().ok())
            .ok_or_else(|| format!("unexpected answer from the watchdog: {answer:?}"))?;
        self.postgres = Some(pid);
        let new_log = || {
            let all = fs::read(&log).unwrap_or_default();
            let start = usize::try_from(logged_before).unwrap_or(0).min(all.len());
            String::from_utf8_lossy(&all[start..]).into_owned()
        };
        let url = format!("postgres://{SUPERUSER}@127.0.0.1:{port}/postgres");
        let deadline = Instant::now() + START_DEADLINE;
        let ready = block_on(async {
            loop {
                if !alive(pid) {
                    return Err("postgres exited");
                }
                if query_once(&url).await.is_ok() {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err("postgres did not answer in time");
                }
                tokio::time::sleep(POLL).await;
            }
        });
        if let Err(why) = ready {
            // Reaps it, if it is still there.
            self.halt("QUIT");
            return Err(format!("{why} (port {port}); its log:\n{}", new_log()));
        }
        Ok(())
    }

    /// Stops postgres with `signal` (INT or QUIT) and waits until it is gone.
    fn halt(&mut self, signal: &str) {
        match self.ask(&format!("stop {signal}"), STOP_DEADLINE) {
            Ok(answer) if answer == "stopped" => self.postgres = None,
            Ok(answer) => panic!("unexpected answer from the watchdog: {answer:?}"),
            Err(why) => panic!("stopping PostgreSQL: {why}"),
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        // End of input: the watchdog stops postgres and removes the directory.
        drop(self.commands.take());
        let deadline = Instant::now() + STOP_DEADLINE;
        while Instant::now() < deadline {
            if !matches!(self.watchdog.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(POLL);
        }
        // It hangs: kill its whole process group, postgres included, and clean up here.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.watchdog.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.watchdog.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A clean environment for initdb and postgres: PATH, the C locale (English messages, which
/// [`Cluster::launch`] reads), HOME and the working directory in `dir`.
fn isolate(cmd: &mut Command, dir: &Path) {
    cmd.env_clear()
        .env("LC_ALL", "C")
        .env("HOME", dir)
        .current_dir(dir);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
}

/// Runs `cmd` to its end, killing it after `deadline`.
fn run_bounded(mut cmd: Command, deadline: Duration) -> Result<Output, String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning {program}: {e}"))?;
    let end = Instant::now() + deadline;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < end => thread::sleep(POLL),
            Ok(None) => {
                let _ = child.kill();
                let out = child.wait_with_output();
                return Err(format!(
                    "{program} still running after {deadline:?}: {}",
                    out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                        .unwrap_or_default()
                ));
            }
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    }
    child
        .wait_with_output()
        .map_err(|e| format!("output of {program}: {e}"))
}

/// A loopback port nothing listens on right now.
fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("a free port: {e}"))
}

/// Whether process `pid` runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses and may contain any.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| !matches!(state, "Z" | "X"))
    })
}

/// Connects to `url` and runs `SELECT 1`.
async fn query_once(url: &str) -> Result<(), tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await.map(drop)
}

/// A client of `url` (no TLS), its connection driven by a task on the current tokio runtime.
/// Panics when it cannot connect.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
    config.connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(async move {
        // Ends with an error when the server goes: the client's next call reports it.
        let _ = connection.await;
    });
    client
}

/// Runs `future` to its end on a current-thread runtime of its own, in a thread of its own, so
/// it may be called from anywhere, inside another runtime too (blocking that thread meanwhile).
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime")
                    .block_on(future)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
