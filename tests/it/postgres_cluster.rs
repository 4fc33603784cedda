//! The throw-away PostgreSQL of `support::postgres`, which the tests of the `postgres` feature
//! stand on: databases of their own on the shared cluster, sessions cut on demand, a private
//! cluster that stops, crashes and starts again on its port with its data, and no cluster left
//! behind by a test process that dies.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::postgres::{self, block_on, connect, Cluster};

/// Set in the child process of [`the_shared_cluster_goes_with_the_test_process`].
const CHILD_VAR: &str = "LATCHD_TEST_PG_WATCHDOG_CHILD";
/// What the child prints before `PORT DIR`.
const MARK: &str = "shared cluster at ";
/// How long a killed test process's cluster may take to disappear.
const GONE_DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn each_fresh_database_is_a_database_of_its_own() {
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    let first = cluster.fresh_database();
    let second = cluster.fresh_database();
    assert_ne!(first, second);
    let prefix = format!("postgres://postgres@127.0.0.1:{}/", cluster.port());
    for url in [&first, &second] {
        assert!(url.starts_with(&prefix), "{url}");
    }
    block_on(async {
        let a = connect(&first).await;
        let b = connect(&second).await;
        for (client, url) in [(&a, &first), (&b, &second)] {
            let name: String = client
                .query_one("SELECT current_database()", &[])
                .await
                .expect("current_database")
                .get(0);
            assert_eq!(Some(name.as_str()), url.rsplit('/').next());
        }
        a.batch_execute("CREATE TABLE marks (v int); INSERT INTO marks VALUES (7)")
            .await
            .expect("create and fill a table");
        let v: i32 = a
            .query_one("SELECT v FROM marks", &[])
            .await
            .expect("read it")
            .get(0);
        assert_eq!(v, 7);
        let absent: bool = b
            .query_one("SELECT to_regclass('marks') IS NULL", &[])
            .await
            .expect("look for it in the other database")
            .get(0);
        assert!(absent, "a table of one database is visible in the other");
    });
}

#[test]
fn terminate_backends_ends_the_sessions_of_one_database_only() {
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    let target = cluster.fresh_database();
    let bystander = cluster.fresh_database();
    block_on(async {
        let cut = [connect(&target).await, connect(&target).await];
        let kept = connect(&bystander).await;
        assert_eq!(cluster.terminate_backends(&target), 2);
        for client in &cut {
            assert!(
                client.simple_query("SELECT 1").await.is_err(),
                "a terminated session still answers"
            );
        }
        kept.simple_query("SELECT 1")
            .await
            .expect("the other database's session is untouched");
        connect(&target)
            .await
            .simple_query("SELECT 1")
            .await
            .expect("a new session after the cut");
    });
}

#[test]
fn the_shared_cluster_refuses_to_stop() {
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    for halt in [Cluster::stop, Cluster::crash] {
        let refused = panic::catch_unwind(AssertUnwindSafe(|| halt(cluster)));
        assert!(refused.is_err(), "the shared cluster was stopped");
    }
    let url = cluster.fresh_database();
    block_on(async { connect(&url).await.simple_query("SELECT 1").await })
        .expect("the shared cluster still answers");
}

#[test]
fn a_private_cluster_starts_again_on_its_port_with_its_data() {
    let Some(cluster) = Cluster::private() else {
        return;
    };
    let port = cluster.port();
    let url = cluster.fresh_database();
    let rows = |url: &str| {
        block_on(async {
            let rows = connect(url)
                .await
                .query("SELECT v FROM kept ORDER BY v", &[])
                .await
                .expect("read the table");
            rows.iter().map(|row| row.get(0)).collect::<Vec<String>>()
        })
    };
    block_on(async {
        let client = connect(&url).await;
        client
            .batch_execute(
                "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('1 before the stop')",
            )
            .await
            .expect("create and fill a table");
        cluster.stop();
        assert!(
            client.simple_query("SELECT 1").await.is_err(),
            "a session outlived the stop"
        );
    });
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "port {port} still open after stop"
    );

    cluster.start();
    assert_eq!(cluster.port(), port);
    // The same URL: the same port and database.
    assert_eq!(rows(&url), ["1 before the stop"], "log:\n{}", cluster.log());
    block_on(async {
        connect(&url)
            .await
            .batch_execute("INSERT INTO kept VALUES ('2 before the crash')")
            .await
    })
    .expect("insert");
    cluster.crash();
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "port {port} still open after the crash"
    );

    cluster.start();
    assert_eq!(
        rows(&url),
        ["1 before the stop", "2 before the crash"],
        "crash recovery lost a committed row; log:\n{}",
        cluster.log()
    );

    let dir = cluster.dir().to_owned();
    assert!(dir.join("data/PG_VERSION").is_file(), "{}", dir.display());
    drop(cluster);
    assert!(!dir.exists(), "{} outlived its cluster", dir.display());
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "port {port} still open after drop"
    );
}

/// A test binary never drops its statics: the watchdog must end the shared cluster when the
/// process goes, here by SIGKILL, where nothing of the process runs any more.
#[test]
fn the_shared_cluster_goes_with_the_test_process() {
    if std::env::var_os(CHILD_VAR).is_some() {
        // The child: start the shared cluster, say where it is, wait to be killed.
        let cluster = postgres::cluster().expect("the parent found PostgreSQL");
        println!("{MARK}{} {}", cluster.port(), cluster.dir().display());
        thread::sleep(Duration::from_secs(60));
        return;
    }
    if postgres::cluster().is_none() {
        return;
    }
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "postgres_cluster::the_shared_cluster_goes_with_the_test_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the test binary");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest's `test NAME ... ` comes first on the line.
            if let Some((_, found)) = line.split_once(MARK) {
                let _ = tx.send(found.to_owned());
            }
        }
    });
    let found = rx.recv_timeout(Duration::from_secs(60));
    let Ok(found) = found else {
        let _ = child.kill();
        let _ = child.wait();
        let mut stderr = String::new();
        let _ = child
            .stderr
            .take()
            .expect("piped stderr")
            .read_to_string(&mut stderr);
        panic!("the child printed no cluster; its stderr:\n{stderr}");
    };
    let (port, dir) = found.split_once(' ').expect("PORT DIR");
    let port: u16 = port.parse().expect("a port");
    let dir = PathBuf::from(dir);
    assert!(dir.join("data/PG_VERSION").is_file(), "{}", dir.display());
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("the child's cluster listens");

    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    let deadline = Instant::now() + GONE_DEADLINE;
    while dir.exists() || TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the cluster of a killed test process still exists after {GONE_DEADLINE:?}: {} \
             (exists: {}), port {port}",
            dir.display(),
            dir.exists()
        );
        thread::sleep(Duration::from_millis(50));
    }
}
