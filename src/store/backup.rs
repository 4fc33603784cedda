//! The online backup: every table of one read transaction (a consistent snapshot; the writer
//! keeps committing meanwhile) copied into a fresh redb file, made durable, then put in place.
//!
//! The copy is written to `<dest>.tmp` (created owner-only, never over an existing file, and
//! written only through the handle that created it), committed with `Durability::Immediate`,
//! fsynced, hard-linked at `dest` (which fails, unlike a rename, if anything appeared there),
//! the temporary name removed and the directory fsynced;
//! then it is opened read-only and must pass the schema check and hold as many rows as were
//! copied. A failure removes the temporary file and leaves `dest` absent. Every committed write
//! is in the snapshot, so every write acknowledged before the backup began is in the copy
//! (writes of the batch being committed at that moment may be in it too).
//!
//! A table this module does not list makes the backup fail (it would be lost silently
//! otherwise): add every new table of `tables.rs` to [`copy_all`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use redb::backends::FileBackend;
use redb::{
    Database, Key, MultimapTableHandle, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableHandle, Value, WriteTransaction,
};

use super::tables::{
    AUDIT, BLACKLIST, BROWSER_SESSIONS, FAMILIES, FAMILIES_BY_USER, META, MFA_CHALLENGES,
    ROLE_MEMBERS, SCHEMA_VERSION, SCHEMA_VERSION_KEY, SECRETS, SIGNING_KEYS, TOTP, USERS,
    USER_BY_EMAIL, VIEW_SESSIONS, VIEW_USERS,
};
use crate::auth::storage::StoreError;
use crate::model::Backup;

/// The page cache of the copy while it is written and checked: redb's default (1 GiB) would let
/// a backup of a large file grow the server's memory by as much; dirty pages past this are
/// written out to the copy before its commit. The store's own default size, so a backup costs
/// at most what the server's cache does.
const COPY_CACHE_BYTES: usize = super::DEFAULT_CACHE_MB << 20;
/// Copies the database's current state into a new file at `dest`; see the module docs.
pub(super) fn backup_to(db: &Database, dest: &Path) -> Result<Backup, StoreError> {
    // The snapshot: everything committed when the backup began.
    let snapshot = db.begin_read()?;
    // Not `exists()`: a symlink, dangling or not, is a file the backup must not replace.
    if fs::symlink_metadata(dest).is_ok() {
        return Err(io_error(
            "refusing to overwrite",
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", dest.display()),
            ),
        ));
    }
    let tmp = temporary(dest);
    let file = create_owner_only(&tmp)?;
    let written = write_copy(&snapshot, file, &tmp, dest);
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    let mut backup = written?;
    drop(snapshot);
    verify(dest, backup.rows)?;
    backup.bytes = fs::metadata(dest)
        .map_err(|e| io_error("reading the copy", e))?
        .len();
    Ok(backup)
}

/// Writes the snapshot into `file` (created at `tmp`), makes it durable and links it at `dest`.
///
/// The copy is written through the handle `create_owner_only` opened, never by reopening
/// `tmp`, so a file or symlink swapped in at that path meanwhile is not written to. It is put
/// in place with a hard link rather than `rename`, which fails if anything (a symlink
/// included) appeared at `dest` during the backup instead of replacing it; the caller then
/// removes `tmp`.
fn write_copy(
    snapshot: &ReadTransaction,
    file: fs::File,
    tmp: &Path,
    dest: &Path,
) -> Result<Backup, StoreError> {
    let handle = file
        .try_clone()
        .map_err(|e| io_error("opening the copy", e))?;
    let copy = redb::Builder::new()
        .set_cache_size(COPY_CACHE_BYTES)
        .create_with_backend(FileBackend::new(file)?)?;
    let txn = copy.begin_write()?;
    let backup = copy_all(snapshot, &txn)?;
    txn.commit()?; // Durability::Immediate, redb's default
    drop(copy);
    handle
        .sync_all()
        .map_err(|e| io_error("syncing the copy", e))?;
    fs::hard_link(tmp, dest).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => io_error(
            "refusing to overwrite",
            io::Error::new(
                e.kind(),
                format!("{} appeared during the backup", dest.display()),
            ),
        ),
        _ => io_error("putting the copy in place", e),
    })?;
    fs::remove_file(tmp).map_err(|e| io_error("removing the temporary copy", e))?;
    sync_directory(dest)?;
    Ok(backup)
}

/// Copies every table; fails if the snapshot holds a table not listed here.
fn copy_all(from: &ReadTransaction, to: &WriteTransaction) -> Result<Backup, StoreError> {
    let mut names = Vec::new();
    let mut rows = 0;
    rows += copy(from, to, META, &mut names)?;
    rows += copy(from, to, SECRETS, &mut names)?;
    let users = copy(from, to, USERS, &mut names)?;
    rows += users;
    rows += copy(from, to, USER_BY_EMAIL, &mut names)?;
    let sessions = copy(from, to, FAMILIES, &mut names)?;
    rows += sessions;
    rows += copy(from, to, ROLE_MEMBERS, &mut names)?;
    rows += copy(from, to, FAMILIES_BY_USER, &mut names)?;
    rows += copy(from, to, BROWSER_SESSIONS, &mut names)?;
    rows += copy(from, to, TOTP, &mut names)?;
    rows += copy(from, to, MFA_CHALLENGES, &mut names)?;
    rows += copy(from, to, BLACKLIST, &mut names)?;
    rows += copy(from, to, SIGNING_KEYS, &mut names)?;
    rows += copy(from, to, AUDIT, &mut names)?;
    rows += copy(from, to, VIEW_USERS, &mut names)?;
    rows += copy(from, to, VIEW_SESSIONS, &mut names)?;
    let present = from
        .list_tables()?
        .map(|t| t.name().to_owned())
        .chain(from.list_multimap_tables()?.map(|t| t.name().to_owned()));
    for name in present {
        if !names.contains(&name) {
            return Err(StoreError::Corrupt {
                table: "backup",
                detail: format!("table {name:?} is not known to the backup: not copied"),
            });
        }
    }
    Ok(Backup {
        users,
        sessions,
        rows,
        bytes: 0,
    })
}

fn copy<K: Key + 'static, V: Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    table: TableDefinition<K, V>,
    names: &mut Vec<String>,
) -> Result<u64, StoreError> {
    names.push(table.name().to_owned());
    let source = from.open_table(table)?;
    let mut target = to.open_table(table)?;
    let mut rows = 0;
    for row in source.iter()? {
        let (key, value) = row?;
        target.insert(key.value(), value.value())?;
        rows += 1;
    }
    Ok(rows)
}

/// Opens the copy read-only: this build's schema version, and every row that was copied.
fn verify(dest: &Path, rows: u64) -> Result<(), StoreError> {
    let copy = redb::Builder::new()
        .set_cache_size(COPY_CACHE_BYTES)
        .open_read_only(dest)?;
    let txn = copy.begin_read()?;
    let version = txn
        .open_table(META)?
        .get(SCHEMA_VERSION_KEY)?
        .map(|v| v.value());
    if version != Some(SCHEMA_VERSION) {
        return Err(StoreError::Corrupt {
            table: "backup",
            detail: format!("the copy's schema version is {version:?}, not {SCHEMA_VERSION}"),
        });
    }
    let mut found = 0;
    for table in txn.list_tables()? {
        found += txn.open_untyped_table(table)?.len()?;
    }
    for table in txn.list_multimap_tables()? {
        found += txn.open_untyped_multimap_table(table)?.len()?;
    }
    if found != rows {
        return Err(StoreError::Corrupt {
            table: "backup",
            detail: format!("the copy holds {found} rows, {rows} were copied"),
        });
    }
    Ok(())
}

fn temporary(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Creates `path` empty and owner-only (0600) and opens it for reading and writing, failing
/// if anything is there (a symlink included: `O_EXCL` does not follow it): it will hold the
/// signing keys. redb initialises an empty file.
fn create_owner_only(path: &Path) -> Result<fs::File, StoreError> {
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(io_error(
            "creating the temporary copy",
            io::Error::new(
                e.kind(),
                format!(
                    "{} already exists (left by an interrupted backup? remove it)",
                    path.display()
                ),
            ),
        )),
        Err(e) => Err(io_error("creating the temporary copy", e)),
    }
}

/// Makes the link and unlink durable: fsync of the directory that holds `path`.
fn sync_directory(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("syncing the directory", e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn io_error(what: &'static str, e: io::Error) -> StoreError {
    StoreError::backend(what, e)
}
