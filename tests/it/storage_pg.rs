//! The storage conformance suite (`latchd::conformance`) against PostgreSQL: one test per
//! case, each on a database of its own in the test binary's throw-away cluster.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use latchd::auth::storage::Storage;
use latchd::conformance::Harness;
use latchd::store::pg::{PgStore, Settings, DEFAULT_POOL_SIZE};

use crate::support::postgres;

/// A database of its own, created on first open.
struct Pg {
    url: Option<String>,
}

impl Pg {
    fn new() -> Self {
        Self {
            url: postgres::cluster().map(postgres::Cluster::fresh_database),
        }
    }
}

impl Harness for Pg {
    fn open(&mut self) -> Pin<Box<dyn Future<Output = Arc<dyn Storage>> + '_>> {
        let url = self.url.clone().expect("available() was checked");
        Box::pin(async move {
            let settings = Settings {
                url,
                pool_size: DEFAULT_POOL_SIZE,
            };
            let store: Arc<dyn Storage> = Arc::new(
                PgStore::connect(&settings)
                    .await
                    .expect("connect to PostgreSQL"),
            );
            store
        })
    }

    fn another(&self) -> Box<dyn Harness> {
        Box::new(Pg::new())
    }

    fn available(&self) -> bool {
        self.url.is_some()
    }
}

latchd::storage_conformance!(Pg::new());
