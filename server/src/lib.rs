//! medrelay-server: the medrelay HTTP API (actix-web) over sled.
//!
//! One process serves the directory of principals, operator enrollment,
//! challenge-response authentication, record envelopes, grants, proxy
//! re-encryption and the audit log, all under `/v1`. The binary
//! (`medrelay-server`) is a thin CLI over [`app`], [`serve`] and
//! [`enroll`].
//!
//! # Threat model
//!
//! The server is trusted for availability and for enforcing grants, not for
//! confidentiality: it stores only what clients encrypted and signed
//! (envelopes, signed headers, signed grants and revocations, public keys,
//! re-encryption keys). It never sees plaintext or a secret key. Everything
//! it does is appended to a Merkle log, so auditors can detect a server that
//! swaps keys or serves records without a grant. Clients are untrusted:
//! every body has a size limit, every JSON type rejects unknown fields, every
//! blob is versioned and decoded with limits, and every error is a 4xx JSON
//! body that changed nothing. Bearer tokens and enrollment tokens are stored
//! only as SHA-256 hashes; challenges are single use. Logs carry ids only.
//!
//! # Example
//!
//! ```no_run
//! use medrelay_server::{app, AppState, Clock};
//! use medrelay_server::store::SledStore;
//!
//! # async fn run() -> std::io::Result<()> {
//! let dir = std::path::Path::new("/var/lib/medrelay");
//! let store = SledStore::open(&dir.join("db")).expect("open");
//! let key = medrelay_server::load_log_key(dir).expect("init first");
//! let signer = medrelay_policy::LogSigner::new("medrelay.example/log", &key).expect("name");
//! let state = AppState::new(store, Clock::System, signer);
//! actix_web::HttpServer::new(move || app(state.clone())).bind("127.0.0.1:8443")?.run().await
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod clock;
mod directory;
mod error;
mod events;
mod grants;
mod log;
mod metrics;
mod openapi;
mod records;
mod reencrypt;
mod serve;
pub mod store;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{web, App, HttpResponse};
use medrelay_policy::LogSigner;
use medrelay_wire::limits;

pub use auth::{AuditorAuth, Auth, DoctorAuth, PatientAuth};
pub use clock::Clock;
pub use error::ApiError;
pub use metrics::Metrics;
pub use serve::{enroll, enroll_in, init, load_log_key, serve, ServeConfig, ServeError};

use store::Store;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    store: Arc<dyn Store>,
    clock: Clock,
    metrics: Arc<Metrics>,
    log_signer: Arc<LogSigner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("clock", &self.clock).finish_non_exhaustive()
    }
}

impl AppState {
    /// State over `store`, reading time from `clock`, signing log
    /// checkpoints with `log_signer`.
    pub fn new(store: impl Store, clock: Clock, log_signer: LogSigner) -> Self {
        Self {
            store: Arc::new(store),
            clock,
            metrics: Arc::new(Metrics::default()),
            log_signer: Arc::new(log_signer),
        }
    }

    /// The log checkpoint signer.
    pub fn log_signer(&self) -> &LogSigner {
        &self.log_signer
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Runs a store operation on the blocking pool (sled flushes block).
    pub(crate) async fn with_store<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, store::StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        Ok(web::block(move || f(store.as_ref())).await??)
    }
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("route"))
}

/// The whole application: every route under `/v1`, `/healthz`, `/metrics`,
/// strict JSON/path/query error handling, and the metrics middleware.
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let json = web::JsonConfig::default()
        .limit(limits::MAX_BODY_BYTES)
        .error_handler(|e, _| error::json_error(e, limits::MAX_BODY_BYTES).into());
    let path =
        web::PathConfig::default().error_handler(|e, _| ApiError::InvalidParameter(e.to_string()).into());
    let query =
        web::QueryConfig::default().error_handler(|e, _| ApiError::InvalidParameter(e.to_string()).into());
    App::new()
        .app_data(web::Data::new(state.clone()))
        .app_data(json)
        .app_data(path)
        .app_data(query)
        .wrap(actix_web::middleware::from_fn(metrics::track))
        .route("/healthz", web::get().to(metrics::healthz))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/v1/openapi.json", web::get().to(openapi::openapi))
        .service(
            web::scope("/v1")
                .configure(auth::routes)
                .configure(directory::routes)
                .configure(records::routes)
                .configure(grants::routes)
                .configure(reencrypt::routes)
                .configure(log::routes),
        )
        .default_service(web::to(not_found))
}
