//! Running the server (plain HTTP or rustls TLS), `init` and operator
//! enrollment, as called by the thin binary.
//!
//! `serve` runs three things on one actix system: the public API on
//! `--bind`, the operator's admin socket (`DATA/admin/admin.sock`, see
//! [`crate::ops::admin`]; off with `--no-admin-socket`), and the expiry sweeper
//! ([`crate::ops::maintenance`]). Operator enrollment ([`enroll_operator`]) goes
//! through the admin socket when a server answers on it and opens the
//! database directly when none runs, so it works either way.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpServer;
use medrelay_crypto::encoding::{Decoder, Encoder};
use medrelay_crypto::SigningKey;
use medrelay_wire::{limits, Role};
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::ops::maintenance;
use crate::policy::auth::{random_token, secret_hash};
use crate::policy::directory::validate_name;
use crate::store::{Enrollment, PgStore, SledStore, Store, StoreError, StudyStore};
use crate::{app, AppState, Clock};

const LOG_KEY_FILE: &str = "log-signing.key";
/// Names the backend a data directory was initialized for (`sled` or
/// `postgres`); absent in directories from before PostgreSQL (sled).
const BACKEND_FILE: &str = "backend";
const LOG_KEY_MAGIC: &[u8; 4] = b"MRLK";

/// Errors of the operator commands.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// File system or socket error.
    ///
    /// The message includes the cause, so the cause is not also given as
    /// its `source` (an error chain printed with `{:#}` would repeat it).
    #[error("{context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        error: io::Error,
    },
    /// Storage error (e.g. the database is locked by a running server); the
    /// message includes it (not a `source`, as for `Io`).
    #[error("storage: {0}")]
    Store(StoreError),
    /// Bad TLS material or configuration.
    #[error("TLS: {0}")]
    Tls(String),
    /// `init` has not been run, or it was run twice.
    #[error("{0}")]
    Init(&'static str),
    /// A bad argument.
    #[error("invalid argument: {0}")]
    Argument(String),
    /// The data directory is open to group or others; the message names the
    /// command that fixes it.
    #[error(
        "{path} is accessible to group or others (mode {mode:04o}): the database holds names, grants, \
         re-encryption keys and DP summaries. Run `chmod -R go-rwx {path}` and start again"
    )]
    NotPrivate {
        /// The directory.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The running server's admin socket refused the request or answered
    /// something malformed (status 0).
    #[error("admin socket answered {status}: {message}")]
    Admin {
        /// HTTP status (0 if the answer did not parse).
        status: u16,
        /// The server's error code and message.
        message: String,
    },
}

impl From<StoreError> for ServeError {
    fn from(e: StoreError) -> Self {
        ServeError::Store(e)
    }
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ServeError {
    let context = context.into();
    move |error| ServeError::Io { context, error }
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Data directory (sled database and the log signing key).
    pub data: PathBuf,
    /// Address to bind, e.g. `127.0.0.1:8443`.
    pub bind: String,
    /// PEM certificate chain; with `tls_key`, serve HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Log origin (checkpoint key name), e.g. `medrelay.example/log`.
    pub log_origin: String,
    /// Serve the operator's admin socket (`DATA/admin/admin.sock`).
    pub admin_socket: bool,
    /// Capacity of the re-encryption key cache, in keys (0: off).
    pub rekey_cache_keys: usize,
    /// Capacity of the DP summary cache, in summaries (0: off).
    pub dp_cache_rows: usize,
    /// Time between two expiry sweeps.
    pub sweep_interval: Duration,
    /// DP budget of an analyst for a schema the operator set no budget for
    /// (`None`: refuse such analysts). See [`crate::default_dp_budget`].
    pub dp_default_budget: Option<medrelay_dp::Budget>,
    /// Rate limits (see [`crate::ops::quota`]).
    pub quotas: crate::Quotas,
    /// Time a request body has to arrive after its headers.
    pub body_timeout: Duration,
    /// DP answers computed at once (see [`crate::DpGate`]).
    pub dp_slots: usize,
    /// Deadline of one DP answer.
    pub dp_deadline: Duration,
    /// Serve private studies as their leader or helper aggregator.
    pub aggregator: Option<crate::AggregatorConfig>,
    /// Store everything in this PostgreSQL database (shared by every
    /// replica) instead of the data directory's sled database.
    pub database: Option<DatabaseUrl>,
}

pub(crate) fn db_dir(data: &Path) -> PathBuf {
    data.join("db")
}

/// A PostgreSQL connection URL (`postgres://user:password@host:port/db`
/// or `host=… dbname=…`). It may hold a password, so `Debug` never prints it.
#[derive(Clone)]
pub struct DatabaseUrl(Zeroizing<String>);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(Zeroizing::new(url.into()))
    }

    /// The URL.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(..)")
    }
}

/// Never fails: an argument parser's error would quote the value (and a
/// password in it). A URL that does not parse is refused when the store
/// opens, without echoing it.
impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

/// The backend `data` was initialized for.
fn backend_of(data: &Path) -> Result<&'static str, ServeError> {
    match fs::read(data.join(BACKEND_FILE)) {
        Ok(b) if b == b"postgres\n" => Ok("postgres"),
        Ok(b) if b == b"sled\n" => Ok("sled"),
        Ok(_) => Err(ServeError::Init("corrupt DATA/backend file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok("sled"),
        Err(e) => Err(io_err("reading DATA/backend")(e)),
    }
}

/// Both store traits (every backend implements both).
pub(crate) trait Backend: Store + StudyStore {}
impl<T: Store + StudyStore> Backend for T {}

/// Opens `data`'s store for an operator command run without the server:
/// its sled database (the server must be stopped: sled admits one
/// process), or, for a data directory initialized with `init --database`,
/// the PostgreSQL database named by `MEDRELAY_DATABASE` (replicas may be
/// running).
pub(crate) fn open_offline(data: &Path) -> Result<Box<dyn Backend>, ServeError> {
    if backend_of(data)? == "postgres" {
        let url = std::env::var("MEDRELAY_DATABASE").map_err(|_| {
            ServeError::Argument(
                "this data directory belongs to a PostgreSQL deployment: set MEDRELAY_DATABASE to its \
                 database"
                    .into(),
            )
        })?;
        return Ok(Box::new(PgStore::open(&url)?));
    }
    Ok(Box::new(SledStore::open(&db_dir(data))?))
}

/// Makes every file and directory this process creates private to its user
/// (umask 077), whatever umask it was started with: sled creates its files
/// itself with the default modes. Called first by the binary, and by
/// [`init`] and [`serve`].
pub fn restrict_umask() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates `dir` (and missing parents) with mode 0700.
fn create_private_dir(dir: &Path) -> Result<(), ServeError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("creating the data directory"))
    }
    #[cfg(not(unix))]
    fs::create_dir_all(dir).map_err(io_err("creating the data directory"))
}

/// Refuses a data directory that group or others may enter, read or write.
pub(crate) fn check_private(dir: &Path) -> Result<(), ServeError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode =
            fs::metadata(dir).map_err(io_err(format!("reading {}", dir.display())))?.permissions().mode();
        if mode & 0o077 != 0 {
            let path = dir.display().to_string();
            let path = if path.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                format!("'{}'", path.replace('\'', r"'\''"))
            } else {
                path
            };
            return Err(ServeError::NotPrivate { path, mode: mode & 0o7777 });
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// `init`: creates the data directory (mode 0700, every file in it 0600),
/// the database and the log signing key, and installs the default
/// `health-basics` DP schema. Refuses to overwrite an existing key and to
/// use an existing directory others can access.
pub fn init(data: &Path) -> Result<medrelay_crypto::VerifyingKey, ServeError> {
    init_with(data, None)
}

/// [`init`], with the store in PostgreSQL when `database` is given: the
/// schema is migrated, the log signing key's public half recorded in the
/// database (every replica must hold this key: copy the data directory to
/// each replica's host), and the default schema installed.
pub fn init_with(
    data: &Path,
    database: Option<&DatabaseUrl>,
) -> Result<medrelay_crypto::VerifyingKey, ServeError> {
    restrict_umask();
    create_private_dir(data)?;
    check_private(data)?;
    let path = data.join(LOG_KEY_FILE);
    if path.exists() {
        return Err(ServeError::Init("already initialized: the log signing key exists"));
    }
    let sk = SigningKey::generate(&mut OsRng);
    let mut e = Encoder::new(LOG_KEY_MAGIC, 1);
    e.fixed(&sk.to_seed()[..]);
    let blob = Zeroizing::new(e.finish());
    match database {
        None => {
            write_private(&path, &blob, "log signing key")?;
            write_backend(data, "sled")?;
            let store = SledStore::open(&db_dir(data))?;
            crate::dp::admin::install_default_schema(&store, &Clock::System)?;
            store.flush()?;
        }
        Some(url) => {
            let store = PgStore::open(url.expose())?;
            if store.log_size()? != 0 {
                return Err(ServeError::Init(
                    "the database already holds a log: to add a replica, copy an initialized data \
                     directory (it holds the log signing key every replica needs)",
                ));
            }
            store.claim_log_key(&sk.verifying_key())?;
            write_private(&path, &blob, "log signing key")?;
            write_backend(data, "postgres")?;
            crate::dp::admin::install_default_schema(&store, &Clock::System)?;
        }
    }
    crate::study::create_aggregator_key(data)?;
    Ok(sk.verifying_key())
}

/// Whether `data` was initialized for (or migrated to) PostgreSQL.
pub(crate) fn backend_is_postgres(data: &Path) -> Result<bool, ServeError> {
    Ok(backend_of(data)? == "postgres")
}

/// Records the backend `data` serves (after a migration).
pub(crate) fn mark_backend(data: &Path, backend: &str) -> Result<(), ServeError> {
    let tmp = data.join("backend.new");
    fs::write(&tmp, format!("{backend}\n")).map_err(io_err("writing DATA/backend"))?;
    fs::rename(&tmp, data.join(BACKEND_FILE)).map_err(io_err("writing DATA/backend"))
}

fn write_backend(data: &Path, backend: &str) -> Result<(), ServeError> {
    fs::write(data.join(BACKEND_FILE), format!("{backend}\n")).map_err(io_err("writing DATA/backend"))
}

/// Creates `path` (it must not exist) readable by the owner only, writes
/// `bytes` and syncs them; `what` names the file in errors.
#[cfg(unix)]
pub(crate) fn write_private(path: &Path, bytes: &[u8], what: &str) -> Result<(), ServeError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(format!("creating the {what}")))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io_err(format!("writing the {what}")))
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, bytes: &[u8], what: &str) -> Result<(), ServeError> {
    fs::write(path, bytes).map_err(io_err(format!("writing the {what}")))
}

/// Loads the log signing key written by [`init`].
pub fn load_log_key(data: &Path) -> Result<SigningKey, ServeError> {
    let path = data.join(LOG_KEY_FILE);
    if !path.exists() {
        return Err(ServeError::Init("not initialized: run `medrelay-server init --data DIR` first"));
    }
    let blob = Zeroizing::new(fs::read(&path).map_err(io_err("reading the log signing key"))?);
    let mut d = Decoder::open(&blob, LOG_KEY_MAGIC, &[1], 64)
        .map_err(|_| ServeError::Init("corrupt log signing key"))?;
    let seed = Zeroizing::new(d.array::<32>().map_err(|_| ServeError::Init("corrupt log signing key"))?);
    d.finish().map_err(|_| ServeError::Init("corrupt log signing key"))?;
    Ok(SigningKey::from_seed(&seed))
}

fn check_enroll_args(role: Role, name: &str) -> Result<(), ServeError> {
    if role == Role::Patient {
        return Err(ServeError::Argument("patients self-register; no token needed".into()));
    }
    validate_name(name).map_err(|e| ServeError::Argument(e.to_string()))
}

/// Offline operator enrollment: stores a one-time token for `role` (hashed)
/// and returns it. Runs against the database directly, so the server must
/// not be running (sled allows one process); see [`enroll_operator`].
pub fn enroll(data: &Path, role: Role, name: &str, clock: &Clock) -> Result<Zeroizing<String>, ServeError> {
    check_enroll_args(role, name)?;
    load_log_key(data)?;
    let store = open_offline(data)?;
    enroll_in(&*store, role, name, clock)
}

/// Where [`enroll_operator`] issued the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrolledVia {
    /// Through the running server's admin socket at this path.
    AdminSocket(PathBuf),
    /// Directly in the database (no server was running).
    Database,
}

/// Operator enrollment that works whether or not the server runs: with
/// `socket`, through that admin socket; otherwise through `DATA`'s admin
/// socket if a server answers on it, else directly in the database
/// ([`enroll`]).
pub fn enroll_operator(
    data: &Path,
    socket: Option<&Path>,
    role: Role,
    name: &str,
    clock: &Clock,
) -> Result<(Zeroizing<String>, EnrolledVia), ServeError> {
    check_enroll_args(role, name)?;
    #[cfg(unix)]
    if let Some(path) = crate::ops::admin::operator_socket(data, socket)? {
        let token = crate::ops::admin::enroll_via_socket(&path, role, name)?;
        return Ok((token, EnrolledVia::AdminSocket(path)));
    }
    #[cfg(not(unix))]
    crate::ops::admin::operator_socket(data, socket)?;
    Ok((enroll(data, role, name, clock)?, EnrolledVia::Database))
}

/// [`enroll`] against an open store.
pub fn enroll_in(
    store: &dyn Store,
    role: Role,
    name: &str,
    clock: &Clock,
) -> Result<Zeroizing<String>, ServeError> {
    let (token, _) = issue_enrollment(store, role, name, clock)?;
    Ok(token)
}

/// Stores a fresh one-time token (hashed); returns it and its expiry.
pub(crate) fn issue_enrollment(
    store: &dyn Store,
    role: Role,
    name: &str,
    clock: &Clock,
) -> Result<(Zeroizing<String>, medrelay_crypto::Timestamp), StoreError> {
    let token = random_token();
    let expires_at = clock.now().plus_seconds(limits::ENROLLMENT_TTL_SECS);
    let en = Enrollment { role, name: name.to_owned(), expires_at };
    store.put_enrollment(&secret_hash(token.as_bytes()), &en)?;
    Ok((token, expires_at))
}

fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ServeError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServeError::Tls(format!("certificate {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!("no certificate in {}", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServeError::Tls(format!("key {}: {e}", key.display())))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))
}

/// `serve`: runs until SIGINT/SIGTERM, then stops accepting, lets in-flight
/// requests finish (graceful shutdown) and flushes the store.
pub async fn serve(cfg: ServeConfig) -> Result<(), ServeError> {
    restrict_umask();
    let key = load_log_key(&cfg.data)?;
    check_private(&cfg.data)?;
    let signer = medrelay_policy::LogSigner::new(&cfg.log_origin, &key)
        .map_err(|e| ServeError::Argument(format!("log origin: {e}")))?;
    match (&cfg.database, backend_of(&cfg.data)?) {
        (None, "sled") => {
            let store = SledStore::open(&db_dir(&cfg.data))?;
            serve_on(cfg, signer, store).await
        }
        (Some(url), "postgres") => {
            let store = PgStore::open(url.expose())?;
            // One log, one signer: a replica with another key is refused.
            store.claim_log_key(&key.verifying_key())?;
            serve_on(cfg, signer, store).await
        }
        (None, _) => Err(ServeError::Argument(
            "this data directory was initialized for PostgreSQL: pass --database (or MEDRELAY_DATABASE)"
                .into(),
        )),
        (Some(_), _) => Err(ServeError::Argument(
            "this data directory was initialized for sled: `init --database` makes one for PostgreSQL".into(),
        )),
    }
}

/// [`serve`] over an opened store.
async fn serve_on<S: Store + StudyStore + Clone>(
    cfg: ServeConfig,
    signer: medrelay_policy::LogSigner,
    store: S,
) -> Result<(), ServeError> {
    let postgres = cfg.database.is_some();
    // The DP summary cache's generation lives in this process: over a
    // shared database another replica's write would not invalidate it.
    let dp_cache_rows = if postgres { 0 } else { cfg.dp_cache_rows };
    let study = match &cfg.aggregator {
        Some(a) => Some(crate::StudyService::new(
            a.clone(),
            Arc::new(store.clone()),
            crate::study::load_aggregator_key(&cfg.data)?,
        )?),
        None => None,
    };
    let mut state = AppState::new(store, Clock::System, signer)
        .with_rekey_cache(cfg.rekey_cache_keys)
        .with_dp_cache(dp_cache_rows)
        .with_dp_default_budget(cfg.dp_default_budget)
        .with_quotas(cfg.quotas)
        .with_body_timeout(cfg.body_timeout)
        .with_dp_limits(cfg.dp_slots, cfg.dp_deadline);
    if let Some(s) = study {
        state = state.with_study_service(s);
    }
    // The admin socket is bound first, so that once the public port accepts
    // connections, live enrollment works too.
    let admin_listener = if cfg.admin_socket { Some(bind_admin(&cfg.data)?) } else { None };
    let server = match public_server(&cfg, &state) {
        Ok(s) => s,
        Err(e) => {
            if admin_listener.is_some() {
                remove_admin_socket(&cfg.data);
            }
            return Err(e);
        }
    };
    let admin = match admin_listener {
        Some(l) => Some(admin_server(l, &state)?),
        None => None,
    };
    let sweeper = maintenance::spawn_sweeper(state.clone(), cfg.sweep_interval);
    let study_driver = crate::study::spawn_driver(state.clone());
    tracing::info!(
        bind = %cfg.bind,
        tls = cfg.tls_cert.is_some(),
        admin_socket = cfg.admin_socket,
        store = if postgres { "postgres" } else { "sled" },
        rekey_cache_keys = cfg.rekey_cache_keys,
        dp_cache_rows,
        quotas = ?cfg.quotas,
        body_timeout_secs = cfg.body_timeout.as_secs(),
        dp_slots = cfg.dp_slots,
        dp_deadline_secs = cfg.dp_deadline.as_secs(),
        "medrelay-server listening"
    );
    let served = server.await.map_err(io_err("serving"));
    sweeper.abort();
    if let Some(d) = study_driver {
        d.abort();
    }
    if let Some((handle, task)) = admin {
        handle.stop(true).await;
        let _ = task.await;
        remove_admin_socket(&cfg.data);
    }
    // After the last request: the counts of open refusal windows go on the
    // record before the store is closed.
    let coalesced = crate::log::refusals::flush_all_refusals(&state)?;
    served?;
    state.store().flush()?;
    tracing::info!(coalesced_refusals = coalesced, "medrelay-server stopped; store flushed");
    Ok(())
}

/// The public API server, bound (plain or TLS); it serves until stopped by
/// SIGINT/SIGTERM (graceful shutdown).
fn public_server(cfg: &ServeConfig, state: &AppState) -> Result<actix_web::dev::Server, ServeError> {
    let st = state.clone();
    let server = HttpServer::new(move || app(st.clone())).shutdown_timeout(30);
    let server = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => {
            let tls = tls_config(c, k)?;
            server.bind_rustls_0_23(&cfg.bind, tls).map_err(io_err(format!("binding {}", cfg.bind)))?
        }
        (None, None) => server.bind(&cfg.bind).map_err(io_err(format!("binding {}", cfg.bind)))?,
        _ => return Err(ServeError::Argument("--tls-cert and --tls-key go together".into())),
    };
    Ok(server.run())
}

#[cfg(unix)]
type AdminListener = std::os::unix::net::UnixListener;
#[cfg(not(unix))]
type AdminListener = std::convert::Infallible;

#[cfg(unix)]
fn bind_admin(data: &Path) -> Result<AdminListener, ServeError> {
    crate::ops::admin::bind_admin_socket(data)
}

#[cfg(not(unix))]
fn bind_admin(_data: &Path) -> Result<AdminListener, ServeError> {
    Err(ServeError::Argument("the admin socket needs a Unix system; use --no-admin-socket".into()))
}

fn remove_admin_socket(data: &Path) {
    #[cfg(unix)]
    if let Err(e) = fs::remove_file(crate::ops::admin::admin_socket_path(data)) {
        tracing::warn!(error = %e, "could not remove the admin socket");
    }
    #[cfg(not(unix))]
    let _ = data;
}

/// The admin socket's server (no signal handling of its own: `serve` stops
/// it after the public server) running on a task.
#[cfg(unix)]
fn admin_server(
    listener: AdminListener,
    state: &AppState,
) -> Result<(actix_web::dev::ServerHandle, actix_web::rt::task::JoinHandle<io::Result<()>>), ServeError> {
    let st = state.clone();
    let server = HttpServer::new(move || crate::ops::admin::admin_app(st.clone()))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(5)
        .listen_uds(listener)
        .map_err(io_err("serving the admin socket"))?
        .run();
    let handle = server.handle();
    tracing::info!("admin socket listening");
    Ok((handle, actix_web::rt::spawn(server)))
}

#[cfg(not(unix))]
fn admin_server(
    listener: AdminListener,
    _state: &AppState,
) -> Result<(actix_web::dev::ServerHandle, actix_web::rt::task::JoinHandle<io::Result<()>>), ServeError> {
    match listener {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A temporary data directory, private whatever the umask (`init`
    /// refuses a directory others can read; `tempfile` follows the umask,
    /// which the server's own start-up sets to 077 only in its process).
    fn private_tempdir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        }
        dir
    }

    #[test]
    fn init_creates_a_private_key_once_and_load_checks_it() {
        let dir = private_tempdir();
        assert!(matches!(load_log_key(dir.path()), Err(ServeError::Init(_))));
        let vk = init(dir.path()).unwrap();
        assert_eq!(load_log_key(dir.path()).unwrap().verifying_key(), vk);
        assert!(matches!(init(dir.path()), Err(ServeError::Init(_))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(dir.path().join(LOG_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Corruptions are typed errors.
        let path = dir.path().join(LOG_KEY_FILE);
        let good = fs::read(&path).unwrap();
        for bad in [good[..good.len() - 1].to_vec(), [good.clone(), vec![0]].concat(), {
            let mut v = good.clone();
            v[4] = 2;
            v
        }] {
            fs::write(&path, &bad).unwrap();
            assert!(matches!(load_log_key(dir.path()), Err(ServeError::Init(_))));
        }
    }

    #[test]
    fn enroll_refuses_patients_bad_names_and_uninitialized_dirs() {
        let dir = private_tempdir();
        let clock = Clock::manual(1);
        assert!(matches!(enroll(dir.path(), Role::Doctor, "Dr A", &clock), Err(ServeError::Init(_))));
        init(dir.path()).unwrap();
        assert!(matches!(enroll(dir.path(), Role::Patient, "P", &clock), Err(ServeError::Argument(_))));
        assert!(matches!(enroll(dir.path(), Role::Doctor, "", &clock), Err(ServeError::Argument(_))));
        let t = enroll(dir.path(), Role::Doctor, "Dr A", &clock).unwrap();
        assert!(t.len() >= 43);
    }

    #[test]
    fn bad_tls_material_is_a_clear_error() {
        let dir = private_tempdir();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        assert!(matches!(tls_config(&cert, &key), Err(ServeError::Tls(_))));
        fs::write(&cert, "not a pem").unwrap();
        fs::write(&key, "not a pem").unwrap();
        assert!(matches!(tls_config(&cert, &key), Err(ServeError::Tls(_))));
    }
}
