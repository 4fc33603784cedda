//! INTERIM (replaced by the throw-away cluster of helper/pgtest): a PostgreSQL server named
//! by LATCHD_TEST_PG_URL (a superuser URL without a database name).

use std::sync::OnceLock;

pub struct Cluster {
    url: String,
}

pub fn cluster() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| match std::env::var("LATCHD_TEST_PG_URL") {
            Ok(url) => Some(Cluster { url }),
            Err(_) => {
                eprintln!("skipping: LATCHD_TEST_PG_URL is not set");
                None
            }
        })
        .as_ref()
}

impl Cluster {
    pub fn fresh_database(&self) -> String {
        let name = format!("latchd_{}", uuid::Uuid::new_v4().simple());
        let status = std::process::Command::new("psql")
            .arg(format!("{}/postgres", self.url))
            .args(["-q", "-c", &format!("CREATE DATABASE {name}")])
            .status()
            .expect("run psql");
        assert!(status.success(), "CREATE DATABASE failed");
        format!("{}/{name}", self.url)
    }
}
