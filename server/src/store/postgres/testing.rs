//! Throwaway PostgreSQL clusters for tests and benchmarks: `initdb` and
//! `pg_ctl` in a temporary directory, listening on a free port of
//! 127.0.0.1 only (trust authentication, so nothing else may reach it),
//! as an unprivileged user (`initdb` refuses root: a root process runs the
//! cluster as `nobody` through `runuser`).
//!
//! A cluster is stopped and its directory removed when it is dropped, and
//! also when the process that started it ends in any way: a small guardian
//! shell process waits on a pipe whose only writer is this process, and on
//! end-of-file stops the server (SIGQUIT, immediate shutdown) and removes
//! the directory. So the cluster [`shared`] by a test binary (a static,
//! never dropped) goes away with that binary.
//!
//! A cluster may also serve TLS (`ssl=on`, [`ClusterOptions::tls`]) with a
//! certificate the test made, for the tests of `sslmode`.
//!
//! The binaries are found through `MEDRELAY_PG_BIN`, else the newest
//! `/usr/lib/postgresql/*/bin` (Debian's layout), else `PATH`.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A running throwaway cluster.
#[derive(Debug)]
pub struct TestCluster {
    port: u16,
    dir: PathBuf,
    guardian: Option<(Child, ChildStdin)>,
}

/// The user the cluster runs as when this process is root.
const UNPRIVILEGED_USER: &str = "nobody";

static SHARED: OnceLock<Result<TestCluster, String>> = OnceLock::new();
static NEXT_DB: AtomicU64 = AtomicU64::new(0);

/// The cluster this process shares among its tests (started on first use,
/// not durable: `fsync=off`). `None` (with a message on stderr) if it
/// cannot start; under `CI=true` that is a panic instead, so that the
/// PostgreSQL tests fail rather than skip in CI.
pub fn shared() -> Option<&'static TestCluster> {
    available(SHARED.get_or_init(|| TestCluster::start(false)))
}

/// A cluster (or anything started with one) that a test found started, or
/// `None` (with a message on stderr) if it did not start; under `CI=true`
/// a panic instead, so that the PostgreSQL tests fail rather than skip in
/// CI.
pub fn available<T>(started: &'static Result<T, String>) -> Option<&'static T> {
    match started {
        Ok(c) => Some(c),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and the throwaway PostgreSQL cluster did not start: {e}")
        }
        Err(e) => {
            eprintln!("!! PostgreSQL tests SKIPPED: the throwaway cluster did not start: {e}");
            None
        }
    }
}

/// How to start a [`TestCluster`].
#[derive(Debug, Default)]
pub struct ClusterOptions {
    /// Keep PostgreSQL's default `fsync=on` (for benchmarks); otherwise it
    /// is off (tests).
    pub durable: bool,
    /// Serve TLS (`ssl=on`) with this certificate, besides plaintext.
    pub tls: Option<ServerTls>,
}

/// A server certificate and its key, PEM, for a cluster with `ssl=on`.
pub struct ServerTls {
    /// The server's certificate (and any intermediates).
    pub cert_chain_pem: String,
    /// Its private key.
    pub key_pem: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls(..)")
    }
}

/// A fresh, empty database on the [`shared`] cluster: its URL.
pub fn fresh_database() -> Option<String> {
    let cluster = shared()?;
    match cluster.create_database() {
        Ok(url) => Some(url),
        Err(e) => panic!("creating a test database: {e}"),
    }
}

fn bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("MEDRELAY_PG_BIN") {
        return Some(PathBuf::from(d));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

fn tool(name: &str) -> PathBuf {
    bin_dir().map_or_else(|| PathBuf::from(name), |d| d.join(name))
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// uid and gid of `user` from /etc/passwd.
fn user_ids(user: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("reading /etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&user) && f.len() > 3)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
        .ok_or_else(|| format!("no user {user} in /etc/passwd"))
}

/// `program args` as the unprivileged user if this process is root.
fn command(program: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", UNPRIVILEGED_USER, "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

fn run(mut c: Command, what: &str) -> Result<(), String> {
    let out = c.stdin(Stdio::null()).output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

impl TestCluster {
    /// Starts a cluster; `durable` keeps PostgreSQL's default `fsync=on`
    /// (for benchmarks), otherwise it is off (tests).
    pub fn start(durable: bool) -> Result<Self, String> {
        Self::start_with(ClusterOptions { durable, tls: None })
    }

    /// Starts a cluster as `options` say.
    pub fn start_with(options: ClusterOptions) -> Result<Self, String> {
        // As root the cluster runs as `nobody`, who must reach its directory:
        // under /tmp, whatever TMPDIR says (it may be a private directory).
        let parent = if is_root() { PathBuf::from("/tmp") } else { std::env::temp_dir() };
        let dir = tempfile::Builder::new()
            .prefix("medrelay-pg-")
            .tempdir_in(parent)
            .map_err(|e| format!("temporary directory: {e}"))?
            .keep();
        match Self::start_in(&dir, &options) {
            Ok(c) => Ok(c),
            Err(e) => {
                let _ = run(
                    command(&tool("pg_ctl"), &["-D", &data_dir(&dir), "-m", "immediate", "stop"]),
                    "stop",
                );
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    fn start_in(dir: &Path, options: &ClusterOptions) -> Result<Self, String> {
        let owner = if is_root() { Some(user_ids(UNPRIVILEGED_USER)?) } else { None };
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| format!("chown: {e}"))?;
        }
        let data = data_dir(dir);
        let initdb_args = ["-D", &data, "-U", "medrelay", "-A", "trust", "-E", "UTF8", "--no-sync"];
        run(command(&tool("initdb"), &initdb_args), "initdb")?;
        let sock = dir.to_str().ok_or("temporary directory path is not UTF-8")?;
        let tls_opts = match &options.tls {
            Some(tls) => write_server_tls(dir, tls, owner)?,
            None => String::new(),
        };
        let log = format!("{sock}/server.log");
        let mut last = String::new();
        // A port found free may be taken before the server binds it: retry.
        for _ in 0..3 {
            let port = free_port()?;
            let mut opts =
                format!("-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200");
            if !options.durable {
                opts.push_str(" -c fsync=off -c full_page_writes=off");
            }
            opts.push_str(&tls_opts);
            let args = ["-D", &data, "-l", &log, "-w", "-t", "60", "-o", &opts, "start"];
            match run(command(&tool("pg_ctl"), &args), "pg_ctl start") {
                Ok(()) => {
                    let guardian = guardian(dir)?;
                    return Ok(Self { port, dir: dir.to_path_buf(), guardian: Some(guardian) });
                }
                Err(e) => {
                    last = format!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
                }
            }
        }
        Err(last)
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://medrelay@127.0.0.1:{}/{db}", self.port)
    }

    /// The cluster's directory (data, socket and server log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a fresh database; returns its URL.
    pub fn create_database(&self) -> Result<String, String> {
        let name = format!("t{}_{}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::Relaxed));
        let admin = self.url("postgres");
        let create = format!("CREATE DATABASE {name}");
        // On a plain thread: the caller may be inside an async runtime.
        std::thread::spawn(move || -> Result<(), String> {
            let mut c = postgres::Client::connect(&admin, postgres::NoTls).map_err(|e| e.to_string())?;
            c.batch_execute(&create).map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "database creation panicked".to_owned())??;
        Ok(self.url(&name))
    }
}

/// Writes `tls`'s certificate and key into `dir` (the key with mode 0600,
/// both owned by `owner`, the server's user, as PostgreSQL requires of its
/// key); returns the server options that use them.
fn write_server_tls(dir: &Path, tls: &ServerTls, owner: Option<(u32, u32)>) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    for (path, bytes, mode) in
        [(&cert, tls.cert_chain_pem.as_bytes(), 0o644), (&key, tls.key_pem.as_bytes(), 0o600)]
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        f.write_all(bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| format!("chown: {e}"))?;
        }
    }
    let (cert, key) = (cert.to_str().ok_or("path is not UTF-8")?, key.to_str().ok_or("path is not UTF-8")?);
    Ok(format!(" -c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}"))
}

fn data_dir(dir: &Path) -> String {
    dir.join("data").to_string_lossy().into_owned()
}

/// The process that stops the cluster and removes `dir` once its stdin
/// closes (when the returned handle is dropped, or this process ends).
fn guardian(dir: &Path) -> Result<(Child, ChildStdin), String> {
    const SCRIPT: &str = r#"read _ignored
pid=$(head -n 1 "$1/data/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ]; then
  kill -QUIT "$pid" 2>/dev/null
  i=0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i+1)); done
fi
rm -rf "$1""#;
    let mut child = Command::new("sh")
        .args(["-c", SCRIPT, "medrelay-pg-guardian"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the cluster guardian: {e}"))?;
    let stdin = child.stdin.take().ok_or("guardian without stdin")?;
    Ok((child, stdin))
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some((mut child, mut stdin)) = self.guardian.take() {
            let _ = stdin.write_all(b"stop\n");
            drop(stdin);
            let _ = child.wait();
        }
    }
}
