//! `medrelay-auditor`: a thin CLI over `medrelay_client::Auditor`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use medrelay_client::cli::{self, Bar, GlobalArgs};
use medrelay_client::time::format_utc;
use medrelay_client::{Auditor, ClientError, Filter, Passphrase};
use medrelay_crypto::PrincipalId;
use medrelay_wire::Role;

/// Check that the medrelay audit log is append-only and review grants and
/// accesses.
///
/// `init --enrollment-token T` pins the log's signing key and stores the
/// first checkpoint. Run `verify` regularly: it checks the newest
/// checkpoint's signature, proves it extends the one stored last time, and
/// checks that every entry the server serves hashes to the signed root. A
/// server that rewrote history fails loudly (exit 1).
#[derive(Debug, Parser)]
#[command(name = "medrelay-auditor", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    opts: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a signing key, enroll, pin the log key and store the first checkpoint (needs --server).
    Init {
        /// The one-time token from `medrelay-server enroll --role auditor`.
        #[arg(long, env = "MEDRELAY_ENROLLMENT_TOKEN", allow_hyphen_values = true)]
        enrollment_token: String,
        /// Your name.
        #[arg(long, default_value = "auditor")]
        name: String,
    },
    /// Show your id and key fingerprint.
    Whoami,
    /// Verify the newest checkpoint against the stored one and the served entries.
    Verify,
    /// Full audit: verify as `verify` does, download every entry, recompute
    /// the root, and check every registration, grant, revocation and served
    /// re-encryption against the grants the log holds. Exit 1 on any anomaly.
    Audit {
        /// Audit the whole log from entry 0 (the only mode: the audit replays
        /// every grant to judge each access).
        #[arg(long)]
        full: bool,
    },
    /// Grants recorded in the verified log.
    Grants {
        /// Only this patient.
        #[arg(long)]
        patient: Option<PrincipalId>,
        /// Only this doctor.
        #[arg(long)]
        doctor: Option<PrincipalId>,
    },
    /// Accesses served and denied, from the verified log.
    Accesses {
        /// Only this patient.
        #[arg(long)]
        patient: Option<PrincipalId>,
        /// Only this doctor.
        #[arg(long)]
        doctor: Option<PrincipalId>,
    },
    /// Open the audit web app served by this program on 127.0.0.1:
    /// verification status, the full audit, log growth, grants and accesses.
    ///
    /// The browser signs in once with the printed link. Runs until Ctrl-C
    /// or "Lock and quit".
    Ui(medrelay_ui::cli::UiArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::finish(run(cli))
}

fn open(cli: &Cli) -> Result<Auditor, ClientError> {
    let dir = cli.opts.profile_dir(Role::Auditor)?;
    let pass = Passphrase::from_env_or_prompt(false)?;
    Auditor::open(&dir, &cli.opts.connect(), &pass)
}

fn run(cli: Cli) -> Result<(), ClientError> {
    match &cli.command {
        Command::Init { enrollment_token, name } => {
            let dir = cli.opts.profile_dir(Role::Auditor)?;
            let server = cli.opts.init_server()?;
            let pass = Passphrase::from_env_or_prompt(true)?;
            let a = Auditor::init(&dir, &server, name, enrollment_token, &pass)?;
            show_identity(&cli, &a)
        }
        Command::Whoami => show_identity(&cli, &open(&cli)?),
        Command::Ui(args) => medrelay_ui::cli::serve(medrelay_ui::RoleApp::Auditor(open(&cli)?), args),
        Command::Verify => {
            let bar = Bar::new("entries", cli.opts.json);
            let r = open(&cli)?.verify(&mut |p| bar.update(p));
            bar.done();
            let r = r?;
            if cli.opts.json {
                return cli::print_json(&r);
            }
            match r.previous_size {
                Some(old) => println!(
                    "ok: log {} grew from {old} to {} entries, consistent; root {}",
                    r.origin, r.tree_size, r.root_hash
                ),
                None => println!("ok: log {} has {} entries; root {}", r.origin, r.tree_size, r.root_hash),
            }
            Ok(())
        }
        Command::Audit { full: _ } => {
            let bar = Bar::new("entries", cli.opts.json);
            let r = open(&cli)?.audit(&mut |p| bar.update(p));
            bar.done();
            let r = r?;
            if cli.opts.json {
                cli::print_json(&r)?;
            } else {
                let cp = r.checkpoint();
                println!(
                    "audited {} entries of log {} (root {})",
                    r.entries(),
                    cp.origin,
                    hex::encode(cp.root_hash.as_bytes())
                );
                let rows: Vec<Vec<String>> =
                    r.counts().iter().map(|(kind, n)| vec![(*kind).to_owned(), n.to_string()]).collect();
                cli::print_table(&["EVENT", "ENTRIES"], &rows);
                println!("active grants now: {}", r.active_grants());
                for a in r.anomalies() {
                    println!("ANOMALY {}{}", a, if a.kind().is_fatal() { " (fatal)" } else { "" });
                }
            }
            if r.is_clean() {
                if !cli.opts.json {
                    println!("ok: every access matched a valid grant; no anomaly");
                }
                Ok(())
            } else {
                Err(ClientError::LogIntegrity(format!(
                    "the full audit found {} anomalies (listed above)",
                    r.anomalies().len()
                )))
            }
        }
        Command::Grants { patient, doctor } => {
            let bar = Bar::new("entries", cli.opts.json);
            let filter = Filter { patient: *patient, doctor: *doctor };
            let grants = open(&cli)?.grants(&filter, &mut |p| bar.update(p));
            bar.done();
            let grants = grants?;
            if cli.opts.json {
                return cli::print_json(&grants);
            }
            let rows: Vec<Vec<String>> = grants
                .iter()
                .map(|g| {
                    vec![
                        g.grant_id.to_string(),
                        cli::short(&g.patient),
                        cli::short(&g.doctor),
                        g.scope.clone(),
                        g.purpose.clone(),
                        format_utc(g.not_after),
                        g.revoked_at.map(format_utc).unwrap_or_else(|| "-".into()),
                        if g.signature_valid { "ok" } else { "INVALID" }.into(),
                    ]
                })
                .collect();
            cli::print_table(
                &["GRANT", "PATIENT", "DOCTOR", "SCOPE", "PURPOSE", "UNTIL", "REVOKED", "SIGNATURE"],
                &rows,
            );
            Ok(())
        }
        Command::Accesses { patient, doctor } => {
            let bar = Bar::new("entries", cli.opts.json);
            let filter = Filter { patient: *patient, doctor: *doctor };
            let items = open(&cli)?.accesses(&filter, &mut |p| bar.update(p));
            bar.done();
            let items = items?;
            if cli.opts.json {
                return cli::print_json(&items);
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|a| {
                    vec![
                        a.index.to_string(),
                        format_utc(a.at),
                        a.outcome.into(),
                        cli::short(&a.doctor),
                        a.patient.map(|p| cli::short(&p)).unwrap_or_else(|| "-".into()),
                        a.record.to_string(),
                        a.detail.clone(),
                    ]
                })
                .collect();
            cli::print_table(&["INDEX", "WHEN", "OUTCOME", "DOCTOR", "PATIENT", "RECORD", "DETAIL"], &rows);
            Ok(())
        }
    }
}

fn show_identity(cli: &Cli, a: &Auditor) -> Result<(), ClientError> {
    let id = a.whoami();
    if cli.opts.json {
        return cli::print_json(&id);
    }
    println!("id:                      {}", id.id);
    println!("role:                    {}", id.role);
    println!("name:                    {}", id.name);
    println!("server:                  {}", id.server);
    println!("signing key fingerprint: {}", id.signing_key_fingerprint);
    println!("profile:                 {}", id.profile.display());
    Ok(())
}
