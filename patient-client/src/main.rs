//! `medrelay-patient`: a thin CLI over `medrelay_client::Patient`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use medrelay_client::cli::{self, Bar, GlobalArgs};
use medrelay_client::import::ShowLine;
use medrelay_client::time::{format_utc, parse_duration};
use medrelay_client::{ClientError, ImportRequest, Passphrase, Patient, SummaryPreview};
use medrelay_crypto::{GrantId, PrincipalId, RecordId, SensitivityLabel};
use medrelay_policy::{Purpose, Scope};
use medrelay_ui::cli::UiArgs;
use medrelay_wire::dp::{SummaryAction, SummaryDoc};
use medrelay_wire::Role;

/// Keep your medical records encrypted on medrelay and decide which doctor
/// reads what.
///
/// Start with `init` (makes your keys and registers them), then `import`
/// your FHIR files, `grant` a doctor access to part of them, and check
/// `history` to see every access. Your secret keys never leave this
/// machine; they are stored encrypted under your passphrase
/// (MEDRELAY_PASSPHRASE, or asked on the terminal).
///
/// To help research without sharing records, `contribute --schema
/// health-basics` sends a small summary derived here from your records
/// (you see it first); `withdraw` takes it back.
#[derive(Debug, Parser)]
#[command(name = "medrelay-patient", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    opts: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create your keys and register with the server (needs --server).
    Init {
        /// A name or pseudonym the doctors you grant will see.
        #[arg(long, default_value = "patient")]
        name: String,
    },
    /// Show your id and key fingerprints (hand these to your doctor).
    Whoami,
    /// Encrypt and upload FHIR R4 files and folders.
    ///
    /// Reads what patient portals and EHRs export: a Bundle of any type
    /// (a Synthea or EHR export, an International Patient Summary, a
    /// search result), one resource, or FHIR Bulk Data NDJSON (`.ndjson`,
    /// one resource per line); folders are read recursively. Every resource
    /// that can hold your data becomes an encrypted record; conformance and
    /// terminology resources are skipped, and bad entries are reported and
    /// skipped. Records are labelled sensitive (mental health, substance
    /// use, sexual health, genetics) from their codes (SNOMED CT, ICD-10-CM,
    /// ICD-9-CM, RxNorm, LOINC), their meta.security, and the labelled
    /// records they refer to; a labelled record is withheld from every grant
    /// that does not name its label. Try --dry-run first to see what would
    /// be labelled and why. Re-running an import uploads only what is new.
    Import {
        /// FHIR files (.json, .ndjson) and folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Refuse a file whole if any of its entries is bad (default: skip
        /// bad entries and report them).
        #[arg(long)]
        strict: bool,
        /// Show what would be imported and labelled, and why; upload nothing.
        #[arg(long)]
        dry_run: bool,
        /// Label every record of this import: mental-health, substance-use,
        /// sexual-health, genetics, or an HL7 code such as ETH or PSY;
        /// repeatable.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<SensitivityLabel>,
    },
    /// Encrypt and upload any other file (PDF, image, ...).
    Upload {
        /// The file.
        file: PathBuf,
        /// Category code, e.g. imaging, laboratory, clinical-note.
        #[arg(long)]
        category: String,
        /// Sensitivity label (mental-health, substance-use, sexual-health, genetics); repeatable.
        #[arg(long = "sensitive")]
        sensitive: Vec<SensitivityLabel>,
    },
    /// List your records on the server.
    Records,
    /// Decrypt one of your records.
    Read {
        /// Record id.
        id: RecordId,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Let a doctor read part of your records.
    Grant {
        /// The doctor's id (from `medrelay-doctor whoami`).
        doctor: PrincipalId,
        /// What the doctor may read, e.g. "Observation?category=laboratory,Condition".
        /// Sensitive records need e.g. "sensitive:mental-health".
        #[arg(long)]
        scope: Scope,
        /// How long, e.g. 30d, 12h, 2w.
        #[arg(long, default_value = "30d")]
        expires: String,
        /// treatment, emergency, care-management, research or patient-request.
        #[arg(long, default_value = "treatment")]
        purpose: Purpose,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// List your grants.
    Grants,
    /// Revoke a grant: the doctor can no longer fetch anything with it.
    Revoke {
        /// Grant id.
        id: GrantId,
    },
    /// Every access and denial on your records, verified against the signed log.
    History,
    /// List the research summary schemas you can contribute to (see `contribute`).
    Schemas,
    /// Show the summary `contribute` would send for a schema, without sending it.
    ///
    /// The summary is derived on this machine from your own decrypted FHIR
    /// records. With --stored, show instead what the server holds for you.
    Summary {
        /// The schema, e.g. health-basics (list them with `schemas`).
        #[arg(long)]
        schema: String,
        /// Show the summary the server stores for you (if any).
        #[arg(long)]
        stored: bool,
    },
    /// Contribute a summary of your records to differentially private statistics.
    ///
    /// Your records are decrypted here and reduced to the few values the
    /// schema asks for (e.g. birth year, latest BMI, a diabetes yes/no).
    /// Numbers outside the schema's public bounds are clamped into them. You
    /// see the summary and confirm before it is sent; only that summary
    /// leaves this machine, and analysts only ever get noisy aggregates over
    /// many patients (the server knows the summary is yours and keeps it
    /// until you withdraw it). Contributing again replaces your earlier
    /// summary; `withdraw` deletes it.
    Contribute {
        /// The schema, e.g. health-basics (list them with `schemas`).
        #[arg(long)]
        schema: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Delete the summary you contributed to a schema.
    Withdraw {
        /// The schema.
        #[arg(long)]
        schema: String,
    },
    /// Open your records in a web app served by this program on 127.0.0.1.
    ///
    /// Everything the other commands do, on pages: records, sharing with
    /// fingerprints, history, research. Your keys stay in this program; the
    /// browser signs in once with the printed link and only draws the
    /// pages. Runs until Ctrl-C or "Lock and quit".
    Ui(UiArgs),
    /// Private studies: contribute without any server seeing your summary.
    #[command(subcommand)]
    Study(StudyCommand),
}

#[derive(Debug, Subcommand)]
enum StudyCommand {
    /// List the private studies you can contribute to.
    List,
    /// Contribute to a private study.
    ///
    /// Your summary is derived here as for `contribute`, then split into two
    /// secret shares, each encrypted to one of two independent aggregators
    /// (their keys come from the study definition, checked against the
    /// signed log first). Neither aggregator alone learns anything about
    /// your values; analysts get only noisy statistics over whole batches.
    Contribute {
        /// The study's name (list them with `study list`).
        #[arg(long)]
        study: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::finish(run(cli))
}

fn open(cli: &Cli) -> Result<Patient, ClientError> {
    let dir = cli.opts.profile_dir(Role::Patient)?;
    let pass = Passphrase::from_env_or_prompt(false)?;
    Patient::open(&dir, &cli.opts.connect(), &pass)
}

fn run(cli: Cli) -> Result<(), ClientError> {
    match &cli.command {
        Command::Init { name } => {
            let dir = cli.opts.profile_dir(Role::Patient)?;
            let server = cli.opts.init_server()?;
            let pass = Passphrase::from_env_or_prompt(true)?;
            let p = Patient::init(&dir, &server, name, &pass)?;
            show_identity(&cli, &p)
        }
        Command::Whoami => show_identity(&cli, &open(&cli)?),
        Command::Import { paths, strict, dry_run, labels } => {
            let request = ImportRequest {
                paths: paths.clone(),
                strict: *strict,
                dry_run: *dry_run,
                labels: labels.clone(),
            };
            import(&cli, &open(&cli)?, &request)
        }
        Command::Upload { file, category, sensitive } => {
            match open(&cli)?.upload(file, category, sensitive)? {
                Some(id) => println!("uploaded {} as record {id}", file.display()),
                None => println!("{} is already uploaded", file.display()),
            }
            Ok(())
        }
        Command::Records => {
            let rows = open(&cli)?.records()?;
            if cli.opts.json {
                return cli::print_json(&rows);
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.record_id.to_string(),
                        r.category.clone().unwrap_or_else(|| format!("({})", r.key_class)),
                        r.size.to_string(),
                        format_utc(r.created_at),
                    ]
                })
                .collect();
            cli::print_table(&["RECORD", "CATEGORY", "BYTES", "CREATED"], &table);
            Ok(())
        }
        Command::Read { id, output } => {
            let rec = open(&cli)?.read(id)?;
            let bytes = rec.export_bytes();
            match output {
                Some(path) => medrelay_client::keystore::write_private(path, &bytes),
                None => std::io::stdout()
                    .lock()
                    .write_all(&bytes)
                    .map_err(|source| ClientError::Io { path: "<stdout>".into(), source }),
            }
        }
        Command::Grant { doctor, scope, expires, purpose, yes } => {
            let secs = parse_duration(expires)?;
            let p = open(&cli)?;
            let d = p.doctor(doctor)?;
            let pre = d.doctor_key()?.fingerprint();
            eprintln!("Doctor:   {} ({})", d.name, d.id);
            eprintln!("  signing key fingerprint: {}", d.signing_key.fingerprint());
            eprintln!("  PRE key fingerprint:     {pre}");
            eprintln!("Scope:    {scope}");
            // Review finding F6: every key class the grant delegates, and
            // what that means (a colluding server and doctor could read
            // every record of them).
            eprintln!("{}", medrelay_ui::exposure::exposure_text(scope));
            eprintln!("Purpose:  {purpose}; valid for {expires}");
            if !yes && !cli::confirm("Check the fingerprints with your doctor. Grant?")? {
                return Err(ClientError::Invalid("not granted".into()));
            }
            let g = p.grant(&d, scope, secs, *purpose)?;
            if cli.opts.json {
                return cli::print_json(&g);
            }
            println!("granted {} until {}", g.grant_id, format_utc(g.not_after));
            Ok(())
        }
        Command::Grants => {
            let grants = open(&cli)?.grants()?;
            if cli.opts.json {
                return cli::print_json(&grants);
            }
            let now = medrelay_client::time::now();
            let rows: Vec<Vec<String>> = grants
                .iter()
                .map(|g| {
                    let state = if g.revoked {
                        "revoked"
                    } else if g.active_at(now) {
                        "active"
                    } else {
                        "expired"
                    };
                    vec![
                        g.grant_id.to_string(),
                        cli::short(&g.doctor),
                        g.scope.clone(),
                        g.purpose.clone(),
                        format_utc(g.not_after),
                        state.into(),
                    ]
                })
                .collect();
            cli::print_table(&["GRANT", "DOCTOR", "SCOPE", "PURPOSE", "UNTIL", "STATE"], &rows);
            Ok(())
        }
        Command::Revoke { id } => {
            let r = open(&cli)?.revoke(id)?;
            println!("revoked {} (log entry {})", r.grant_id, r.log_index);
            Ok(())
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
                        i.doctor.map(|d| cli::short(&d)).unwrap_or_default(),
                        i.detail.clone(),
                    ]
                })
                .collect();
            cli::print_table(&["INDEX", "WHEN", "EVENT", "RECORD", "DOCTOR", "DETAIL"], &rows);
            eprintln!("{} events, each proven in the signed log of {} entries", h.items.len(), h.tree_size);
            Ok(())
        }
        Command::Schemas => {
            let schemas = open(&cli)?.schemas()?;
            if cli.opts.json {
                return cli::print_json(&schemas);
            }
            cli::print_schemas(&schemas);
            Ok(())
        }
        Command::Summary { schema, stored: true } => {
            let doc = open(&cli)?.stored_summary(schema)?;
            let Some(doc) = doc else {
                if cli.opts.json {
                    return cli::print_json(&serde_json::Value::Null);
                }
                println!("you have no summary stored for schema {schema}");
                return Ok(());
            };
            if cli.opts.json {
                return cli::print_json(&doc);
            }
            println!("Stored on the server for schema {schema}:");
            print_summary(&doc, &[], &mut std::io::stdout().lock());
            Ok(())
        }
        Command::Summary { schema, stored: false } => {
            let preview = open(&cli)?.summary(schema)?;
            if cli.opts.json {
                return cli::print_json(&preview);
            }
            show_preview(&preview, &mut std::io::stdout().lock());
            println!("(nothing was sent; `contribute --schema {schema}` sends it)");
            Ok(())
        }
        Command::Contribute { schema, yes } => {
            let p = open(&cli)?;
            let preview = p.summary(schema)?;
            if cli.opts.json {
                // JSON goes to stdout once, at the end; a person confirming
                // reads the table on stderr.
                if !yes {
                    show_preview(&preview, &mut std::io::stderr().lock());
                }
            } else {
                show_preview(&preview, &mut std::io::stdout().lock());
            }
            if !yes
                && !cli::confirm("Send this summary? Analysts only get noisy statistics over many patients.")?
            {
                return Err(ClientError::Invalid("not sent".into()));
            }
            let receipt = p.contribute(&preview)?;
            if cli.opts.json {
                return cli::print_json(&serde_json::json!({"summary": preview, "receipt": receipt}));
            }
            let what = match receipt.action {
                SummaryAction::Replaced => "replaced your earlier summary",
                _ => "submitted your summary",
            };
            println!("{what} for schema {} (log entry {})", receipt.schema, receipt.log_index);
            Ok(())
        }
        Command::Ui(args) => medrelay_ui::cli::serve(medrelay_ui::RoleApp::Patient(open(&cli)?), args),
        Command::Study(StudyCommand::List) => {
            let studies = open(&cli)?.studies()?;
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
        Command::Study(StudyCommand::Contribute { study, yes }) => {
            let p = open(&cli)?;
            let verified = p.study(study)?;
            let def = verified.definition();
            let preview = p.summary(def.schema())?;
            let mut out: Box<dyn std::io::Write> =
                if cli.opts.json { Box::new(std::io::stderr()) } else { Box::new(std::io::stdout()) };
            if !cli.opts.json || !yes {
                let _ = writeln!(
                    out,
                    "Study {} ({}), checked against the signed log.",
                    def.name(),
                    def.description()
                );
                show_preview(&preview, &mut *out);
                let _ = writeln!(
                    out,
                    "These values stay on this machine: two encrypted secret shares go to two independent \
                     aggregators, and analysts see only noisy totals of batches of at least {} reports.",
                    def.min_batch_size()
                );
            }
            drop(out);
            if !yes && !cli::confirm("Contribute?")? {
                return Err(ClientError::Invalid("not sent".into()));
            }
            let resp = p.study_contribute(&verified, &preview)?;
            if cli.opts.json {
                return cli::print_json(&serde_json::json!({"summary": preview, "upload": resp}));
            }
            println!(
                "contributed one encrypted report to study {} (log entry {})",
                resp.study, resp.log_index
            );
            Ok(())
        }
        Command::Withdraw { schema } => {
            let receipt = open(&cli)?.withdraw(schema)?;
            if cli.opts.json {
                return cli::print_json(&receipt);
            }
            println!(
                "withdrew your summary from schema {} (log entry {})",
                receipt.schema, receipt.log_index
            );
            Ok(())
        }
    }
}

/// The derived summary as a person reads it before sending it.
fn show_preview(preview: &SummaryPreview, out: &mut dyn std::io::Write) {
    let _ = writeln!(
        out,
        "Summary for schema {}, derived on this machine from {} of your FHIR records:",
        preview.schema, preview.records_used
    );
    print_summary(&preview.doc, &preview.clamped, out);
    if !preview.clamped.is_empty() {
        let _ = writeln!(
            out,
            "Clamped into the schema's public bounds: {} (the server accepts only values within them)",
            preview.clamped.join(", ")
        );
    }
}

fn print_summary(doc: &SummaryDoc, clamped: &[String], out: &mut dyn std::io::Write) {
    let width = doc.values.keys().map(|k| k.chars().count()).max().unwrap_or(0).max("FIELD".len());
    let _ = writeln!(out, "  {:<width$}  VALUE", "FIELD");
    for (name, value) in &doc.values {
        let mark = if clamped.contains(name) { "  (clamped)" } else { "" };
        let _ = writeln!(out, "  {name:<width$}  {}{mark}", cli::cell(value.as_ref()));
    }
}

fn show_identity(cli: &Cli, p: &Patient) -> Result<(), ClientError> {
    let id = p.whoami();
    if cli.opts.json {
        return cli::print_json(&id);
    }
    println!("id:                      {}", id.id);
    println!("role:                    {}", id.role);
    println!("name:                    {}", id.name);
    println!("server:                  {}", id.server);
    println!("signing key fingerprint: {}", id.signing_key_fingerprint);
    if let Some(f) = &id.pre_key_fingerprint {
        println!("PRE keys fingerprint:    {f}");
    }
    println!("profile:                 {}", id.profile.display());
    Ok(())
}

fn parse_label(text: &str) -> Result<SensitivityLabel, String> {
    medrelay_fhir::parse_label(text).ok_or_else(|| {
        format!("unknown label {text:?}: use mental-health, substance-use, sexual-health, genetics (or PSY, ETH, HIV, GDIS)")
    })
}

fn import(cli: &Cli, p: &Patient, request: &ImportRequest) -> Result<(), ClientError> {
    let bar = Bar::new(if request.dry_run { "planning" } else { "importing" }, cli.opts.json);
    let report = p.import(request, &mut |pr| bar.update(pr));
    bar.done();
    let report = report?;
    if cli.opts.json {
        let files: Vec<serde_json::Value> = report
            .files
            .iter()
            .map(|f| match &f.outcome {
                Ok(o) => {
                    let mut v = serde_json::to_value(o).unwrap_or_default();
                    v["file"] = serde_json::json!(f.path);
                    v
                }
                Err(e) => serde_json::json!({"file": f.path, "error": e.to_string()}),
            })
            .collect();
        let labels: Vec<serde_json::Value> = report
            .labels
            .iter()
            .map(|l| {
                serde_json::json!({"label": l.label, "records": l.records, "direct": l.direct,
                    "example": l.example, "example_why": l.example_why})
            })
            .collect();
        cli::print_json(&serde_json::json!({
            "dry_run": report.dry_run, "files": files, "labels": labels,
            "labelled": report.labelled, "ignored": report.ignored,
        }))?;
    } else {
        for f in &report.files {
            let o = match &f.outcome {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("error: {e}");
                    continue;
                }
            };
            let mut line = if report.dry_run {
                format!("{}: {} resources: {} records to import", f.path.display(), o.resources, o.records)
            } else {
                format!(
                    "{}: {} resources: {} uploaded, {} already present",
                    f.path.display(),
                    o.resources,
                    o.uploaded.len(),
                    o.already_present.len()
                )
            };
            for (n, what) in [
                (o.skipped.len(), "skipped"),
                (o.duplicates.len(), "duplicates"),
                (o.problems.len(), "bad entries"),
            ] {
                if n > 0 {
                    line.push_str(&format!(", {n} {what}"));
                }
            }
            println!("{line}");
            for s in &o.skipped {
                println!("  skipped {}", s.line());
            }
            for d in &o.duplicates {
                println!("  duplicate {}", d.line());
            }
            for w in &o.warnings {
                eprintln!("warning: {}: {w}", f.path.display());
            }
            for pr in &o.problems {
                eprintln!("bad entry: {}: {}", f.path.display(), pr.line());
            }
        }
        for i in &report.ignored {
            println!("  not read (not .json or .ndjson): {}", i.display());
        }
        if report.labels.is_empty() {
            println!("labelled: none (no code of these records is in medrelay's sensitivity table)");
        }
        for l in &report.labels {
            let through = l.records - l.direct;
            let more = if through > 0 { format!("; {through} through references") } else { String::new() };
            println!(
                "labelled {}: {} record{}, e.g. {} ({}){more}",
                l.label,
                l.records,
                if l.records == 1 { "" } else { "s" },
                l.example,
                l.example_why
            );
        }
        if report.dry_run {
            for r in &report.labelled {
                println!("  {}  {}", r.resource, r.reasons.join("; "));
            }
            println!(
                "dry run: nothing was encrypted or uploaded ({} records would be; a labelled record is withheld \
                 from every grant that does not name its label)",
                report.records()
            );
        }
    }
    if report.failed() > 0 || report.problems() > 0 {
        return Err(ClientError::Invalid(format!(
            "{} of {} files refused, {} bad entries skipped",
            report.failed(),
            report.files.len(),
            report.problems()
        )));
    }
    Ok(())
}
