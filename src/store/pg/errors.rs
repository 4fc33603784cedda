//! tokio-postgres's errors as the port's [`StoreError`]: a lost or refused connection is
//! `Unavailable` (503, retry), everything else a backend failure at the step it happened.

use tokio_postgres::error::SqlState;

use crate::auth::storage::StoreError;

/// Maps an error of step `what`.
pub(super) fn pg_err(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| {
        if e.is_closed() || e.code().is_none() && is_io(&e) {
            tracing::warn!(error = %e, step = what, "database connection lost");
            StoreError::Unavailable
        } else {
            StoreError::backend(what, e)
        }
    }
}

/// Whether the error is an I/O failure of the connection (the server went away).
fn is_io(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Whether `err` is a conflict PostgreSQL resolved by aborting this transaction (a
/// serialization failure or a deadlock): the transaction is run again from the start.
pub(super) fn is_retryable(err: &StoreError) -> bool {
    let StoreError::Backend { source, .. } = err else {
        return false;
    };
    source
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        .is_some_and(|code| {
            *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
        })
}

/// Whether `err` is a unique constraint refusing a row (a taken email, id or kid).
pub(super) fn is_unique_violation(err: &tokio_postgres::Error) -> bool {
    err.code() == Some(&SqlState::UNIQUE_VIOLATION)
}
