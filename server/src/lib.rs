//! medrelay-server: the medrelay HTTP API (actix-web) over sled or
//! PostgreSQL.
//!
//! One process serves the directory of principals, operator enrollment,
//! challenge-response authentication, record envelopes, grants, proxy
//! re-encryption, the audit log and the differential-privacy service
//! (schemas, opt-in summaries, analysts' queries against a durable budget;
//! see `docs/DP-SERVICE.md`), all under `/v1`. The binary
//! (`medrelay-server`) is a thin CLI over [`app`], [`serve`],
//! [`enroll_operator`] and the DP operator commands ([`add_schema`],
//! [`set_budget`]). With `serve --aggregator leader|helper` it is also
//! one of the two aggregators of private studies ([`study`]): patients
//! upload secret-shared, HPKE-sealed reports and no server sees a summary.
//!
//! Operations: the operator enrolls doctors, analysts and auditors while the
//! server runs through a Unix-domain admin socket in the data directory
//! (mode 0600 in a 0700 directory; never on the network; see [`admin`]),
//! or offline when it does not run. Expired sessions, challenges and
//! enrollment tokens are swept periodically ([`sweep_expired`]). Prepared
//! re-encryption keys are kept in a bounded cache ([`RekeyCache`]) that is
//! consulted only after authorization and emptied of a grant's keys as soon
//! as its revocation is durable. Validated DP summaries are kept per schema
//! in memory ([`DpCache`]) and reloaded from the store after any summary of
//! the schema changes.
//!
//! # Layout
//!
//! One module per service, each with its own routes under `/v1`, beside
//! the storage and the operations they share:
//!
//! | module | holds |
//! | --- | --- |
//! | `policy` | principals and enrollment tokens (`directory`), challenge-response login and the role extractors (`auth`: [`Auth`], [`PatientAuth`], [`DoctorAuth`], [`AuditorAuth`]), grants and revocations (`grants`), operator suspension ([`suspend`]) |
//! | `pre` | record envelopes (`records`), the need-to-know decision every read path shares (`access`), the doctors' re-encrypted fetch (`reencrypt`) and its key cache ([`RekeyCache`]) |
//! | `log` | the audit log's routes (checkpoints, proofs, entries for their audience), typed events turned into appends (`events`), refused requests and their coalescing (`refusals`, [`RefusalCoalescer`]) |
//! | `dp` | the curated DP service (schemas, summaries, queries, budgets; [`DpGate`]), the operator's schema and budget commands (`dp::admin`: [`add_schema`], [`set_budget`]), the summary cache ([`DpCache`]) |
//! | [`study`] | private studies: the leader and helper aggregators, their keys and the operator's study commands |
//! | [`store`] | the [`Store`] trait and its backends, sled ([`SledStore`](store::SledStore)) and PostgreSQL ([`PgStore`](store::PgStore)), with one conformance suite |
//! | `ops` | the admin socket ([`admin`]), expiry sweeps ([`sweep_expired`]), metrics and `/healthz` ([`Metrics`]), rate limits ([`quota`]), the body-read deadline and JSON `405`s (`hygiene`), the plaintext scan ([`scan`]), sled → PostgreSQL copy ([`migrate`]) |
//!
//! At the top: [`app`] and [`AppState`] (this file), running the server,
//! `init` and operator enrollment (`serve`: [`serve()`], [`init`],
//! [`enroll_operator`]), the in-process [`LocalServer`], the one
//! [`ApiError`], the [`Clock`] and the OpenAPI document (`openapi`). The
//! crate root re-exports what other crates use, so these paths do not
//! follow the module layout.
//!
//! # Threat model
//!
//! The server is trusted for availability and for enforcing grants, not for
//! confidentiality: it stores only what clients encrypted and signed
//! (envelopes, signed headers, signed grants and revocations, public keys,
//! re-encryption keys). It never sees plaintext or a secret key. Everything
//! it does is appended to a Merkle log, so auditors can detect a server that
//! swaps keys or serves records without a grant. The log's leaves are salted
//! commitments: checkpoints, proofs and leaf hashes are public, an event goes
//! only to the principals it is about and to auditors, and names and keys
//! only to callers with a reason (`docs/THREAT-MODEL.md`, "Who can read
//! what"). A doctor sees only the records a grant in force covers. Clients
//! are untrusted:
//! every body has a size limit, every JSON type rejects unknown fields, every
//! blob is versioned and decoded with limits, and every error is a 4xx JSON
//! body that changed nothing — except that a submission from an
//! authenticated principal that fails its signature or names someone else
//! (forged grant, tampered envelope), reads someone else's objects or uses
//! another role's operation is also written to the audit log as `request
//! refused`, ids and reason only (identical refusals coalesced per window,
//! see [`RefusalCoalescer`]). Bearer tokens and enrollment
//! tokens are stored only as SHA-256 hashes; challenges are single use.
//! Logs carry ids only.
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

mod clock;
mod dp;
mod error;
mod local;
mod log;
mod openapi;
mod ops;
mod policy;
mod pre;
mod serve;
pub mod store;
pub mod study;

pub use ops::{admin, migrate, quota, scan};
pub use policy::suspend;

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{web, App, HttpResponse};
use medrelay_policy::LogSigner;
use medrelay_wire::limits;

pub use clock::Clock;
pub use dp::admin::{
    add_schema, add_schema_in, budget_from, install_default_schema, install_schema, list_schemas, set_budget,
    set_budget_in,
};
pub use dp::cache::{DpCache, DEFAULT_DP_CACHE_ROWS};
pub use dp::{default_dp_budget, DpGate, DEFAULT_DP_DEADLINE, DEFAULT_DP_DELTA, DEFAULT_DP_EPSILON};
pub use error::ApiError;
pub use local::LocalServer;
pub use log::refusals::{flush_all_refusals, RefusalCoalescer, MAX_OPEN_WINDOWS, REFUSAL_WINDOW_SECS};
pub use ops::hygiene::DEFAULT_BODY_TIMEOUT;
pub use ops::maintenance::{spawn_sweeper, sweep_expired, DEFAULT_SWEEP_INTERVAL};
pub use ops::metrics::Metrics;
pub use policy::auth::{AuditorAuth, Auth, DoctorAuth, PatientAuth};
pub use pre::rekey_cache::{RekeyCache, DEFAULT_REKEY_CACHE_KEYS};
pub use quota::{Limiters, Quotas, Rate};
pub use serve::{
    enroll, enroll_in, enroll_operator, init, init_with, load_log_key, restrict_umask, serve, DatabaseUrl,
    EnrolledVia, ServeConfig, ServeError,
};
pub use study::{AggregatorConfig, AggregatorToken, StudyService};

use store::Store;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    store: Arc<dyn Store>,
    clock: Clock,
    metrics: Arc<Metrics>,
    log_signer: Arc<LogSigner>,
    rekey_cache: Arc<RekeyCache>,
    dp_cache: Arc<DpCache>,
    dp_default_budget: Option<medrelay_dp::Budget>,
    refusals: Arc<RefusalCoalescer>,
    limiters: Arc<Limiters>,
    body_timeout: Duration,
    dp_gate: Arc<DpGate>,
    study: Option<Arc<StudyService>>,
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
            rekey_cache: Arc::new(RekeyCache::new(DEFAULT_REKEY_CACHE_KEYS)),
            dp_cache: Arc::new(DpCache::new(DEFAULT_DP_CACHE_ROWS)),
            dp_default_budget: default_dp_budget(),
            refusals: Arc::new(RefusalCoalescer::default()),
            limiters: Arc::new(Limiters::new(Quotas::default())),
            body_timeout: DEFAULT_BODY_TIMEOUT,
            dp_gate: Arc::new(DpGate::new(DpGate::default_slots(), DEFAULT_DP_DEADLINE)),
            study: None,
        }
    }

    /// The same state coalescing identical refusals over windows of
    /// `secs` seconds (0: every refusal is its own entry) instead of
    /// [`REFUSAL_WINDOW_SECS`]; see [`RefusalCoalescer`].
    pub fn with_refusal_window(mut self, secs: u64) -> Self {
        self.refusals = Arc::new(RefusalCoalescer::new(secs));
        self
    }

    /// The open refusal-coalescing windows.
    pub fn refusals(&self) -> &RefusalCoalescer {
        &self.refusals
    }

    /// The same state enforcing `quotas` instead of [`Quotas::default`].
    pub fn with_quotas(mut self, quotas: Quotas) -> Self {
        self.limiters = Arc::new(Limiters::new(quotas));
        self
    }

    /// The running rate limiters.
    pub fn limiters(&self) -> &Limiters {
        &self.limiters
    }

    /// The same state giving every request body `timeout` to arrive
    /// (counted from its headers) instead of [`DEFAULT_BODY_TIMEOUT`].
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// How long a request body has to arrive.
    pub fn body_timeout(&self) -> Duration {
        self.body_timeout
    }

    /// The same state running at most `slots` DP answers at once (at least
    /// one), each abandoned after `deadline`. See [`DpGate`].
    pub fn with_dp_limits(mut self, slots: usize, deadline: Duration) -> Self {
        self.dp_gate = Arc::new(DpGate::new(slots, deadline));
        self
    }

    /// The bound on concurrent DP work.
    pub fn dp_gate(&self) -> &Arc<DpGate> {
        &self.dp_gate
    }

    /// The same state serving private studies as a leader or helper
    /// aggregator (see [`study`]).
    pub fn with_study_service(mut self, service: StudyService) -> Self {
        self.study = Some(Arc::new(service));
        self
    }

    /// The private-study service, if this server is an aggregator.
    pub fn study_service(&self) -> Option<&StudyService> {
        self.study.as_deref()
    }

    /// The same state with a re-encryption key cache of `capacity` keys
    /// (0: off) instead of [`DEFAULT_REKEY_CACHE_KEYS`].
    pub fn with_rekey_cache(mut self, capacity: usize) -> Self {
        self.rekey_cache = Arc::new(RekeyCache::new(capacity));
        self
    }

    /// The re-encryption key cache.
    pub fn rekey_cache(&self) -> &RekeyCache {
        &self.rekey_cache
    }

    /// The same state with a DP summary cache of at most `rows` summaries
    /// over all schemas (0: off, every query reads the store) instead of
    /// [`DEFAULT_DP_CACHE_ROWS`].
    pub fn with_dp_cache(mut self, rows: usize) -> Self {
        self.dp_cache = Arc::new(DpCache::new(rows));
        self
    }

    /// The cache of validated DP summaries. Code that writes summaries to
    /// the store directly (not through the HTTP handlers) while this state
    /// serves must call [`DpCache::invalidate`] afterwards.
    pub fn dp_cache(&self) -> &Arc<DpCache> {
        &self.dp_cache
    }

    /// Sets the DP budget an analyst gets for a schema when the operator has
    /// set none (`None`: such analysts are refused with `no_budget`). The
    /// default is [`default_dp_budget`].
    pub fn with_dp_default_budget(mut self, budget: Option<medrelay_dp::Budget>) -> Self {
        self.dp_default_budget = budget;
        self
    }

    /// The DP budget applied when the operator has set none.
    pub fn dp_default_budget(&self) -> Option<medrelay_dp::Budget> {
        self.dp_default_budget
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

/// No route matched: a path served with other methods is a 405 naming
/// them, anything else a 404.
async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let allow = openapi::allowed_methods_at(req.path());
    if allow.is_empty() {
        Err(ApiError::NotFound("route"))
    } else {
        Err(ApiError::MethodNotAllowed { allow })
    }
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
    // Routes with larger bodies set their own limit (see `limits`).
    let json = error::json_config(limits::MAX_SMALL_BODY_BYTES);
    let path =
        web::PathConfig::default().error_handler(|e, _| ApiError::InvalidParameter(e.to_string()).into());
    let query =
        web::QueryConfig::default().error_handler(|e, _| ApiError::InvalidParameter(e.to_string()).into());
    App::new()
        .app_data(web::Data::new(state.clone()))
        .app_data(json)
        .app_data(path)
        .app_data(query)
        .wrap(actix_web::middleware::from_fn(log::refusals::log_wrong_role))
        .wrap(actix_web::middleware::from_fn(ops::quota::guard))
        .wrap(actix_web::middleware::from_fn(ops::hygiene::guard))
        .wrap(actix_web::middleware::from_fn(ops::metrics::track))
        .wrap(actix_web::middleware::from_fn(study::mode_filter))
        .route("/healthz", web::get().to(ops::metrics::healthz))
        .route("/metrics", web::get().to(ops::metrics::metrics))
        .route("/v1/openapi.json", web::get().to(openapi::openapi))
        .service(
            web::scope("/v1")
                .configure(policy::routes)
                .configure(pre::routes)
                .configure(log::routes)
                .configure(dp::routes)
                .configure(study::routes),
        )
        .default_service(web::to(not_found))
}
