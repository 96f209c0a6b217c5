//! The end-to-end harness: locate the workspace binaries, run a real
//! server on a free loopback port over a temp data directory, and run the
//! CLIs with a profile and passphrase.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The passphrase every test profile uses.
pub const PASS: &str = "correct horse battery staple";

/// A workspace binary next to the test executable (`target/<profile>/`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile> directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo test --workspace` does, or `cargo build --bins -p \
         medrelay-server -p medrelay-patient -p medrelay-doctor -p medrelay-auditor`)",
        path.display()
    );
    path
}

/// The sample data directory.
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data").join(name)
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A medrelay server over a temp data directory.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Server {
    /// `medrelay-server init --data DIR`.
    pub fn init() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(bin("medrelay-server"))
            .arg("init")
            .arg("--data")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert!(out.status.success(), "server init: {}", String::from_utf8_lossy(&out.stderr));
        Self { dir, port: free_port(), child: None }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// An enrollment token (server must be stopped: sled is single-process).
    pub fn enroll(&self, role: &str, name: &str) -> String {
        assert!(self.child.is_none(), "enroll while the server is stopped");
        let mut cmd = Command::new(bin("medrelay-server"));
        if role == "doctor" {
            cmd.arg("enroll-doctor");
        } else {
            cmd.args(["enroll", "--role", role]);
        }
        let out = cmd.arg("--data").arg(self.data_dir()).args(["--name", name]).output().unwrap();
        assert!(out.status.success(), "enroll: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Starts `serve` and waits until `/healthz` answers.
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts `serve` with extra arguments; with `--tls-cert` it waits for
    /// the port to accept connections instead of `/healthz`.
    pub fn start_with(&mut self, extra: &[&std::ffi::OsStr]) {
        let tls = extra.iter().any(|a| *a == "--tls-cert");
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let child = Command::new(bin("medrelay-server"))
            .arg("serve")
            .args(extra)
            .arg("--data")
            .arg(self.data_dir())
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", self.port))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let up = if tls { TcpStream::connect(("127.0.0.1", self.port)).is_ok() } else { self.healthy() };
            if up {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("server exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server did not come up: {}", self.log());
    }

    fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
            return false;
        }
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Kills the server with SIGKILL (`kill -9`: no shutdown, no flush) and
    /// reaps it.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Stops the server (SIGTERM, graceful) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a CLI run produced.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Asserts success and returns stdout.
    pub fn ok(self) -> String {
        assert_eq!(self.code, 0, "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self.stdout
    }

    /// Asserts success and parses stdout as JSON.
    pub fn json(self) -> serde_json::Value {
        let s = self.ok();
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s}"))
    }

    /// Asserts exit 1 with one `error:` line on stderr containing `needle`,
    /// and no panic or backtrace.
    pub fn fails_with(self, needle: &str) -> String {
        assert_eq!(self.code, 1, "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(
            lines.iter().any(|l| l.starts_with("error: ") && l.contains(needle)),
            "stderr: {}",
            self.stderr
        );
        assert!(!self.stderr.contains("panicked") && !self.stderr.contains("backtrace"), "{}", self.stderr);
        self.stderr
    }
}

/// One CLI user: a binary, a profile directory and a passphrase.
pub struct User {
    pub bin: PathBuf,
    pub profile: PathBuf,
    pub pass: String,
    pub home: PathBuf,
}

impl User {
    pub fn new(bin_name: &str, root: &Path, name: &str) -> Self {
        Self { bin: bin(bin_name), profile: root.join(name), pass: PASS.to_owned(), home: root.to_owned() }
    }

    /// Runs the CLI with `args` (the profile and passphrase are added).
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, &self.pass)
    }

    pub fn run_with(&self, args: &[&str], pass: &str) -> Out {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--profile")
            .arg(&self.profile)
            .env("MEDRELAY_PASSPHRASE", pass)
            .env("HOME", &self.home)
            .env_remove("MEDRELAY_SERVER")
            .env_remove("MEDRELAY_PROFILE")
            .env_remove("MEDRELAY_CA_CERT")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Flips the last byte of log entry `index` in a stopped server's sled store,
/// as someone with write access to its disk could. Entries written with
/// records or fetches are kept in segment files as runs: sled holds, under
/// the run's first index, `MSVN`, version, count u32, each entry's length
/// u32, then the reference to the run's bytes (`MSVR`, version, segment u32,
/// offset u64, length u32, SHA-256): the openings back to back, then their
/// leaf hashes. The opening is changed in the segment and
/// the reference rewritten with the new bytes' hash, so only the Merkle log
/// can tell.
pub fn tamper_log_entry(data_dir: &Path, index: u64) {
    use sha2::Digest as _;
    let db = sled::Config::new().path(data_dir.join("db")).open().unwrap();
    let upto = [&b"l/"[..], &index.to_be_bytes()].concat();
    let (key, value) = db.range(&b"l/"[..]..=&upto[..]).next_back().expect("the log entry").unwrap();
    let first = u64::from_be_bytes(key[2..].try_into().unwrap());
    let mut value = value.to_vec();
    if value.starts_with(b"MSVN") {
        let u32_at = |v: &[u8], at: usize| u32::from_be_bytes(v[at..at + 4].try_into().unwrap()) as usize;
        let count = u32_at(&value, 5);
        let lens: Vec<usize> = (0..count).map(|i| u32_at(&value, 9 + 4 * i)).collect();
        let nth = usize::try_from(index - first).unwrap();
        assert!(nth < count, "the log entry");
        let r = 9 + 4 * count;
        let segment = u32_at(&value, r + 5);
        let offset = u64::from_be_bytes(value[r + 9..r + 17].try_into().unwrap()) as usize;
        let len = u32_at(&value, r + 17);
        let path = data_dir.join("db/segments").join(format!("{segment:06}.seg"));
        let mut bytes = std::fs::read(&path).unwrap();
        let end_of_entry: usize = offset + lens[..=nth].iter().sum::<usize>();
        bytes[end_of_entry - 1] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        value[r + 21..].copy_from_slice(&sha2::Sha256::digest(&bytes[offset..offset + len]));
    } else {
        // Kept in sled: the opening, then its 32-byte leaf hash.
        assert_eq!(first, index, "the log entry");
        let last = value.len() - 33;
        value[last] ^= 0x01;
    }
    db.insert(&key, value).unwrap();
    db.flush().unwrap();
}
