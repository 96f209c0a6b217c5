//! `medrelay-server`: a thin CLI over the medrelay-server library.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use medrelay_server::{enroll, init, serve, Clock, ServeConfig};
use medrelay_wire::Role;

#[derive(Debug, Parser)]
#[command(name = "medrelay-server", version, about = "medrelay policy, PRE and audit log server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the data directory, the database and the log signing key.
    Init {
        /// Data directory.
        #[arg(long, env = "MEDRELAY_DATA")]
        data: PathBuf,
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
        /// Log origin: the name in signed checkpoints.
        #[arg(long, env = "MEDRELAY_LOG_ORIGIN", default_value = "medrelay.local/log")]
        log_origin: String,
    },
    /// Issue a one-time enrollment token for a doctor (server stopped).
    EnrollDoctor {
        /// Data directory.
        #[arg(long, env = "MEDRELAY_DATA")]
        data: PathBuf,
        /// The doctor's name.
        #[arg(long)]
        name: String,
    },
    /// Issue a one-time enrollment token for an analyst or auditor.
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
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Init { data } => {
            let vk = init(&data).context("init")?;
            println!("initialized {}; log key {}", data.display(), vk.fingerprint());
        }
        Command::Serve { data, bind, tls_cert, tls_key, log_origin } => {
            let cfg = ServeConfig { data, bind, tls_cert, tls_key, log_origin };
            actix_web::rt::System::new().block_on(serve(cfg)).context("serve")?;
        }
        Command::EnrollDoctor { data, name } => {
            let t = enroll(&data, Role::Doctor, &name, &Clock::System).context("enroll-doctor")?;
            println!("{}", t.as_str());
        }
        Command::Enroll { data, role, name } => {
            let t = enroll(&data, role, &name, &Clock::System).context("enroll")?;
            println!("{}", t.as_str());
        }
    }
    Ok(())
}
