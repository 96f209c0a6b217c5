//! An in-process server on a free loopback port, for the demo and for tests
//! that want the real HTTP stack without a second process (sled admits one
//! process per database); over PostgreSQL, several in one process act as
//! replicas.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::HttpServer;

use crate::serve::{backend_is_postgres, check_private, db_dir, io_err};
use crate::store::{PgStore, SledStore, Store, StudyStore};
use crate::{app, load_log_key, AppState, Clock, DatabaseUrl, Quotas, ServeError};

/// How long [`LocalServer::start`] waits for the database lock of a server
/// stopped a moment ago in this process (sled's I/O threads release it
/// shortly after the last handle is dropped).
const REOPEN_WAIT: Duration = Duration::from_secs(30);

/// A running server on `127.0.0.1:<free port>` over the sled database in
/// `data` (or a PostgreSQL database: [`LocalServer::start_replica`]),
/// served by its own actix system on a background thread.
pub struct LocalServer {
    addr: SocketAddr,
    data: PathBuf,
    state: AppState,
    handle: ServerHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for LocalServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalServer").field("addr", &self.addr).field("data", &self.data).finish()
    }
}

impl LocalServer {
    /// Opens the initialized data directory `data` and serves it with
    /// `workers` worker threads, signing checkpoints as `log_origin`.
    pub fn start(data: &Path, log_origin: &str, workers: usize) -> Result<Self, ServeError> {
        Self::start_with(data, log_origin, workers, Quotas::default(), None)
    }

    /// [`LocalServer::start`] enforcing `quotas` instead of the defaults,
    /// and also serving private studies as their leader or helper
    /// (`aggregator`), with the leader's preparation driver.
    pub fn start_with(
        data: &Path,
        log_origin: &str,
        workers: usize,
        quotas: Quotas,
        aggregator: Option<crate::AggregatorConfig>,
    ) -> Result<Self, ServeError> {
        let key = load_log_key(data)?;
        check_private(data)?;
        // A server stopped a moment ago in this process may still hold the
        // database lock briefly.
        let store = SledStore::open_waiting(&db_dir(data), REOPEN_WAIT)?;
        let state = Self::new_state(data, &key, log_origin, store, quotas, aggregator)?;
        Self::serve_state(data, state, workers)
    }

    /// [`LocalServer::start_with`] as one replica over the PostgreSQL
    /// database `database`: `data` was initialized for it
    /// ([`crate::init_with`]), or is a copy of such a directory (every
    /// replica holds the one log signing key). As `serve --database` does,
    /// the key is checked against the one the database records, and the
    /// DP summary cache is off (its invalidation is per process). Run the
    /// leader `aggregator` on one replica only.
    pub fn start_replica(
        data: &Path,
        database: &DatabaseUrl,
        log_origin: &str,
        workers: usize,
        quotas: Quotas,
        aggregator: Option<crate::AggregatorConfig>,
    ) -> Result<Self, ServeError> {
        let key = load_log_key(data)?;
        check_private(data)?;
        if !backend_is_postgres(data)? {
            return Err(ServeError::Argument(
                "this data directory was initialized for sled: `init --database` makes one for PostgreSQL"
                    .into(),
            ));
        }
        let store = PgStore::open(database.expose())?;
        store.claim_log_key(&key.verifying_key())?;
        let state = Self::new_state(data, &key, log_origin, store, quotas, aggregator)?.with_dp_cache(0);
        Self::serve_state(data, state, workers)
    }

    /// The state of a server over `store`.
    fn new_state<S: Store + StudyStore + Clone>(
        data: &Path,
        key: &medrelay_crypto::SigningKey,
        log_origin: &str,
        store: S,
        quotas: Quotas,
        aggregator: Option<crate::AggregatorConfig>,
    ) -> Result<AppState, ServeError> {
        let signer = medrelay_policy::LogSigner::new(log_origin, key)
            .map_err(|e| ServeError::Argument(format!("log origin: {e}")))?;
        let study = match aggregator {
            Some(a) => Some(crate::StudyService::new(
                a,
                std::sync::Arc::new(store.clone()),
                crate::study::load_aggregator_key(data)?,
            )?),
            None => None,
        };
        let mut state = AppState::new(store, Clock::System, signer).with_quotas(quotas);
        if let Some(s) = study {
            state = state.with_study_service(s);
        }
        Ok(state)
    }

    /// Serves `state` on a free loopback port from a new thread.
    fn serve_state(data: &Path, state: AppState, workers: usize) -> Result<Self, ServeError> {
        let st = state.clone();
        let st_driver = state.clone();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("medrelay-local-server".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let bound = HttpServer::new(move || app(st.clone()))
                        .workers(workers.max(1))
                        .shutdown_timeout(5)
                        .disable_signals()
                        .bind(("127.0.0.1", 0));
                    let server = match bound {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return Ok(());
                        }
                    };
                    let addr = server.addrs()[0];
                    let running = server.run();
                    let driver = crate::study::spawn_driver(st_driver);
                    let _ = tx.send(Ok((addr, running.handle())));
                    let served = running.await;
                    if let Some(d) = driver {
                        d.abort();
                    }
                    served
                })
            })
            .map_err(io_err("starting the server thread"))?;
        let (addr, handle) = rx
            .recv()
            .map_err(|_| ServeError::Argument("the server thread exited before binding".into()))?
            .map_err(io_err("binding 127.0.0.1:0"))?;
        Ok(Self { addr, data: data.to_path_buf(), state, handle, thread: Some(thread) })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (store, clock, log signer) of the running server.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The data directory.
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// Stops accepting, waits for in-flight requests, joins the thread and
    /// flushes the store.
    pub fn stop(mut self) -> Result<(), ServeError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), ServeError> {
        if let Some(thread) = self.thread.take() {
            actix_web::rt::System::new().block_on(self.handle.stop(true));
            match thread.join() {
                Ok(r) => r.map_err(io_err("serving"))?,
                Err(_) => return Err(ServeError::Argument("the server thread panicked".into())),
            }
            crate::log::refusals::flush_all_refusals(&self.state)?;
            self.state.store().flush()?;
        }
        Ok(())
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "stopping the local server");
        }
    }
}
