//! `medrelay-demo`: a thin CLI over [`medrelay_demo::run`].

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use medrelay_demo::{run, DemoOptions, DEFAULT_COHORT, MAX_REPLICAS};
use medrelay_server::DatabaseUrl;

/// Play the whole medrelay story on in-process servers, narrated: a patient
/// imports FHIR records and grants a doctor lab results, the doctor reads
/// them and is refused the rest, revocation, access history, an auditor's
/// checks, a DP study, and a scan of the servers' storage for plaintext.
/// Exits non-zero if any step does not behave as told.
#[derive(Debug, Parser)]
#[command(name = "medrelay-demo", version)]
struct Cli {
    /// Keep everything in this (absent or empty) directory instead of a
    /// temporary one: server data in DIR/server, profiles in DIR/profiles.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Synthetic patients generated for the DP study (besides the three
    /// bundled ones).
    #[arg(long, default_value_t = DEFAULT_COHORT, value_parser = clap::value_parser!(u16).range(0..=500))]
    cohort: u16,
    /// Keep the server's store in this PostgreSQL database
    /// (postgres://user@host:port/dbname; it must hold no medrelay log yet)
    /// instead of the embedded sled database.
    #[arg(long)]
    database: Option<DatabaseUrl>,
    /// Server replicas over the one database, each role's client sent to
    /// one of them as a balancer would (more than one needs --database).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=MAX_REPLICAS as i64))]
    replicas: u8,
}

fn main() -> std::process::ExitCode {
    // Everything the demo's servers create is private to this user.
    medrelay_server::restrict_umask();
    // The demo narrates on stdout; its servers log only warnings (on
    // stderr) unless RUST_LOG says otherwise.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let opts = DemoOptions {
        data: cli.data,
        cohort: usize::from(cli.cohort),
        database: cli.database,
        replicas: usize::from(cli.replicas),
        ..DemoOptions::default()
    };
    match run(&opts, &mut std::io::stdout().lock()).context("the demo failed") {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
