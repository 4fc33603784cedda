//! `openapi.json` against the real server: `GET /openapi.json` serves the committed file, and
//! schemathesis, with its default checks, finds no server error and no answer the description
//! does not allow on the routes served today (`schemathesis.toml` holds its configuration).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{self, add_user, TestServer, PASSWORD};

/// Where `.ci/run` puts the schemathesis CLI it installs; else `schemathesis` on PATH.
const SCHEMATHESIS_ENV: &str = "LATCHD_SCHEMATHESIS";
/// Test cases per operation and phase: enough to reach every answer of every route, small
/// enough for CI.
const MAX_EXAMPLES: &str = "25";
/// The run must end by then (it takes about 20 s on the 2-core VM, debug build).
const RUN_DEADLINE: Duration = Duration::from_secs(300);
/// The admin account schemathesis logs in as (`schemathesis.toml`).
const ADMIN: &str = "schemathesis-admin@example.com";

#[test]
fn openapi_json_is_the_committed_file() {
    let server = TestServer::start();
    let reply = server.get("/openapi.json", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let committed = fs::read_to_string(root().join("openapi.json")).expect("read openapi.json");
    assert!(
        reply.body == committed,
        "GET /openapi.json is not openapi.json"
    );
    let doc = reply.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/openapi.json"]["get"].is_object());
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_the_description_forbids() {
    let found = std::env::var_os(SCHEMATHESIS_ENV)
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| support::tool_path("schemathesis"));
    let Some(schemathesis) = support::require_found(
        "schemathesis",
        found,
        "pip install schemathesis, or point LATCHD_SCHEMATHESIS at its CLI",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    add_user(dir.path(), ADMIN, &["--role", "admin"]);
    // Fuzzing sends hundreds of logins and registrations from one address: limits high enough
    // that they reach the handlers rather than all being 429 (429 stays a described answer).
    let server = TestServer::start_in(
        dir,
        &[
            ("LATCHD_HASH_ADDRESS_PER_MIN", "1000000"),
            ("LATCHD_LOGIN_ADDRESS_PER_MIN", "1000000"),
            ("LATCHD_LOGIN_ACCOUNT_FAILURES", "1000"),
        ],
    );
    // schemathesis keeps its example database and reports in its working directory.
    let work = tempfile::tempdir().expect("temp dir");
    let out_path = work.path().join("schemathesis.out");
    let out = File::create(&out_path).expect("create output file");
    let started = Instant::now();
    let mut child = Command::new(&schemathesis)
        .current_dir(work.path())
        .arg("--config-file")
        .arg(root().join("schemathesis.toml"))
        .arg("--no-color")
        .arg("run")
        .arg(root().join("openapi.json"))
        .args(["--url", &format!("http://{}", server.addr())])
        .args(["--exclude-tag", "not-yet-served"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--workers", "1"])
        .env("LATCHD_SCHEMATHESIS_EMAIL", ADMIN)
        .env("LATCHD_SCHEMATHESIS_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone output file"))
        .stderr(out)
        .spawn()
        .expect("run schemathesis");
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if started.elapsed() > RUN_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let output = fs::read_to_string(&out_path).unwrap_or_default();
    let status = status
        .unwrap_or_else(|| panic!("schemathesis ran past {RUN_DEADLINE:?}; its output:\n{output}"));
    eprintln!(
        "schemathesis took {:.0?}; {}",
        started.elapsed(),
        summary(&output)
    );
    assert!(
        status.success(),
        "schemathesis failed ({status}):\n{output}"
    );
    // Its summary counts the test cases it generated: a run that tested nothing is no pass.
    let generated: u64 = output
        .lines()
        .find_map(|l| {
            let (count, rest) = l.trim().split_once(' ')?;
            rest.starts_with("generated").then(|| count.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no test-case count in the output:\n{output}"));
    assert!(generated > 500, "only {generated} test cases:\n{output}");
    drop(server);
}

/// The repository root, where `openapi.json` and `schemathesis.toml` live.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The summary lines of a run: operations tested and test cases generated.
fn summary(output: &str) -> String {
    output
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Tested:") || l.contains(" generated,"))
        .collect::<Vec<_>>()
        .join("; ")
}
