//! Helpers the three command-line clients share (feature `cli`): progress
//! bars, passphrase and connection options, plain tables, and the error
//! line and exit code convention (0 ok, 1 failure, 2 usage — clap exits 2
//! on usage errors itself).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use medrelay_wire::Role;

use crate::{default_profile_dir, ClientError, Connect, Progress, ServerOptions};

/// Runs a command body: prints an error as one line on stderr and maps it
/// to exit code 1.
pub fn finish(result: Result<(), ClientError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut err = std::io::stderr().lock();
            let line = e.to_string().replace('\n', " ");
            let _ = writeln!(err, "error: {line}");
            ExitCode::from(1)
        }
    }
}

/// The options every client takes, flattened into each CLI's arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct GlobalArgs {
    /// Server URL (default: the one given at init).
    #[arg(long, global = true, env = "MEDRELAY_SERVER")]
    pub server: Option<String>,
    /// Profile directory [default: $HOME/.medrelay/<role>].
    #[arg(long, global = true, env = "MEDRELAY_PROFILE")]
    pub profile: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust for https.
    #[arg(long, global = true, env = "MEDRELAY_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

impl GlobalArgs {
    /// The profile directory: `--profile` or `$HOME/.medrelay/<role>`.
    pub fn profile_dir(&self, role: Role) -> Result<PathBuf, ClientError> {
        match &self.profile {
            Some(p) => Ok(p.clone()),
            None => default_profile_dir(role),
        }
    }

    /// Connection overrides for an existing profile.
    pub fn connect(&self) -> Connect {
        Connect { server: self.server.clone(), ca_cert: self.ca_cert.clone() }
    }

    /// Where `init` registers: `--server` is required there.
    pub fn init_server(&self) -> Result<ServerOptions, ClientError> {
        let url = self
            .server
            .clone()
            .ok_or_else(|| ClientError::Invalid("init needs --server URL (or MEDRELAY_SERVER)".into()))?;
        let mut server = ServerOptions::new(url);
        server.ca_cert.clone_from(&self.ca_cert);
        Ok(server)
    }
}

/// A progress bar for a batch, hidden when stderr is not a terminal or
/// output is JSON.
#[derive(Debug)]
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar labelled `what`.
    pub fn new(what: &'static str, json: bool) -> Self {
        let bar = if json || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let b = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len}") {
                b.set_style(style.progress_chars("=> "));
            }
            b
        };
        bar.set_message(what);
        Self(bar)
    }

    /// Updates from a library progress report.
    pub fn update(&self, p: Progress) {
        self.0.set_length(p.total);
        self.0.set_position(p.done);
    }

    /// Removes the bar.
    pub fn done(&self) {
        self.0.finish_and_clear();
    }
}

/// Prints rows as an aligned table with a header.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line(header.iter().map(|h| (*h).to_owned()).collect()));
    for r in rows {
        let _ = writeln!(out, "{}", line(r.clone()));
    }
}

/// Prints a value as indented JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), ClientError> {
    let s = serde_json::to_string_pretty(value)
        .map_err(|e| ClientError::Protocol(format!("encoding JSON: {e}")))?;
    let _ = writeln!(std::io::stdout().lock(), "{s}");
    Ok(())
}

/// Asks a yes/no question on the terminal; `false` without a terminal.
pub fn confirm(question: &str) -> Result<bool, ClientError> {
    if !std::io::stdin().is_terminal() {
        return Err(ClientError::Invalid(
            "cannot ask for confirmation without a terminal: pass --yes".into(),
        ));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| ClientError::Invalid(format!("reading the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// A short id for tables: the first 16 hex digits.
pub fn short(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(16).collect()
}

/// A JSON value as a table cell: strings without quotes, `null` as
/// `(unknown)`.
pub fn cell(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => "(unknown)".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Prints the installed DP summary schemas with their fields, types and
/// public bounds or values.
pub fn print_schemas(schemas: &[medrelay_wire::dp::SchemaInfo]) {
    if schemas.is_empty() {
        println!("no summary schemas are installed on this server");
    }
    for (i, info) in schemas.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{}: {}", info.name, info.description);
        let rows: Vec<Vec<String>> = match crate::dp::parse_schema(info, &info.name) {
            Ok(schema) => schema
                .fields()
                .iter()
                .map(|f| {
                    let values = match &f.field_type {
                        medrelay_dp::FieldType::Bool {} => "true, false".to_owned(),
                        medrelay_dp::FieldType::Category { values } => values.join(", "),
                        medrelay_dp::FieldType::Integer { min, max }
                        | medrelay_dp::FieldType::Float { min, max } => format!("{min}..{max}"),
                    };
                    vec![
                        format!("  {}", f.name),
                        f.field_type.name().to_owned(),
                        values,
                        f.description.clone(),
                    ]
                })
                .collect(),
            Err(e) => vec![vec![format!("  (unreadable: {e})")]],
        };
        print_table(&["  FIELD", "TYPE", "VALUES", "DESCRIPTION"], &rows);
    }
}
