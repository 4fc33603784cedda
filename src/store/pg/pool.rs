//! Connections to PostgreSQL: a small fixed-size pool of clients, opened on demand and
//! dropped when they break, TLS through rustls when the URL's `sslmode` asks for it.
//!
//! `sslmode=disable` connects in plain text; `prefer` (the default) uses TLS when the server
//! offers it; `require` insists on it. Whenever TLS is used the server's certificate is
//! verified against the system's trust roots and the host name (what libpq calls
//! `verify-full`): a certificate latchd cannot verify is a failed connection, never a silent
//! downgrade.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_postgres::config::SslMode;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::errors::pg_err;
use crate::auth::storage::StoreError;

/// How long a connection attempt may take before the database counts as unreachable.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A pool of at most `size` clients of one database.
pub(super) struct Pool {
    config: Config,
    tls: Option<MakeRustlsConnect>,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

/// A client lent by the pool; given back when dropped, unless its connection broke.
pub(in crate::store) struct Lent<'p> {
    pool: &'p Pool,
    client: Option<Client>,
    /// The connection holds state beyond one transaction (a session-level lock): closed, not
    /// pooled, if it is given back so.
    dirty: bool,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    /// A pool for `url` (a `postgres://` URL or libpq key=value string) of `size` clients.
    ///
    /// # Errors
    /// `NotADatabase` when the URL does not parse or names TLS settings latchd cannot honour.
    pub(super) fn new(url: &str, size: usize) -> Result<Pool, StoreError> {
        let mut config: Config = url
            .parse()
            .map_err(|e| StoreError::NotADatabase(format!("LATCHD_DATABASE_URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // A dead peer is noticed within seconds rather than the kernel's two hours.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(5));
        if config.get_application_name().is_none() {
            config.application_name("latchd");
        }
        // Server-side bounds, so that a node that stalls or vanishes mid-transaction cannot
        // hold its locks (the feed's ordering lock among them) for the kernel's two hours:
        // its idle transaction is ended after 10 s, a lock wait or a statement of a dropped
        // request give up on their own.
        let bounds = "-c idle_in_transaction_session_timeout=10000 -c lock_timeout=10000 \
                      -c statement_timeout=60000";
        let options = match config.get_options() {
            Some(given) => format!("{bounds} {given}"),
            None => bounds.to_owned(),
        };
        config.options(&options);
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            // `prefer` without any root to verify against can only be plain text.
            SslMode::Prefer => tls_connector().ok(),
            _ => Some(tls_connector()?),
        };
        Ok(Pool {
            config,
            tls,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size.max(1))),
        })
    }

    /// A client: an idle one whose connection is alive, else a new connection.
    ///
    /// # Errors
    /// `Unavailable` if the database cannot be reached.
    pub(super) async fn get(&self) -> Result<Lent<'_>, StoreError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let idle = loop {
            let next = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match next {
                Some(client) if client.is_closed() => {}
                other => break other,
            }
        };
        let client = match idle {
            Some(client) => client,
            None => self.connect().await?,
        };
        Ok(Lent {
            pool: self,
            client: Some(client),
            dirty: false,
            _permit: permit,
        })
    }

    /// A new connection outside the pool, with the future that drives it, which raises
    /// `wake` on every notification (the change feed's connection LISTENs).
    ///
    /// # Errors
    /// `Unavailable` if the database cannot be reached.
    pub(super) async fn connect_raw(
        &self,
        wake: Option<Arc<Notify>>,
    ) -> Result<(Client, Connection), StoreError> {
        let attempt = async {
            match &self.tls {
                None => {
                    let (client, conn) = self.config.connect(NoTls).await?;
                    Ok::<_, tokio_postgres::Error>((client, driven(conn, wake)))
                }
                Some(tls) => {
                    let (client, conn) = self.config.connect(tls.clone()).await?;
                    Ok((client, driven(conn, wake)))
                }
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(pair)) => Ok(pair),
            Ok(Err(e)) if e.code().is_some() => Err(pg_err("connecting")(e)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot connect to the database");
                Err(StoreError::Unavailable)
            }
            Err(_) => {
                tracing::warn!("connecting to the database timed out");
                Err(StoreError::Unavailable)
            }
        }
    }

    async fn connect(&self) -> Result<Client, StoreError> {
        let (client, connection) = self.connect_raw(None).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "database connection ended");
            }
        });
        Ok(client)
    }
}

/// A connection's I/O future, which must be polled for its client to make progress.
pub(super) type Connection =
    Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// Drives `conn`, raising `wake` on each notification; resolves when the connection ends.
fn driven<S, T>(mut conn: tokio_postgres::Connection<S, T>, wake: Option<Arc<Notify>>) -> Connection
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(std::future::poll_fn(move |cx| loop {
        match conn.poll_message(cx) {
            Poll::Ready(Some(Ok(AsyncMessage::Notification(_)))) => {
                if let Some(wake) = &wake {
                    wake.notify_one();
                }
            }
            Poll::Ready(Some(Ok(_))) => {} // a notice: nothing latchd acts on
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
            Poll::Ready(None) => return Poll::Ready(Ok(())),
            Poll::Pending => return Poll::Pending,
        }
    }))
}

impl std::ops::Deref for Lent<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        // Present from construction until drop.
        self.client.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Lent<'_> {
    /// From now until [`session_state_clean`](Self::session_state_clean), the connection
    /// holds session state: dropped, it is closed (PostgreSQL then releases the state).
    pub(in crate::store) fn holds_session_state(&mut self) {
        self.dirty = true;
    }

    /// The session state taken since [`holds_session_state`](Self::holds_session_state) is
    /// released: the connection may be pooled again.
    pub(in crate::store) fn session_state_clean(&mut self) {
        self.dirty = false;
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if !client.is_closed() && !self.dirty {
                self.pool
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(client);
            }
        }
    }
}

/// rustls on ring, trusting the system's roots.
fn tls_connector() -> Result<MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        // A root the system lists but rustls cannot parse is skipped, as browsers do.
        drop(roots.add(cert));
    }
    if roots.is_empty() {
        return Err(StoreError::NotADatabase(
            "LATCHD_DATABASE_URL asks for TLS, but the system has no trusted root \
             certificates (install ca-certificates, or use sslmode=disable on a trusted \
             network)"
                .to_owned(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::backend("configuring TLS", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
