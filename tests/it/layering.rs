//! The layering as a test: reads `src/` and fails when a module imports a layer above it, or
//! when a crate that belongs to one folder (hyper, redb, clap, ...) appears outside it.
//!
//! The rule (ARCHITECTURE.md): calls go down the stack only,
//! `main | cli | serve -> runtime -> http -> auth -> {token, password, auth::storage} -> model, time`;
//! `store/` implements `auth::storage` and knows nothing else of auth; `metrics` subscribes to
//! `auth::event`; only `main`, `cli`, `serve` and `runtime` read `config`.

use std::fs;
use std::path::{Path, PathBuf};

/// For each top-level module of `src/`, the `crate::` modules it may name.
const MAY_USE: &[(&str, &[&str])] = &[
    ("time", &[]),
    ("model", &["time"]),
    ("telemetry", &[]),
    ("password", &[]),
    ("token", &["model", "time"]),
    ("auth", &["auth", "model", "password", "time", "token"]),
    ("store", &["auth::storage", "model", "time"]),
    ("metrics", &["auth::event", "model", "token"]),
    ("conformance", &["auth::storage", "model", "time"]),
    ("http", &["auth", "metrics", "model", "time"]),
    (
        "config",
        &["auth", "http", "model", "password", "store", "token"],
    ),
    (
        "runtime",
        &["auth", "config", "model", "password", "store", "time"],
    ),
    ("control", &["auth", "model", "time"]),
    (
        "serve",
        &["auth", "config", "control", "http", "metrics", "runtime"],
    ),
    (
        "cli",
        &["auth", "config", "control", "model", "runtime", "time"],
    ),
    ("fuzzing", &["http", "time", "token"]),
    ("lib", &[]),
    // The binary names the library as `latchd::`; read the same way.
    (
        "main",
        &[
            "auth",
            "cli",
            "config",
            "control",
            "http",
            "metrics",
            "runtime",
            "serve",
            "telemetry",
        ],
    ),
];

/// External crates that belong to one place, and the places (module or file) they may appear in.
const CONFINED: &[(&str, &[&str])] = &[
    ("hyper", &["http"]),
    ("hyper_util", &["http"]),
    ("http_body_util", &["http"]),
    ("redb", &["store"]),
    ("clap", &["cli", "main"]),
    ("tracing_subscriber", &["telemetry"]),
    ("thread_priority", &["auth/hashing.rs"]),
    ("qrcodegen", &["http/qr.rs"]),
    ("tokio_postgres", &["store/pg"]),
    ("tokio_postgres_rustls", &["store/pg"]),
    ("rustls", &["store/pg"]),
    ("rustls_native_certs", &["store/pg"]),
    // The outside signers of the token tests and the fuzz targets play a foreign issuer, so
    // they sign by themselves.
    (
        "ring::hmac",
        &["token/keyring.rs", "token/tests.rs", "fuzzing.rs"],
    ),
];

#[test]
fn no_module_imports_a_layer_above_it() {
    let mut violations = Vec::new();
    // A module's unit tests wire a real backend under it (auth's tests open a store), as
    // `main` does: they are not a layer.
    let layered = rust_files(&src())
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "tests.rs"));
    for file in layered {
        let module = module_of(&file);
        let Some((_, allowed)) = MAY_USE.iter().find(|(m, _)| *m == module) else {
            panic!("{}: module {module} is not in MAY_USE", file.display());
        };
        let code = code_of(&file);
        let code = if module == "main" {
            code.replace("latchd::", "crate::")
        } else {
            code
        };
        for (line_no, path) in crate_paths(&code) {
            let ok = path.starts_with(&format!("{module}::"))
                || path == module
                || allowed
                    .iter()
                    .any(|a| path == *a || path.starts_with(&format!("{a}::")));
            if !ok {
                violations.push(format!("{}:{line_no}: crate::{path}", rel(&file)));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports up the stack:\n{}",
        violations.join("\n")
    );
}

#[test]
fn confined_crates_stay_in_their_folder() {
    let mut violations = Vec::new();
    for file in rust_files(&src()) {
        let here = rel(&file);
        let module = module_of(&file);
        let code = code_of(&file);
        for (krate, homes) in CONFINED {
            let home = homes
                .iter()
                .any(|h| *h == module || here.ends_with(h) || here.starts_with(&format!("{h}/")));
            if home {
                continue;
            }
            for (n, line) in code.lines().enumerate() {
                if mentions(line, krate) {
                    violations.push(format!("{here}:{}: {krate}", n + 1));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "crates outside their folder:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_must() {
    // The rules would pass vacuously if the parsing found nothing.
    let auth = src().join("auth/mod.rs");
    assert!(crate_paths(&code_of(&auth))
        .iter()
        .any(|(_, p)| p.starts_with("token")));
    let server = code_of(&src().join("http/server.rs"));
    assert!(server.lines().any(|l| mentions(l, "hyper")));
    assert!(mentions(
        "    let db = redb::Database::create(path)?;",
        "redb"
    ));
    assert!(!mentions("    let x = credb::open();", "redb"));
    assert_eq!(module_of(&src().join("store/users.rs")), "store");
    assert_eq!(module_of(&src().join("main.rs")), "main");
    // A fake violation is caught.
    let fake = crate_paths("use crate::store::Store;\nlet x = crate::http::serve;");
    assert_eq!(
        fake.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(),
        ["store::Store", "http::serve"]
    );
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rel(file: &Path) -> String {
    file.strip_prefix(src())
        .expect("under src")
        .display()
        .to_string()
}

/// The top-level module a file belongs to: `src/auth/limiter.rs` -> `auth`, `src/main.rs` ->
/// `main`.
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("under src");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_owned()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The file without its comments (everything from `//` to the end of a line), so that prose
/// naming a crate is not an import. Code with `//` inside a string loses the rest of that line,
/// which can only hide a mention, never invent one.
fn code_of(file: &Path) -> String {
    fs::read_to_string(file)
        .expect("read file")
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::a::b` path in `code` (also inside `use crate::{a, b::c}` groups), with its
/// line number.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let before = &rest[..at];
            rest = &rest[at + "crate::".len()..];
            if before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
                continue; // `$crate::` in a macro, or part of another name
            }
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let item = item.trim();
                    if !item.is_empty() {
                        out.push((n + 1, path_prefix(item)));
                    }
                }
            } else {
                out.push((n + 1, path_prefix(rest)));
            }
        }
    }
    out
}

/// `a::b::Item;` -> `a::b::Item` (up to the first character that is not part of a path).
fn path_prefix(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect::<String>()
        .trim_end_matches(':')
        .to_owned()
}

/// Whether `line` names the crate (or path) `krate` as code: `krate::` or `use krate`, not as
/// part of a longer name.
fn mentions(line: &str, krate: &str) -> bool {
    let mut rest = line;
    while let Some(at) = rest.find(krate) {
        let before = rest[..at].chars().last();
        let after = &rest[at + krate.len()..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if after.starts_with("::")
            || (after.starts_with([';', ' ']) && line.trim_start().starts_with("use "))
        {
            return true;
        }
    }
    false
}
