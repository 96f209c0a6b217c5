//! `medrelay-doctor`: a thin CLI over `medrelay_client::Doctor`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use medrelay_client::cli::{self, Bar};
use medrelay_client::time::format_utc;
use medrelay_client::{ClientError, Doctor, Passphrase, ServerOptions};
use medrelay_crypto::{PrincipalId, RecordId};
use medrelay_wire::Role;

/// Read the medical records patients shared with you on medrelay.
///
/// Start with `init --enrollment-token T` (the token comes from the
/// server's operator), give your id from `whoami` to your patients, then
/// list what they `shared` and `fetch` records. Every record is checked
/// against the patient's signature before it is decrypted on this machine.
/// Your keys are stored encrypted under your passphrase
/// (MEDRELAY_PASSPHRASE, or asked on the terminal).
#[derive(Debug, Parser)]
#[command(name = "medrelay-doctor", version, about, long_about)]
struct Cli {
    /// Server URL (default: the one given at init).
    #[arg(long, global = true, env = "MEDRELAY_SERVER")]
    server: Option<String>,
    /// Profile directory [default: $HOME/.medrelay/doctor].
    #[arg(long, global = true, env = "MEDRELAY_PROFILE")]
    profile: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust for https.
    #[arg(long, global = true, env = "MEDRELAY_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create your keys and enroll with the operator's one-time token (needs --server).
    Init {
        /// The one-time token from `medrelay-server enroll-doctor`.
        #[arg(long, env = "MEDRELAY_ENROLLMENT_TOKEN", allow_hyphen_values = true)]
        enrollment_token: String,
        /// Your name as patients will see it.
        #[arg(long, default_value = "doctor")]
        name: String,
    },
    /// Show your id and key fingerprints (patients check these before granting).
    Whoami,
    /// List patients who granted you access and the records you may read now.
    Shared,
    /// Fetch, verify and decrypt one record.
    Fetch {
        /// Record id.
        id: RecordId,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Fetch every record of a patient you may read into a directory.
    FetchAll {
        /// The patient's id.
        #[arg(long)]
        patient: PrincipalId,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::finish(run(cli))
}

fn open(cli: &Cli) -> Result<Doctor, ClientError> {
    let dir = cli::profile_dir(cli.profile.clone(), Role::Doctor)?;
    let pass = Passphrase::from_env_or_prompt(false)?;
    Doctor::open(&dir, &cli::connect(cli.server.clone(), cli.ca_cert.clone()), &pass)
}

fn run(cli: Cli) -> Result<(), ClientError> {
    match &cli.command {
        Command::Init { enrollment_token, name } => {
            let dir = cli::profile_dir(cli.profile.clone(), Role::Doctor)?;
            let url = cli
                .server
                .clone()
                .ok_or_else(|| ClientError::Invalid("init needs --server URL (or MEDRELAY_SERVER)".into()))?;
            let mut server = ServerOptions::new(url);
            server.ca_cert.clone_from(&cli.ca_cert);
            let pass = Passphrase::from_env_or_prompt(true)?;
            let d = Doctor::init(&dir, &server, name, enrollment_token, &pass)?;
            show_identity(&cli, &d)
        }
        Command::Whoami => show_identity(&cli, &open(&cli)?),
        Command::Shared => {
            let shared = open(&cli)?.shared()?;
            if cli.json {
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
        Command::FetchAll { patient, out } => {
            let bar = Bar::new("fetching", cli.json);
            let report = open(&cli)?.fetch_all(patient, out, &mut |p| bar.update(p));
            bar.done();
            let report = report?;
            if cli.json {
                cli::print_json(&report)?;
            } else {
                for w in &report.written {
                    println!("{}  {}", w.path.display(), w.category);
                }
                for (id, code) in &report.denied {
                    eprintln!("denied: {id}: {code}");
                }
                for (id, why) in &report.failed {
                    eprintln!("error: {id}: {why}");
                }
                eprintln!("{} written to {}", report.written.len(), out.display());
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

fn show_identity(cli: &Cli, d: &Doctor) -> Result<(), ClientError> {
    let id = d.whoami();
    if cli.json {
        return cli::print_json(&id);
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
