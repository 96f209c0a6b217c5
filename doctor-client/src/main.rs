//! `medrelay-doctor`: a thin CLI over `medrelay_client::Doctor`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use medrelay_client::cli::{self, Bar, GlobalArgs};
use medrelay_client::dp::{build_query, read_query_file, QueryArgs};
use medrelay_client::time::format_utc;
use medrelay_client::{Analyst, ClientError, Doctor, FetchFormat, Identity, Passphrase, Profile};
use medrelay_crypto::{PrincipalId, RecordId};
use medrelay_dp::Privacy;
use medrelay_ui::cli::UiArgs;
use medrelay_ui::RoleApp;
use medrelay_wire::dp::{Accuracy, AnswerValue, BudgetStatus, DpAnswer, Mechanism, PrivacyCost};
use medrelay_wire::Role;

/// Read the medical records patients shared with you on medrelay, or, as
/// an analyst, ask differentially private questions about many patients.
///
/// Doctors: start with `init --enrollment-token T` (the token comes from
/// the server's operator), give your id from `whoami` to your patients,
/// then list what they `shared` and `fetch` records. Every record is
/// checked against the patient's signature before it is decrypted on this
/// machine.
///
/// Analysts: start with `init --analyst --enrollment-token T` (an analyst
/// token from the operator), see the `schemas` patients contribute to, then
/// `query`, e.g. `query --schema health-basics --epsilon 0.1 count --where
/// diabetes=true`. Every answer is noisy and spends part of your privacy
/// budget (`budget` shows what is left).
///
/// Your keys are stored encrypted under your passphrase
/// (MEDRELAY_PASSPHRASE, or asked on the terminal).
#[derive(Debug, Parser)]
#[command(name = "medrelay-doctor", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    opts: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create your keys and enroll with the operator's one-time token (needs --server).
    Init {
        /// The one-time token from `medrelay-server enroll-doctor` (or
        /// `medrelay-server enroll --role analyst` with --analyst).
        #[arg(long, env = "MEDRELAY_ENROLLMENT_TOKEN", allow_hyphen_values = true)]
        enrollment_token: String,
        /// Your name as patients (or the operator) will see it [default: doctor, or analyst].
        #[arg(long)]
        name: Option<String>,
        /// Create an analyst profile (DP queries) instead of a doctor one.
        #[arg(long)]
        analyst: bool,
    },
    /// Show your id and key fingerprints (patients check these before granting).
    Whoami,
    /// List patients who granted you access and the records you may read now (doctors).
    Shared,
    /// Fetch, verify and decrypt one record (doctors).
    Fetch {
        /// Record id.
        id: RecordId,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Fetch a patient's chart: every record you may read, as one FHIR Bundle (doctors).
    ///
    /// Writes OUT/bundle.json, a FHIR R4 `collection` Bundle any FHIR tool
    /// loads: every resource exactly as the patient published it, with
    /// fullUrls that keep its references resolvable. `--format ndjson`
    /// writes FHIR Bulk Data files instead (OUT/Observation.ndjson, …).
    /// Other records (PDFs, images) are written beside it. Prints what was
    /// withheld, and why, by count.
    FetchAll {
        /// The patient's id.
        #[arg(long)]
        patient: PrincipalId,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// bundle (one FHIR Bundle) or ndjson (one file per resource type).
        #[arg(long, default_value = "bundle", value_parser = ["bundle", "ndjson"])]
        format: String,
    },
    /// Your own entries in the audit log (grants, accesses served and
    /// denied, refused requests), each verified against the signed log
    /// (doctors).
    History,
    /// List the summary schemas you can query, with their fields (analysts).
    Schemas,
    /// Ask a differentially private question (analysts).
    ///
    /// Give the statistic and its field(s) at the end:
    ///   count | sum FIELD | mean FIELD | median FIELD | quantile FIELD --alpha 0.9 |
    ///   histogram FIELD [--bins 5 | --bins 18.5,25,30] | variance FIELD | std-dev FIELD |
    ///   correlation FIELD1 FIELD2
    ///
    /// Say how much privacy budget to spend with --epsilon (e.g. 0.1; more is
    /// more accurate and uses up your budget faster) or --rho (zCDP).
    /// Narrow the patients with --where (repeatable, all must hold):
    ///   --where diabetes=true   --where sex=female,other   --where bmi=18.5..25
    ///   --where 'bmi>=30'   --where birth_year=..1960   (quote > and < for the shell)
    ///
    /// Examples:
    ///   medrelay-doctor query --schema health-basics --epsilon 0.1 count --where diabetes=true
    ///   medrelay-doctor query --schema health-basics --epsilon 0.2 median bmi --where sex=female
    ///
    /// The answer is noisy: it comes with the mechanism, the noise scale and
    /// a 95% accuracy interval. A query your remaining budget cannot pay is
    /// refused and spends nothing.
    #[command(verbatim_doc_comment)]
    Query {
        /// The schema to query (list them with `schemas`).
        #[arg(long)]
        schema: String,
        /// ε to spend (pure differential privacy).
        #[arg(long, conflicts_with_all = ["rho", "query_file"])]
        epsilon: Option<f64>,
        /// ρ to spend (zero-concentrated DP; converted to ε at the budget's δ).
        #[arg(long, conflicts_with = "query_file")]
        rho: Option<f64>,
        /// A filter: FIELD=true|false, FIELD=VALUE, FIELD=V1,V2, FIELD=LOW..HIGH, FIELD>=X, FIELD<=X.
        #[arg(long = "where", value_name = "FILTER", conflicts_with = "query_file")]
        filters: Vec<String>,
        /// Which quantile for `quantile` (0..1, e.g. 0.9).
        #[arg(long, conflicts_with = "query_file")]
        alpha: Option<f64>,
        /// Histogram bins of a numeric field: a count, or edges like 18.5,25,30.
        #[arg(long, conflicts_with = "query_file")]
        bins: Option<String>,
        /// Candidate values for median/quantile (default 1024).
        #[arg(long, conflicts_with = "query_file")]
        candidates: Option<usize>,
        /// Send this raw query JSON instead (medrelay_dp's Query, see docs/DP-SERVICE.md).
        #[arg(long, value_name = "FILE")]
        query_file: Option<PathBuf>,
        /// The statistic and its field(s), e.g. `count`, `median bmi`, `correlation bmi systolic_bp`.
        #[arg(
            value_name = "STATISTIC",
            required_unless_present = "query_file",
            conflicts_with = "query_file"
        )]
        statistic: Vec<String>,
    },
    /// Show your privacy budget for a schema: total, spent and remaining ε (analysts).
    Budget {
        /// The schema.
        #[arg(long)]
        schema: String,
    },
    /// Open the web app served by this program on 127.0.0.1: your patients
    /// and their charts (doctors), or the query builder (analysts).
    ///
    /// Your keys stay in this program; the browser signs in once with the
    /// printed link and only draws the pages. Runs until Ctrl-C or "Lock
    /// and quit".
    Ui(UiArgs),
    /// Private studies: statistics from two aggregators that never see a summary (analysts).
    #[command(subcommand)]
    Study(StudyCommand),
}

#[derive(Debug, Subcommand)]
enum StudyCommand {
    /// List the private studies.
    List,
    /// The open batch, whether it reached the minimum size, and the released batches.
    Status {
        /// The study.
        #[arg(long)]
        study: String,
    },
    /// Release a batch (default: the open one): each aggregator adds its
    /// noise, and the cost is logged before anything is sent. A batch is
    /// released once, and only once it has the study's minimum of reports.
    Release {
        /// The study.
        #[arg(long)]
        study: String,
        /// The batch (default: the open one).
        #[arg(long)]
        batch: Option<u64>,
    },
    /// Counts, means, standard deviations, correlations, histograms and
    /// quantiles computed here from the released batches (all, or --batch),
    /// each with its accuracy interval. Spends nothing.
    Results {
        /// The study.
        #[arg(long)]
        study: String,
        /// Only this released batch (default: all released batches summed).
        #[arg(long)]
        batch: Option<u64>,
        /// Confidence of every interval.
        #[arg(long, default_value_t = 0.95)]
        confidence: f64,
        /// Quantiles of numeric histograms (comma-separated, default 0.25,0.5,0.75).
        #[arg(long, value_delimiter = ',')]
        quantiles: Vec<f64>,
    },
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Init { .. } => "init",
            Command::Whoami => "whoami",
            Command::Shared => "shared",
            Command::Fetch { .. } => "fetch",
            Command::FetchAll { .. } => "fetch-all",
            Command::History => "history",
            Command::Schemas => "schemas",
            Command::Query { .. } => "query",
            Command::Budget { .. } => "budget",
            Command::Ui(_) => "ui",
            Command::Study(_) => "study",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::finish(run(cli))
}

/// The profile directory for a command: `--profile`, else the default of
/// the role the command needs (`whoami`: the doctor profile if there is
/// one, else the analyst profile).
fn profile_for(cli: &Cli, role: Option<Role>) -> Result<PathBuf, ClientError> {
    match role {
        Some(r) => cli.opts.profile_dir(r),
        None if cli.opts.profile.is_some() => cli.opts.profile_dir(Role::Doctor),
        None => {
            let doctor = cli.opts.profile_dir(Role::Doctor)?;
            let analyst = cli.opts.profile_dir(Role::Analyst)?;
            Ok(if !doctor.exists() && analyst.exists() { analyst } else { doctor })
        }
    }
}

/// Refuses a command on a profile of the wrong role with one clear line,
/// before asking for the passphrase.
fn check_role(cli: &Cli, dir: &std::path::Path, needed: Role) -> Result<(), ClientError> {
    let role = Profile::open(dir)?.info().role;
    if role == needed {
        return Ok(());
    }
    let hint = match role {
        Role::Analyst => "analysts use `schemas`, `query` and `budget`",
        Role::Doctor => {
            "doctors use `shared`, `fetch`, `fetch-all` and `history`; an analyst profile is made with `init --analyst`"
        }
        Role::Patient => "use medrelay-patient with a patient profile; analysts enroll with `init --analyst`",
        Role::Auditor => "use medrelay-auditor with an auditor profile",
    };
    Err(ClientError::Invalid(format!(
        "`{}` needs {} {needed} profile, but {} is {} {role} profile ({hint})",
        cli.command.name(),
        article(needed),
        dir.display(),
        article(role),
    )))
}

fn article(role: Role) -> &'static str {
    match role {
        Role::Analyst | Role::Auditor => "an",
        Role::Patient | Role::Doctor => "a",
    }
}

fn open(cli: &Cli) -> Result<Doctor, ClientError> {
    open_in(cli, profile_for(cli, Some(Role::Doctor))?)
}

fn open_in(cli: &Cli, dir: PathBuf) -> Result<Doctor, ClientError> {
    check_role(cli, &dir, Role::Doctor)?;
    let pass = Passphrase::from_env_or_prompt(false)?;
    Doctor::open(&dir, &cli.opts.connect(), &pass)
}

fn open_analyst(cli: &Cli) -> Result<Analyst, ClientError> {
    open_analyst_in(cli, profile_for(cli, Some(Role::Analyst))?)
}

fn open_analyst_in(cli: &Cli, dir: PathBuf) -> Result<Analyst, ClientError> {
    check_role(cli, &dir, Role::Analyst)?;
    let pass = Passphrase::from_env_or_prompt(false)?;
    Analyst::open(&dir, &cli.opts.connect(), &pass)
}

fn run(cli: Cli) -> Result<(), ClientError> {
    match &cli.command {
        Command::Init { enrollment_token, name, analyst } => {
            let role = if *analyst { Role::Analyst } else { Role::Doctor };
            let dir = profile_for(&cli, Some(role))?;
            let server = cli.opts.init_server()?;
            let pass = Passphrase::from_env_or_prompt(true)?;
            let name = name.clone().unwrap_or_else(|| role.as_str().to_owned());
            let id = if *analyst {
                Analyst::init(&dir, &server, &name, enrollment_token, &pass)?.whoami()
            } else {
                Doctor::init(&dir, &server, &name, enrollment_token, &pass)?.whoami()
            };
            show_identity(&cli, &id)
        }
        Command::Whoami => {
            let dir = profile_for(&cli, None)?;
            let role = Profile::open(&dir)?.info().role;
            let pass = Passphrase::from_env_or_prompt(false)?;
            let id = match role {
                Role::Analyst => Analyst::open(&dir, &cli.opts.connect(), &pass)?.whoami(),
                Role::Doctor => Doctor::open(&dir, &cli.opts.connect(), &pass)?.whoami(),
                other => {
                    return Err(ClientError::Invalid(format!(
                        "{} is {} {other} profile: medrelay-doctor works with doctor and analyst profiles",
                        dir.display(),
                        article(other)
                    )))
                }
            };
            show_identity(&cli, &id)
        }
        Command::Ui(args) => {
            let dir = profile_for(&cli, None)?;
            let role = Profile::open(&dir)?.info().role;
            let app = match role {
                Role::Analyst => RoleApp::Analyst(open_analyst_in(&cli, dir)?),
                _ => RoleApp::Doctor(open_in(&cli, dir)?),
            };
            medrelay_ui::cli::serve(app, args)
        }
        Command::Schemas => {
            let schemas = open_analyst(&cli)?.schemas()?;
            if cli.opts.json {
                return cli::print_json(&schemas);
            }
            cli::print_schemas(&schemas);
            Ok(())
        }
        Command::Query { schema, epsilon, rho, filters, alpha, bins, candidates, query_file, statistic } => {
            let a = open_analyst(&cli)?;
            let query = match query_file {
                Some(path) => read_query_file(path)?,
                None => {
                    let args = QueryArgs {
                        statistic: statistic.clone(),
                        filters: filters.clone(),
                        epsilon: *epsilon,
                        rho: *rho,
                        alpha: *alpha,
                        bins: bins.clone(),
                        candidates: *candidates,
                    };
                    build_query(&a.schema(schema)?, &args)?
                }
            };
            let answer = a.query(schema, &query)?;
            if cli.opts.json {
                return cli::print_json(&answer);
            }
            show_answer(&answer);
            Ok(())
        }
        Command::Study(cmd) => study(&cli, cmd),
        Command::Budget { schema } => {
            let b = open_analyst(&cli)?.budget(schema)?;
            if cli.opts.json {
                return cli::print_json(&b);
            }
            show_budget(&b);
            Ok(())
        }
        Command::Shared => {
            let shared = open(&cli)?.shared()?;
            if cli.opts.json {
                return cli::print_json(&shared);
            }
            if shared.is_empty() {
                println!("no patient shares records with you now");
            }
            for p in &shared {
                println!("patient {} ({})", p.patient, p.name);
                for g in &p.grants {
                    println!(
                        "  grant {}: {} for {}, until {}",
                        g.grant_id,
                        g.scope,
                        g.purpose,
                        format_utc(g.not_after)
                    );
                }
                let rows: Vec<Vec<String>> = p
                    .records
                    .iter()
                    .map(|r| {
                        vec![
                            r.record_id.to_string(),
                            r.category.clone(),
                            r.size.to_string(),
                            format_utc(r.created_at),
                        ]
                    })
                    .collect();
                cli::print_table(&["  RECORD", "CATEGORY", "BYTES", "CREATED"], &indent(rows));
            }
            Ok(())
        }
        Command::Fetch { id, output } => {
            let f = open(&cli)?.fetch(id)?;
            let bytes = f.record.export_bytes();
            match output {
                Some(path) => {
                    medrelay_client::keystore::write_private(path, &bytes)?;
                    eprintln!(
                        "wrote {} ({}, grant {})",
                        path.display(),
                        f.record.header.category(),
                        f.grant_id
                    );
                    Ok(())
                }
                None => std::io::stdout()
                    .lock()
                    .write_all(&bytes)
                    .map_err(|source| ClientError::Io { path: "<stdout>".into(), source }),
            }
        }
        Command::History => {
            let bar = Bar::new("verifying", cli.opts.json);
            let h = open(&cli)?.history(&mut |p| bar.update(p));
            bar.done();
            let h = h?;
            if cli.opts.json {
                return cli::print_json(&h);
            }
            let rows: Vec<Vec<String>> = h
                .items
                .iter()
                .map(|i| {
                    vec![
                        i.index.to_string(),
                        format_utc(i.at),
                        i.kind.clone(),
                        i.record.map(|r| r.to_string()).unwrap_or_default(),
                        i.detail.clone(),
                    ]
                })
                .collect();
            cli::print_table(&["INDEX", "WHEN", "EVENT", "RECORD", "DETAIL"], &rows);
            eprintln!("{} events, each proven in the signed log of {} entries", h.items.len(), h.tree_size);
            Ok(())
        }
        Command::FetchAll { patient, out, format } => {
            let format = if format == "ndjson" { FetchFormat::Ndjson } else { FetchFormat::Bundle };
            let bar = Bar::new("fetching", cli.opts.json);
            let report = open(&cli)?.fetch_all(patient, out, format, &mut |p| bar.update(p));
            bar.done();
            let report = report?;
            if cli.opts.json {
                cli::print_json(&report)?;
            } else {
                let types: Vec<String> = report.by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
                match &report.bundle {
                    Some(b) => {
                        println!("wrote {}: a FHIR R4 Bundle of {} resources", b.display(), report.resources)
                    }
                    None => println!(
                        "wrote {} NDJSON files to {}: {} resources",
                        report.ndjson.len(),
                        out.display(),
                        report.resources
                    ),
                }
                if !types.is_empty() {
                    println!("  {}", types.join(", "));
                }
                for w in &report.files {
                    println!("wrote {}  {}", w.path.display(), w.category);
                }
                let withheld: Vec<String> = report
                    .withheld
                    .iter()
                    .map(|(why, n)| match why.as_str() {
                        "sensitive_excluded" => {
                            format!("{n} sensitive_excluded (labelled; your grant does not name the label)")
                        }
                        "out_of_scope" => format!("{n} out_of_scope (not in your grant's scope)"),
                        "class_not_granted" => format!(
                            "{n} class_not_granted (also coded into a key class your grant does not carry)"
                        ),
                        other => format!("{n} {other}"),
                    })
                    .collect();
                // The server lists only what a grant covers (need to know),
                // so this is empty unless the server over-shared; what it
                // listed beyond the grants was not fetched.
                if !withheld.is_empty() {
                    println!("listed beyond your grants, not fetched: {}", withheld.join(", "));
                }
                if report.unresolved_references > 0 {
                    println!(
                        "  {} references point at records not in the Bundle (not shared with you)",
                        report.unresolved_references
                    );
                }
                for (id, code) in &report.denied {
                    eprintln!("denied: {id}: {code}");
                }
                for (id, why) in &report.failed {
                    eprintln!("error: {id}: {why}");
                }
            }
            if !report.failed.is_empty() {
                return Err(ClientError::Invalid(format!(
                    "{} records failed verification or decryption",
                    report.failed.len()
                )));
            }
            Ok(())
        }
    }
}

fn indent(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|mut r| {
            if let Some(first) = r.first_mut() {
                *first = format!("  {first}");
            }
            r
        })
        .collect()
}

fn show_identity(cli: &Cli, id: &Identity) -> Result<(), ClientError> {
    if cli.opts.json {
        return cli::print_json(id);
    }
    println!("id:                      {}", id.id);
    println!("role:                    {}", id.role);
    println!("name:                    {}", id.name);
    println!("server:                  {}", id.server);
    println!("signing key fingerprint: {}", id.signing_key_fingerprint);
    if let Some(f) = &id.pre_key_fingerprint {
        println!("PRE key fingerprint:     {f}");
    }
    println!("profile:                 {}", id.profile.display());
    Ok(())
}

fn cost_text(cost: &PrivacyCost) -> String {
    match cost {
        PrivacyCost::Epsilon(e) => format!("ε = {}", num(*e)),
        PrivacyCost::Rho(r) => format!("ρ = {}", num(*r)),
    }
}

fn privacy_text(privacy: &Privacy) -> String {
    match privacy {
        Privacy::Epsilon(e) => format!("ε = {}", e.get()),
        Privacy::Rho(r) => format!("ρ = {}", r.get()),
    }
}

fn mechanism_text(m: Mechanism) -> String {
    serde_json::to_value(m).ok().and_then(|v| v.as_str().map(|s| s.replace('_', " "))).unwrap_or_default()
}

/// A number for people: at most 4 decimals and no trailing zeros, or
/// three significant digits for tiny values.
fn num(x: f64) -> String {
    if x != 0.0 && x.abs() < 0.001 {
        return format!("{x:.2e}");
    }
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

fn show_answer(a: &DpAnswer) {
    let ans = &a.answer;
    let statistic = serde_json::to_value(&ans.query.statistic)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
        .unwrap_or_default();
    println!(
        "{statistic} over schema {} ({}; charged {}), noisy answer:",
        ans.schema,
        privacy_text(&ans.query.privacy),
        cost_text(&ans.cost)
    );
    match &ans.value {
        AnswerValue::Scalar(x) => println!("  value:        {}", num(*x)),
        AnswerValue::Histogram(bins) => {
            let rows: Vec<Vec<String>> =
                bins.iter().map(|b| vec![format!("  {}", b.label), b.count.to_string()]).collect();
            cli::print_table(&["  BIN", "NOISY COUNT"], &rows);
        }
    }
    match &ans.accuracy {
        Accuracy::Interval { confidence, low, high, guaranteed } => println!(
            "  {}% interval: [{}, {}]{}",
            num(confidence * 100.0),
            num(*low),
            num(*high),
            if *guaranteed { "" } else { " (estimate)" }
        ),
        Accuracy::PerBin { confidence, half_width } => println!(
            "  accuracy:     every bin within ±{} ({}% confidence, all bins together)",
            num(*half_width),
            num(confidence * 100.0)
        ),
        Accuracy::Rank { confidence, within } => println!(
            "  accuracy:     at most {} patients off the target rank ({}% confidence; plus the candidate spacing)",
            num(*within),
            num(confidence * 100.0)
        ),
    }
    let rows: Vec<Vec<String>> = ans
        .components
        .iter()
        .map(|c| {
            vec![
                format!("  {}", c.name),
                mechanism_text(c.mechanism),
                num(c.scale),
                c.sensitivity.map(num).unwrap_or_else(|| "-".into()),
                cost_text(&c.cost),
                c.noisy_value.map(num).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    cli::print_table(&["  RELEASE", "MECHANISM", "SCALE", "SENSITIVITY", "COST", "NOISY VALUE"], &rows);
    let b = &a.budget;
    println!(
        "budget: remaining ε {} of {} (spent {} in {} {}; log entry {})",
        num(b.remaining_epsilon),
        num(b.total_epsilon),
        num(b.spent_epsilon),
        b.queries,
        if b.queries == 1 { "query" } else { "queries" },
        a.log_index
    );
}

fn show_budget(b: &BudgetStatus) {
    println!("schema:       {}", b.schema);
    println!("analyst:      {}", b.analyst);
    println!("total ε:      {} (zCDP ρ converts to ε at δ = {})", num(b.total_epsilon), b.delta);
    println!(
        "spent ε:      {} (pure ε {}, ρ {})",
        num(b.spent_epsilon),
        num(b.spent_pure_epsilon),
        num(b.spent_rho)
    );
    println!("remaining ε:  {}", num(b.remaining_epsilon));
    println!("queries:      {}", b.queries);
}

fn study(cli: &Cli, cmd: &StudyCommand) -> Result<(), ClientError> {
    let a = open_analyst(cli)?;
    match cmd {
        StudyCommand::List => {
            let studies = a.studies()?;
            if cli.opts.json {
                return cli::print_json(&studies);
            }
            let rows: Vec<Vec<String>> = studies
                .iter()
                .map(|s| vec![s.name.clone(), s.schema.clone(), cli::short(&s.study_sha256)])
                .collect();
            cli::print_table(&["STUDY", "SCHEMA", "DEFINITION"], &rows);
            Ok(())
        }
        StudyCommand::Status { study } => {
            let s = a.study_status(study)?;
            if cli.opts.json {
                return cli::print_json(&s);
            }
            let ready =
                if s.ready { "has reached the minimum size" } else { "has not reached the minimum size yet" };
            println!("study {}: batch {} is open and {ready}", s.study, s.open_batch);
            let released: Vec<String> = s.released.iter().map(u64::to_string).collect();
            println!(
                "released batches: {}",
                if released.is_empty() { "none".into() } else { released.join(", ") }
            );
            Ok(())
        }
        StudyCommand::Release { study, batch } => {
            let r = a.study_release(study, *batch)?;
            if cli.opts.json {
                return cli::print_json(&r);
            }
            let cost = match r.noise.cost {
                PrivacyCost::Epsilon(e) => format!("ε = {e:.3}"),
                PrivacyCost::Rho(x) => format!("ρ = {x:.4}"),
            };
            println!(
                "released batch {} of study {} (each aggregator's noise costs {cost}; logged as entry {})",
                r.batch, r.study, r.log_index
            );
            let rejected: Vec<String> =
                r.rejected.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{n} {k}")).collect();
            if !rejected.is_empty() {
                println!("reports rejected by the aggregators: {}", rejected.join(", "));
            }
            println!("see the statistics with `study results --study {}`", r.study);
            Ok(())
        }
        StudyCommand::Results { study, batch, confidence, quantiles } => {
            let q: Vec<f64> = if quantiles.is_empty() {
                medrelay_dp::study::DEFAULT_QUANTILES.to_vec()
            } else {
                quantiles.clone()
            };
            let r = a.study_results(study, *batch, *confidence, &q)?;
            if cli.opts.json {
                return cli::print_json(&r);
            }
            show_study_results(&r);
            Ok(())
        }
    }
}

fn interval(i: &medrelay_dp::study::Interval) -> String {
    format!("{:.2}  [{:.2}, {:.2}]", i.value, i.low, i.high)
}

fn show_study_results(r: &medrelay_dp::study::StudyResults) {
    println!(
        "study {}: {} released batch(es); every interval holds with {:.1}% confidence (noise of both aggregators and value quantization included)",
        r.study,
        r.releases,
        r.confidence * 100.0
    );
    let mut groups = vec![&r.overall];
    groups.extend(r.strata.iter());
    for s in groups {
        println!();
        println!("[{}]  reports: {}", s.label, interval(&s.count));
        for f in &s.fields {
            println!(
                "  {:<16} n {}   mean {}   std {}",
                f.field,
                interval(&f.count),
                interval(&f.mean),
                interval(&f.std_dev)
            );
        }
        for c in &s.correlations {
            println!("  corr({}, {})  r {}   (n {})", c.x, c.y, interval(&c.r), interval(&c.count));
        }
        for h in &s.histograms {
            let bins: Vec<String> = h.bins.iter().map(|b| format!("{} {:.0}", b.label, b.count)).collect();
            println!("  histogram {} (each bin ±{:.1}): {}", h.field, h.half_width, bins.join(", "));
            for q in &h.quantiles {
                println!("    quantile {:.2}: {:.1} (in [{}, {}])", q.alpha, q.value, q.low, q.high);
            }
        }
    }
}
