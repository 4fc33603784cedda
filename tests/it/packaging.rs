//! `packaging/`: the systemd unit passes `systemd-analyze verify`, keeps the sandbox README
//! describes (and the exposure score README quotes), and its sysusers entry creates the user
//! it runs as. Without systemd's tools these tests skip, with a note; with `CI` set they fail
//! (`.ci/run` installs Debian's `systemd` package).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support;

/// Where the unit expects the binary; the tests point it at the one cargo built instead,
/// because `verify` refuses an `ExecStart=` that is not executable.
const INSTALLED_BINARY: &str = "/usr/local/bin/latchd";

fn packaging(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(file)
}

/// The unit as shipped, with `ExecStart=` on the built binary, in a temp dir (kept alive by
/// the returned handle) under its own name.
fn unit_with_built_binary() -> (tempfile::TempDir, PathBuf) {
    let text = fs::read_to_string(packaging("latchd.service")).expect("read the unit");
    assert!(
        text.contains(&format!("ExecStart={INSTALLED_BINARY} serve\n")),
        "the unit must start {INSTALLED_BINARY} serve, as README says"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = dir.path().join("latchd.service");
    let built = text.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_latchd"));
    fs::write(&unit, built).expect("write the unit");
    (dir, unit)
}

fn systemd_analyze(args: &[&str], unit: &Path) -> Output {
    Command::new(support::tool_path("systemd-analyze").expect("found above"))
        .args(args)
        .arg(unit)
        .output()
        .expect("run systemd-analyze")
}

#[test]
fn the_unit_verifies_without_a_warning() {
    if !support::require("systemd-analyze", "systemd") {
        return;
    }
    let (_dir, unit) = unit_with_built_binary();
    let out = systemd_analyze(&["verify"], &unit);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // An unknown key or a value systemd cannot parse is only a warning, exit status 0: any
    // line about the unit counts as a failure.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("latchd"))
        .collect();
    assert!(
        about_unit.is_empty(),
        "warnings:\n{}",
        about_unit.join("\n")
    );
}

#[test]
fn the_unit_keeps_its_sandbox_and_readme_quotes_its_exposure() {
    if !support::require("systemd-analyze", "systemd") {
        return;
    }
    let text = fs::read_to_string(packaging("latchd.service")).expect("read the unit");
    for directive in [
        "User=latchd",
        "StateDirectory=latchd",
        "Environment=LATCHD_DB=%S/latchd/latchd.redb",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(text.contains(directive), "the unit lost {directive:?}");
    }
    let (_dir, unit) = unit_with_built_binary();
    let out = systemd_analyze(&["security", "--offline=yes", "--no-pager"], &unit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let score = stdout
        .lines()
        .find_map(|line| line.split_once("Overall exposure level for latchd.service: "))
        .and_then(|(_, rest)| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no exposure level in:\n{stdout}"));
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README");
    let quoted = format!("exposure level of {score} ");
    assert!(
        readme.contains(&quoted),
        "README must quote systemd-analyze security's figure: {quoted:?}"
    );
}

#[test]
fn the_sysusers_entry_creates_the_units_user_with_the_state_directory_as_home() {
    if !support::require("systemd-sysusers", "systemd") {
        return;
    }
    let root = tempfile::tempdir().expect("temp dir");
    let conf = root.path().join("etc/sysusers.d");
    fs::create_dir_all(&conf).expect("mkdir");
    fs::copy(packaging("latchd.sysusers"), conf.join("latchd.conf")).expect("copy");
    let out = Command::new(support::tool_path("systemd-sysusers").expect("found above"))
        .arg(format!("--root={}", root.path().display()))
        .output()
        .expect("run systemd-sysusers");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passwd = fs::read_to_string(root.path().join("etc/passwd")).expect("passwd written");
    let entry = passwd
        .lines()
        .find(|line| line.starts_with("latchd:"))
        .unwrap_or_else(|| panic!("no latchd user in\n{passwd}"));
    let fields: Vec<&str> = entry.split(':').collect();
    assert_eq!(fields[5], "/var/lib/latchd", "home: {entry}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "no login shell: {entry}");
    let group = fs::read_to_string(root.path().join("etc/group")).expect("group written");
    assert!(
        group.lines().any(|line| line.starts_with("latchd:")),
        "{group}"
    );
}
