//! `StoreError`: everything that can go wrong below the store's API, with a hand-written `Display`.

use std::fmt;

/// A failure of the storage layer. Domain outcomes (a taken email, a reused token) are values,
/// never this type.
#[derive(Debug)]
pub enum StoreError {
    /// Another process holds the database file open for writing.
    Locked,
    /// The file was written by a newer latchd whose schema this build cannot read.
    SchemaTooNew {
        /// The schema version recorded in the file.
        found: u64,
        /// The newest schema version this build understands.
        supported: u64,
    },
    /// A row, or the file's schema, could not be decoded; nothing was guessed.
    Corrupt {
        /// The table (or `"schema"`) that held the bad data.
        table: &'static str,
        /// What failed to decode.
        detail: String,
    },
    /// A signing key with this `kid` is already stored.
    KidTaken(String),
    /// A refresh family with this id already exists (the caller reused an id).
    FamilyExists,
    /// The operating system's random number generator failed.
    Random,
    /// The database file's permissions could not be set to owner-only.
    Permissions(std::io::Error),
    /// redb could not open or create the database file.
    Database(redb::DatabaseError),
    /// redb could not begin a transaction.
    Transaction(redb::TransactionError),
    /// redb could not open a table.
    Table(redb::TableError),
    /// redb failed to read or write a page.
    Storage(redb::StorageError),
    /// redb could not commit a transaction; nothing of it is on disk.
    Commit(redb::CommitError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Locked => f.write_str("database file is locked by another process"),
            Self::SchemaTooNew { found, supported } => write!(
                f,
                "database schema version {found} is newer than this build supports \
                 ({supported}); upgrade latchd or use a different file"
            ),
            Self::Corrupt { table, detail } => write!(f, "corrupt data in {table}: {detail}"),
            Self::KidTaken(kid) => write!(f, "signing key id {kid:?} is already stored"),
            Self::FamilyExists => f.write_str("refresh family id already exists"),
            Self::Random => f.write_str("system random number generator failed"),
            Self::Permissions(e) => write!(f, "restricting the file to its owner: {e}"),
            Self::Database(e) => write!(f, "opening database: {e}"),
            Self::Transaction(e) => write!(f, "beginning transaction: {e}"),
            Self::Table(e) => write!(f, "opening table: {e}"),
            Self::Storage(e) => write!(f, "storage: {e}"),
            Self::Commit(e) => write!(f, "committing: {e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Database(e) => Some(e),
            Self::Transaction(e) => Some(e),
            Self::Table(e) => Some(e),
            Self::Storage(e) => Some(e),
            Self::Commit(e) => Some(e),
            Self::Permissions(e) => Some(e),
            Self::Locked
            | Self::SchemaTooNew { .. }
            | Self::Corrupt { .. }
            | Self::KidTaken(_)
            | Self::FamilyExists
            | Self::Random => None,
        }
    }
}

impl From<redb::DatabaseError> for StoreError {
    fn from(e: redb::DatabaseError) -> Self {
        match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Self::Locked,
            other => Self::Database(other),
        }
    }
}

impl From<redb::TransactionError> for StoreError {
    fn from(e: redb::TransactionError) -> Self {
        Self::Transaction(e)
    }
}

impl From<redb::TableError> for StoreError {
    fn from(e: redb::TableError) -> Self {
        Self::Table(e)
    }
}

impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        Self::Storage(e)
    }
}

impl From<redb::CommitError> for StoreError {
    fn from(e: redb::CommitError) -> Self {
        Self::Commit(e)
    }
}
