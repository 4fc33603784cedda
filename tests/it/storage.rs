//! The storage conformance suite (`latchd::conformance`) against the redb store: one test per
//! case, each on its own temporary file.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use latchd::auth::storage::Storage;
use latchd::conformance::Harness;
use latchd::store::Store;

/// A redb file in a temporary directory of its own.
struct Redb {
    dir: tempfile::TempDir,
}

impl Redb {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
}

impl Harness for Redb {
    fn open(&mut self) -> Pin<Box<dyn Future<Output = Arc<dyn Storage>> + '_>> {
        let path = self.dir.path().join("latchd.redb");
        Box::pin(async move {
            let store: Arc<dyn Storage> = Arc::new(Store::open(&path).expect("open the store"));
            store
        })
    }

    fn another(&self) -> Box<dyn Harness> {
        Box::new(Redb::new())
    }
}

latchd::storage_conformance!(Redb::new());
