//! `medrelay-server`: a thin CLI over the medrelay-server library.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use medrelay_crypto::PrincipalId;
use medrelay_server::study::{add_study, aggregator_key_json, list_studies};
use medrelay_server::suspend::{set_suspended, ChangedVia};
use medrelay_server::{
    add_schema, budget_from, enroll_operator, init_with, list_schemas, restrict_umask, serve, set_budget,
    AggregatorConfig, AggregatorToken, Clock, DatabaseUrl, DpGate, EnrolledVia, Quotas, Rate, ServeConfig,
    DEFAULT_BODY_TIMEOUT, DEFAULT_DP_CACHE_ROWS, DEFAULT_DP_DEADLINE, DEFAULT_DP_DELTA, DEFAULT_DP_EPSILON,
    DEFAULT_REKEY_CACHE_KEYS,
};
use medrelay_wire::Role;

const AFTER_HELP: &str = "\
Enrolling while the server runs: `serve` listens on a Unix-domain admin socket,
DATA/admin/admin.sock (directory mode 0700, socket mode 0600: only the server's
user and root can connect; never on the network). `enroll-doctor` and `enroll`
use it when a server answers there, and open the database directly otherwise.
Run them as the server's user. `serve --no-admin-socket` turns the socket off.
`suspend` and `unsuspend` work the same way.

Files: every file and directory the server creates is private to its user
(umask 077), and `serve` refuses a data directory that group or others can
access, naming the `chmod` that fixes it.";

#[derive(Debug, Parser)]
#[command(
    name = "medrelay-server",
    version,
    about = "medrelay policy, PRE and audit log server",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[expect(clippy::large_enum_variant, reason = "parsed once at start; `serve` has many options")]
enum Command {
    /// Create the data directory, the database and the log signing key.
    Init {
        /// Data directory.
        #[arg(long, env = "MEDRELAY_DATA")]
        data: PathBuf,
        /// Keep the store in this PostgreSQL database instead of sled
        /// (postgres://user@host:port/dbname); further replicas get a copy
        /// of the data directory.
        #[arg(long, env = "MEDRELAY_DATABASE", hide_env_values = true)]
        database: Option<DatabaseUrl>,
    },
    /// Serve the HTTP API until SIGINT/SIGTERM.
    Serve {
        /// Data directory.
        #[arg(long, env = "MEDRELAY_DATA")]
        data: PathBuf,
        /// Address to bind.
        #[arg(long, env = "MEDRELAY_BIND", default_value = "127.0.0.1:8443")]
        bind: String,
        /// PEM certificate chain (enables TLS with --tls-key).
        #[arg(long, env = "MEDRELAY_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key.
        #[arg(long, env = "MEDRELAY_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The PostgreSQL database of a deployment initialized with
        /// `init --database` (several replicas may serve one database);
        /// without it, the data directory's sled database.
        #[arg(long, env = "MEDRELAY_DATABASE", hide_env_values = true)]
        database: Option<DatabaseUrl>,
        /// Log origin: the name in signed checkpoints.
        #[arg(long, env = "MEDRELAY_LOG_ORIGIN", default_value = "medrelay.local/log")]
        log_origin: String,
        /// Do not listen on the operator admin socket DATA/admin/admin.sock
        /// (enrollment then needs the server stopped).
        #[arg(long, env = "MEDRELAY_NO_ADMIN_SOCKET")]
        no_admin_socket: bool,
        /// Re-encryption keys kept prepared in memory (one per grant and key
        /// class, ~5.3 MiB each once used: the 32-key default is ~170 MiB);
        /// 0 turns the cache off.
        #[arg(long, env = "MEDRELAY_REKEY_CACHE_KEYS", default_value_t = DEFAULT_REKEY_CACHE_KEYS)]
        rekey_cache_keys: usize,
        /// Validated DP summaries kept in memory over all schemas, so that a
        /// query does not re-read the store when no summary changed (~290
        /// bytes each for `health-basics`: the default 1,048,576 is ~300
        /// MB when full); 0 turns the cache off.
        #[arg(long, env = "MEDRELAY_DP_CACHE_ROWS", default_value_t = DEFAULT_DP_CACHE_ROWS)]
        dp_cache_rows: usize,
        /// Seconds between sweeps of expired sessions, challenges and
        /// enrollment tokens (each sweep also compacts a segment file once
        /// half of it is unreferenced).
        #[arg(long, env = "MEDRELAY_SWEEP_INTERVAL_SECS", default_value_t = 60,
              value_parser = clap::value_parser!(u64).range(1..=86_400))]
        sweep_interval_secs: u64,
        /// ε of the DP budget an analyst gets for a schema the operator set
        /// no budget for (written into the analyst's ledger on first use).
        #[arg(long, env = "MEDRELAY_DP_DEFAULT_EPSILON", default_value_t = DEFAULT_DP_EPSILON)]
        dp_default_epsilon: f64,
        /// δ of that default budget.
        #[arg(long, env = "MEDRELAY_DP_DEFAULT_DELTA", default_value_t = DEFAULT_DP_DELTA)]
        dp_default_delta: f64,
        /// No default DP budget: analysts need one set with `budget set`.
        #[arg(long, env = "MEDRELAY_DP_NO_DEFAULT_BUDGET")]
        dp_no_default_budget: bool,
        /// DP answers computed at once (default: half the cores, at least
        /// one); more queries wait for a slot until their deadline.
        #[arg(long, env = "MEDRELAY_DP_MAX_CONCURRENT", value_parser = clap::value_parser!(u16).range(1..=1024))]
        dp_max_concurrent: Option<u16>,
        /// Seconds a DP answer may take from arrival; past it the answer is
        /// abandoned uncharged (503 dp_deadline).
        #[arg(long, env = "MEDRELAY_DP_DEADLINE_SECS", default_value_t = DEFAULT_DP_DEADLINE.as_secs(),
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        dp_deadline_secs: u64,
        /// Seconds a request body has to arrive after its headers (408 past it).
        #[arg(long, env = "MEDRELAY_BODY_TIMEOUT_SECS", default_value_t = DEFAULT_BODY_TIMEOUT.as_secs(),
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        body_timeout_secs: u64,
        /// Registrations per source address (N/s, N/min, N/h, N/d, or off).
        #[arg(long, env = "MEDRELAY_REGISTER_RATE_PER_SOURCE", default_value_t = Quotas::default().register_per_source)]
        register_rate_per_source: Rate,
        /// Registrations overall, from all addresses together.
        #[arg(long, env = "MEDRELAY_REGISTER_RATE", default_value_t = Quotas::default().register_total)]
        register_rate: Rate,
        /// Login challenges and token requests per source address.
        #[arg(long, env = "MEDRELAY_LOGIN_RATE_PER_SOURCE", default_value_t = Quotas::default().login_per_source)]
        login_rate_per_source: Rate,
        /// Requests per authenticated principal.
        #[arg(long, env = "MEDRELAY_REQUEST_RATE_PER_PRINCIPAL",
              default_value_t = Quotas::default().requests_per_principal)]
        request_rate_per_principal: Rate,
        /// Serve private studies as their `leader` (the whole API plus
        /// /v1/studies; prepares reports with the helper) or their `helper`
        /// (only /v1/aggregator, for the leader). Needs --aggregator-token-file.
        #[arg(long, env = "MEDRELAY_AGGREGATOR", value_parser = ["leader", "helper"], requires = "aggregator_token_file")]
        aggregator: Option<String>,
        /// The helper's URL (leader only).
        #[arg(long, env = "MEDRELAY_HELPER_URL")]
        helper_url: Option<String>,
        /// File holding the secret token the leader and the helper share
        /// (make one with `aggregator token`).
        #[arg(long, env = "MEDRELAY_AGGREGATOR_TOKEN_FILE")]
        aggregator_token_file: Option<PathBuf>,
    },
    /// Copy a data directory's sled store into an empty PostgreSQL database
    /// (server stopped), check that the copy's log has the source's size and
    /// root, then mark the directory as a PostgreSQL deployment's (serve it
    /// with --database from then on; its sled copy is never served again).
    Migrate {
        /// The data directory whose sled store is copied.
        #[arg(long, env = "MEDRELAY_DATA")]
        from: PathBuf,
        /// The destination database, which must be empty.
        #[arg(long, env = "MEDRELAY_DATABASE", hide_env_values = true)]
        to: DatabaseUrl,
    },
    /// Reclaim all of the sled store's unreferenced segment bytes (a
    /// revoked grant's keys and stored re-encryptions, values of failed
    /// requests): copies every referenced value into a new segment file and
    /// deletes the old ones (server stopped; a running server compacts the
    /// files that are half unreferenced by itself).
    Compact {
        /// Data directory.
        #[arg(long, env = "MEDRELAY_DATA")]
        data: PathBuf,
    },
    /// Issue a one-time enrollment token for a doctor (through the running
    /// server's admin socket, or offline when no server runs).
    EnrollDoctor {
        /// Data directory.
        #[arg(long, env = "MEDRELAY_DATA")]
        data: PathBuf,
        /// The doctor's name.
        #[arg(long)]
        name: String,
        /// Use this admin socket (default: DATA/admin/admin.sock if a server
        /// answers there).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Issue a one-time enrollment token for an analyst or auditor (through
    /// the running server's admin socket, or offline).
    Enroll {
        /// Data directory.
        #[arg(long, env = "MEDRELAY_DATA")]
        data: PathBuf,
        /// analyst or auditor (or doctor).
        #[arg(long)]
        role: Role,
        /// The principal's name.
        #[arg(long)]
        name: String,
        /// Use this admin socket (default: DATA/admin/admin.sock if a server
        /// answers there).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Suspend a doctor, analyst or auditor: from now on every request and
    /// login of theirs is refused and logged (through the running server's
    /// admin socket, or offline).
    Suspend {
        /// Data directory.
        #[arg(long, env = "MEDRELAY_DATA")]
        data: PathBuf,
        /// The principal's id (64 hex digits).
        #[arg(long)]
        principal: PrincipalId,
        /// Use this admin socket (default: DATA/admin/admin.sock if a server
        /// answers there).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Lift a suspension (logged; old sessions are deleted, the principal
    /// logs in again).
    Unsuspend {
        /// Data directory.
        #[arg(long, env = "MEDRELAY_DATA")]
        data: PathBuf,
        /// The principal's id (64 hex digits).
        #[arg(long)]
        principal: PrincipalId,
        /// Use this admin socket (default: DATA/admin/admin.sock if a server
        /// answers there).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// DP summary schemas (server stopped).
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// DP analyst budgets (server stopped).
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// Private studies (server stopped): install and list study definitions.
    #[command(subcommand)]
    Study(StudyCommand),
    /// Aggregator keys and the token the leader and the helper share.
    #[command(subcommand)]
    Aggregator(AggregatorCommand),
}

#[derive(Debug, Subcommand)]
enum StudyCommand {
    /// Validate a study definition (JSON), install it and log it. Both
    /// aggregators install the same document; this data directory's HPKE key
    /// must be its leader's or its helper's.
    Add {
        /// Data directory.
        #[arg(long, env = "MEDRELAY_DATA")]
        data: PathBuf,
        /// The study document.
        file: PathBuf,
    },
    /// List the installed studies.
    List {
        /// Data directory.
        #[arg(long, env = "MEDRELAY_DATA")]
        data: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AggregatorCommand {
    /// Print this server's HPKE public key as a study document's
    /// `aggregators.leader` or `aggregators.helper` entry.
    Key {
        /// Data directory.
        #[arg(long, env = "MEDRELAY_DATA")]
        data: PathBuf,
    },
    /// Print a fresh random token for the leader and the helper to share
    /// (store it in a file readable only by the servers' user on both sides).
    Token,
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Validate a schema JSON file, install it and log it.
    Add {
        /// Data directory.
        #[arg(long, env = "MEDRELAY_DATA")]
        data: PathBuf,
        /// The schema document.
        file: PathBuf,
    },
    /// List the installed schemas.
    List {
        /// Data directory.
        #[arg(long, env = "MEDRELAY_DATA")]
        data: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum BudgetCommand {
    /// Set an analyst's total budget for a schema (spending so far is kept).
    Set {
        /// Data directory.
        #[arg(long, env = "MEDRELAY_DATA")]
        data: PathBuf,
        /// The analyst's principal id (64 hex digits).
        #[arg(long)]
        analyst: PrincipalId,
        /// The schema's name.
        #[arg(long)]
        schema: String,
        /// Total ε (pure DP, and the ε that zCDP spending converts to).
        #[arg(long, conflicts_with = "rho", required_unless_present = "rho")]
        epsilon: Option<f64>,
        /// Total as ρ (zCDP): stored as the ε that ρ gives at δ.
        #[arg(long)]
        rho: Option<f64>,
        /// δ at which zCDP spending converts to ε.
        #[arg(long, default_value_t = DEFAULT_DP_DELTA)]
        delta: f64,
    },
}

/// Most bytes read from a schema file (medrelay-dp refuses larger documents
/// anyway; this keeps a wrong path from reading a huge file).
const MAX_SCHEMA_FILE: u64 = medrelay_dp::MAX_SCHEMA_BYTES as u64 + 1;

fn read_schema_file(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    read_limited(path, MAX_SCHEMA_FILE)
}

/// Reads at most `limit` bytes of a file (the parsers refuse larger documents).
fn read_limited(path: &std::path::Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit).read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes)
}

/// Issues the token and prints it alone on stdout; says on stderr how.
fn enroll_cmd(data: &Path, socket: Option<&Path>, role: Role, name: &str) -> anyhow::Result<()> {
    let (token, via) = enroll_operator(data, socket, role, name, &Clock::System).context("enroll")?;
    match via {
        EnrolledVia::AdminSocket(p) => eprintln!("issued by the running server ({})", p.display()),
        EnrolledVia::Database => eprintln!("issued offline in {}", data.display()),
    }
    println!("{}", token.as_str());
    Ok(())
}

/// Suspends or reinstates; prints the receipt on stdout, says on stderr how.
fn suspend_cmd(
    data: &Path,
    socket: Option<&Path>,
    principal: PrincipalId,
    suspend: bool,
) -> anyhow::Result<()> {
    let what = if suspend { "suspend" } else { "unsuspend" };
    let (r, via) = set_suspended(data, socket, principal, suspend, &Clock::System).context(what)?;
    match via {
        ChangedVia::AdminSocket(p) => eprintln!("done by the running server ({})", p.display()),
        ChangedVia::Database => eprintln!("done offline in {}", data.display()),
    }
    if suspend {
        println!(
            "suspended {} {} (log index {}); {} session(s) stopped working",
            r.role, r.principal, r.log_index, r.sessions_ended
        );
    } else {
        println!("reinstated {} {} (log index {})", r.role, r.principal, r.log_index);
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    // Everything this process creates (sled's files too) is private to its
    // user, whatever umask it was started with.
    restrict_umask();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, the causes joined; no backtrace for an operator.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Init { data, database } => {
            let vk = init_with(&data, database.as_ref()).context("init")?;
            println!("initialized {}; log key {}", data.display(), vk.fingerprint());
        }
        Command::Serve {
            data,
            bind,
            tls_cert,
            tls_key,
            database,
            log_origin,
            no_admin_socket,
            rekey_cache_keys,
            dp_cache_rows,
            sweep_interval_secs,
            dp_default_epsilon,
            dp_default_delta,
            dp_no_default_budget,
            dp_max_concurrent,
            dp_deadline_secs,
            body_timeout_secs,
            register_rate_per_source,
            register_rate,
            login_rate_per_source,
            request_rate_per_principal,
            aggregator,
            helper_url,
            aggregator_token_file,
        } => {
            let aggregator = match (aggregator.as_deref(), aggregator_token_file) {
                (None, _) => None,
                (Some(role), Some(file)) => {
                    let token = AggregatorToken::from_file(&file).context("aggregator token")?;
                    Some(match (role, helper_url) {
                        ("leader", Some(helper_url)) => AggregatorConfig::Leader { helper_url, token },
                        ("leader", None) => anyhow::bail!("--aggregator leader needs --helper-url"),
                        (_, Some(_)) => anyhow::bail!("--helper-url is for the leader"),
                        (_, None) => AggregatorConfig::Helper { token },
                    })
                }
                (Some(_), None) => anyhow::bail!("--aggregator needs --aggregator-token-file"),
            };
            let dp_default_budget = if dp_no_default_budget {
                None
            } else {
                Some(
                    budget_from(Some(dp_default_epsilon), None, dp_default_delta)
                        .context("default DP budget")?,
                )
            };
            let cfg = ServeConfig {
                data,
                bind,
                tls_cert,
                tls_key,
                log_origin,
                admin_socket: !no_admin_socket,
                rekey_cache_keys,
                dp_cache_rows,
                sweep_interval: Duration::from_secs(sweep_interval_secs),
                dp_default_budget,
                quotas: Quotas {
                    register_per_source: register_rate_per_source,
                    register_total: register_rate,
                    login_per_source: login_rate_per_source,
                    requests_per_principal: request_rate_per_principal,
                },
                body_timeout: Duration::from_secs(body_timeout_secs),
                dp_slots: dp_max_concurrent.map_or_else(DpGate::default_slots, usize::from),
                dp_deadline: Duration::from_secs(dp_deadline_secs),
                aggregator,
                database,
            };
            actix_web::rt::System::new().block_on(serve(cfg)).context("serve")?;
        }
        Command::Migrate { from, to } => {
            let m = medrelay_server::migrate::migrate(&from, &to).context("migrate")?;
            let c = &m.counts;
            println!(
                "copied {} principals, {} records, {} batch capsules and stored re-encryptions, {} grants, \
                 {} log entries, {} sessions/challenges/tokens, {} DP rows, {} study rows, {} other rows",
                c.principals,
                c.records,
                c.capsules,
                c.grants,
                c.log_entries,
                c.secrets,
                c.dp,
                c.study,
                c.other
            );
            println!(
                "verified: the copy's log has {} entries and root {}, as the source's",
                m.log_size,
                hex::encode(m.root.as_bytes())
            );
            println!("{} now serves PostgreSQL: start it with `serve --database …`", from.display());
        }
        Command::Compact { data } => {
            let db = data.join("db");
            if !db.is_dir() {
                anyhow::bail!("{} holds no sled store", data.display());
            }
            let store = medrelay_server::store::SledStore::open(&db).context("opening the store")?;
            let c = store.compact_segments().context("compact")?;
            println!(
                "moved {} values; removed {} segment files; segments {} -> {} bytes",
                c.values, c.segments_removed, c.bytes_before, c.bytes_after
            );
        }
        Command::EnrollDoctor { data, name, socket } => {
            enroll_cmd(&data, socket.as_deref(), Role::Doctor, &name)?;
        }
        Command::Enroll { data, role, name, socket } => enroll_cmd(&data, socket.as_deref(), role, &name)?,
        Command::Suspend { data, principal, socket } => {
            suspend_cmd(&data, socket.as_deref(), principal, true)?
        }
        Command::Unsuspend { data, principal, socket } => {
            suspend_cmd(&data, socket.as_deref(), principal, false)?;
        }
        Command::Schema(SchemaCommand::Add { data, file }) => {
            let bytes = read_schema_file(&file)?;
            let s = add_schema(&data, &bytes).context("schema add")?;
            println!(
                "installed schema {} (sha256 {}, log index {})",
                s.name,
                hex::encode(s.sha256),
                s.log_index
            );
        }
        Command::Schema(SchemaCommand::List { data }) => {
            for s in list_schemas(&data).context("schema list")? {
                println!("{}\tsha256 {}\tlog index {}", s.name, hex::encode(s.sha256), s.log_index);
            }
        }
        Command::Study(StudyCommand::Add { data, file }) => {
            let bytes = read_limited(&file, medrelay_dp::study::MAX_STUDY_BYTES as u64 + 1)?;
            let (s, role) = add_study(&data, &bytes).context("study add")?;
            println!(
                "installed study {} as its {} (sha256 {}, log index {})",
                s.name,
                role.name(),
                hex::encode(s.sha256),
                s.log_index
            );
        }
        Command::Study(StudyCommand::List { data }) => {
            for s in list_studies(&data).context("study list")? {
                println!(
                    "{}\tschema {}\tsha256 {}\tlog index {}",
                    s.name,
                    s.schema,
                    hex::encode(s.sha256),
                    s.log_index
                );
            }
        }
        Command::Aggregator(AggregatorCommand::Key { data }) => {
            println!("{}", aggregator_key_json(&data).context("aggregator key")?);
        }
        Command::Aggregator(AggregatorCommand::Token) => {
            println!("{}", AggregatorToken::generate().expose());
        }
        Command::Budget(BudgetCommand::Set { data, analyst, schema, epsilon, rho, delta }) => {
            let budget = budget_from(epsilon, rho, delta).context("budget")?;
            let l = set_budget(&data, &analyst, &schema, budget).context("budget set")?;
            println!(
                "analyst {analyst} schema {schema}: total ε {} at δ {}; spent ε {}",
                l.budget().epsilon.get(),
                l.budget().delta.get(),
                l.spent_epsilon().context("ledger")?
            );
        }
    }
    Ok(())
}
