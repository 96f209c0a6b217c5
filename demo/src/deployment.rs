//! The servers the demo runs, all in this process on loopback ports: the
//! medrelay server (one over the embedded sled store, or one to
//! [`MAX_REPLICAS`] replicas over one PostgreSQL database) and a second
//! organization's helper aggregator for private studies (sled, its own
//! data directory and log).
//!
//! Over PostgreSQL the replicas are set up as the README's recipe says:
//! `init --database` makes replica A's data directory (the log signing key;
//! the database records its public half), and every further replica's is
//! a copy of it. The leader aggregator of private studies runs on replica
//! A only (its preparation driver is not coordinated across replicas).

use std::path::{Path, PathBuf};

use medrelay_client::{Connect, ServerOptions};
use medrelay_crypto::VerifyingKey;
use medrelay_server::{init, init_with, AggregatorConfig, AggregatorToken, DatabaseUrl, LocalServer, Quotas};

use crate::MAX_REPLICAS;

/// The log origin the servers sign checkpoints as.
const ORIGIN: &str = "medrelay.demo/log";
/// HTTP workers of each server.
const WORKERS: usize = 2;
/// Replica names, as the narration uses them.
const NAMES: [&str; MAX_REPLICAS] = ["A", "B", "C"];

/// The running servers.
pub(crate) struct Deployment {
    replicas: Vec<LocalServer>,
    dirs: Vec<PathBuf>,
    helper: LocalServer,
    helper_dir: PathBuf,
    database: Option<DatabaseUrl>,
    log_key: VerifyingKey,
}

impl Deployment {
    /// Initializes and starts everything under `root`: the helper in
    /// `root/helper`, the server in `root/server` (sled) or the replicas in
    /// `root/replica-a`, `root/replica-b`, … (PostgreSQL).
    pub(crate) fn start(
        root: &Path,
        database: Option<&DatabaseUrl>,
        replicas: usize,
        quotas: Quotas,
    ) -> Result<Self, String> {
        let replicas = replicas.clamp(1, MAX_REPLICAS);
        // A second organization runs the helper aggregator of private
        // studies; this server is their leader. They share a secret token.
        let helper_dir = root.join("helper");
        init(&helper_dir).map_err(|e| format!("helper: {e}"))?;
        let token = AggregatorToken::generate();
        let helper = LocalServer::start_with(
            &helper_dir,
            "helper.demo/log",
            1,
            Quotas::default(),
            Some(AggregatorConfig::Helper { token: token.clone() }),
        )
        .map_err(|e| format!("helper: {e}"))?;
        let leader = AggregatorConfig::Leader { helper_url: helper.url(), token };
        let Some(url) = database else {
            let dir = root.join("server");
            let log_key = init(&dir).map_err(|e| e.to_string())?;
            let server = LocalServer::start_with(&dir, ORIGIN, WORKERS, quotas, Some(leader))
                .map_err(|e| e.to_string())?;
            return Ok(Self {
                replicas: vec![server],
                dirs: vec![dir],
                helper,
                helper_dir,
                database: None,
                log_key,
            });
        };
        let dirs: Vec<PathBuf> =
            NAMES[..replicas].iter().map(|n| root.join(format!("replica-{}", n.to_lowercase()))).collect();
        let log_key = init_with(&dirs[0], Some(url)).map_err(|e| format!("replica A: {e}"))?;
        for d in &dirs[1..] {
            copy_private_dir(&dirs[0], d)?;
        }
        let mut servers = Vec::with_capacity(replicas);
        let mut leader = Some(leader);
        for (d, name) in dirs.iter().zip(NAMES) {
            let s = LocalServer::start_replica(d, url, ORIGIN, WORKERS, quotas, leader.take())
                .map_err(|e| format!("replica {name}: {e}"))?;
            servers.push(s);
        }
        Ok(Self { replicas: servers, dirs, helper, helper_dir, database: Some(url.clone()), log_key })
    }

    /// The replica a balancer would send the `i`-th client to (round robin).
    pub(crate) fn at(&self, i: usize) -> &LocalServer {
        &self.replicas[i % self.replicas.len()]
    }

    /// The name of replica `i` ("A", "B", …).
    pub(crate) fn name(&self, i: usize) -> &'static str {
        NAMES[i % self.replicas.len()]
    }

    /// " (replica B)" for the narration, or nothing with one server.
    pub(crate) fn via(&self, i: usize) -> String {
        if self.replicas.len() == 1 {
            String::new()
        } else {
            format!(" (replica {})", self.name(i))
        }
    }

    /// Client options reaching replica `i`.
    pub(crate) fn options(&self, i: usize) -> ServerOptions {
        ServerOptions::new(self.at(i).url())
    }

    /// How a profile made at another replica opens at replica `i`.
    pub(crate) fn connect(&self, i: usize) -> Connect {
        Connect { server: Some(self.at(i).url()), ca_cert: None }
    }

    /// The replica running the leader aggregator of private studies.
    pub(crate) fn leader(&self) -> &LocalServer {
        &self.replicas[0]
    }

    /// The helper aggregator.
    pub(crate) fn helper(&self) -> &LocalServer {
        &self.helper
    }

    /// The PostgreSQL database, if the store is there.
    pub(crate) fn database(&self) -> Option<&DatabaseUrl> {
        self.database.as_ref()
    }

    /// The public half of the log signing key.
    pub(crate) fn log_key(&self) -> &VerifyingKey {
        &self.log_key
    }

    /// The replicas' data directories.
    pub(crate) fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The helper's data directory.
    pub(crate) fn helper_dir(&self) -> &Path {
        &self.helper_dir
    }

    /// Stops every server (in-flight requests finish, stores flushed).
    pub(crate) fn stop(self) -> Result<(), String> {
        for (s, name) in self.replicas.into_iter().zip(NAMES) {
            s.stop().map_err(|e| format!("stopping replica {name}: {e}"))?;
        }
        self.helper.stop().map_err(|e| format!("stopping the helper: {e}"))
    }
}

/// Copies the data directory `from` to the new directory `to` (mode 0700,
/// files keep their modes): how an operator adds a replica (`cp -a`).
fn copy_private_dir(from: &Path, to: &Path) -> Result<(), String> {
    let err = |p: &Path, e: std::io::Error| format!("copying {} for a replica: {e}", p.display());
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(to).map_err(|e| err(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| err(from, e))? {
        let entry = entry.map_err(|e| err(from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| err(&src, e))?;
        if kind.is_dir() {
            copy_private_dir(&src, &dst)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst).map_err(|e| err(&src, e))?;
        }
    }
    Ok(())
}
