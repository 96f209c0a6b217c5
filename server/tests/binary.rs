//! The real `medrelay-server` binary over real HTTP on loopback: `init`,
//! `enroll-doctor`, `serve`, registration, a bad request, graceful shutdown
//! on SIGTERM, that the data survives a restart, and live enrollment through
//! the admin socket while the server runs (with its permissions, stale
//! sockets after a crash, and `--no-admin-socket`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use medrelay_crypto::{domain, SigningKey};
use medrelay_wire::{registration_message, RegisterRequest, Role, B64};
use rand_chacha::rand_core::SeedableRng;

const BIN: &str = env!("CARGO_BIN_EXE_medrelay-server");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("RUST_LOG", "warn").output().unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(data: &Path) -> Self {
        Self::start_with(data, &[])
    }

    fn start_with(data: &Path, extra: &[&str]) -> Self {
        Self::start_under_umask(data, extra, None)
    }

    /// Starts `serve`, with `umask` set in the shell that execs it.
    fn start_under_umask(data: &Path, extra: &[&str], umask: Option<&str>) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = match umask {
            Some(m) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("umask {m}; exec \"$0\" \"$@\""), BIN]);
                c
            }
            None => Command::new(BIN),
        };
        let child = cmd
            .args(["serve", "--data", data.to_str().unwrap(), "--bind", &addr])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for an HTTP answer, not only an open port: the port accepts
        // as soon as it is bound, before the server runs and handles
        // SIGTERM (a quick `stop` would then kill it instead).
        let deadline = Instant::now() + Duration::from_secs(20);
        let healthy = |addr: &str| {
            let Ok(mut s) = TcpStream::connect(addr) else { return false };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
        };
        while !healthy(&addr) {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The port accepts as soon as it is bound; wait for an answer, so the
        // server runs (and handles SIGTERM) before a test stops it.
        let server = Server { child, addr };
        while server.request("GET", "/healthz", None).0 != 200 {
            assert!(Instant::now() < deadline, "server did not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// One HTTP/1.1 request; returns (status, body).
    fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).to_string();
        let status = text.split(' ').nth(1).unwrap().parse().unwrap();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, body)
    }

    /// Kills the server without a graceful shutdown (a crash).
    fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "server exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "server did not shut down");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn init_enroll_serve_shutdown_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();

    let out = run(&["serve", "--data", d, "--bind", "127.0.0.1:1"]);
    assert!(!out.status.success(), "serve before init must fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not initialized"));

    let out = run(&["init", "--data", d]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("log key SHA256:"));
    let again = run(&["init", "--data", d]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already initialized"));

    let out = run(&["enroll-doctor", "--data", d, "--name", "Dr Ada"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.len(), 43);
    assert!(!run(&["enroll", "--data", d, "--role", "patient", "--name", "P"]).status.success());

    let server = Server::start(&data);
    let (s, body) = server.request("GET", "/healthz", None);
    assert_eq!(s, 200, "{body}");
    // `init` installed the default DP schema: that is log entry 0.
    assert!(body.contains("\"log_size\":1"), "{body}");

    let sk = SigningKey::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(7));
    let keys = medrelay_crypto::PreKeyPair::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(8))
        .public_key()
        .to_bytes();
    let vk = sk.verifying_key();
    let req = RegisterRequest {
        role: Role::Doctor,
        name: "Dr Ada".into(),
        signing_key: vk,
        pre_public_keys: B64(keys.clone()),
        enrollment_token: Some(token),
        signature: sk
            .sign(domain::SIG_REGISTRATION, &registration_message(Role::Doctor, "Dr Ada", &vk, &keys)),
    };
    let (s, body) = server.request("POST", "/v1/principals", Some(&serde_json::to_vec(&req).unwrap()));
    assert_eq!(s, 201, "{body}");
    let (s, body) = server.request("POST", "/v1/principals", Some(b"{\"bogus\":1}"));
    assert_eq!(s, 400);
    assert!(body.contains("\"error\":\"invalid_json\""), "{body}");
    server.stop();

    // Graceful shutdown released and flushed the database: the CLI can open
    // it, and a new server still has the doctor.
    assert!(run(&["enroll", "--data", d, "--role", "auditor", "--name", "Aud"]).status.success());
    // (The directory is not public: a registered principal is one that may
    // ask for a login challenge, and its entry is in the log.)
    let server = Server::start(&data);
    let challenge = serde_json::json!({ "principal": sk.principal_id() }).to_string();
    let (s, body) = server.request("POST", "/v1/auth/challenge", Some(challenge.as_bytes()));
    assert_eq!(s, 200, "{body}");
    let (s, body) = server.request("GET", &format!("/v1/principals/{}", sk.principal_id()), None);
    assert_eq!(s, 401, "{body}");
    let (s, body) = server.request("GET", "/healthz", None);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("\"log_size\":2"), "{body}");
    server.stop();
}

fn doctor_registration(seed: u64, token: String) -> Vec<u8> {
    let sk = SigningKey::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed));
    let keys = medrelay_crypto::PreKeyPair::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed + 1))
        .public_key()
        .to_bytes();
    let vk = sk.verifying_key();
    let req = RegisterRequest {
        role: Role::Doctor,
        name: "Dr Live".into(),
        signing_key: vk,
        pre_public_keys: B64(keys.clone()),
        enrollment_token: Some(token),
        signature: sk
            .sign(domain::SIG_REGISTRATION, &registration_message(Role::Doctor, "Dr Live", &vk, &keys)),
    };
    serde_json::to_vec(&req).unwrap()
}

fn token_of(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout.clone()).unwrap().trim().to_owned();
    assert_eq!(token.len(), 43, "stdout holds the token alone");
    token
}

#[cfg(unix)]
#[test]
fn enroll_while_serving_goes_through_the_private_admin_socket() {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    assert!(run(&["init", "--data", d]).status.success());
    let socket = data.join("admin").join("admin.sock");

    let server = Server::start(&data);
    // The socket is private to the server's user.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert!(std::fs::symlink_metadata(&socket).unwrap().file_type().is_socket());
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(&data.join("admin")), 0o700);
    // The database is locked by the server, yet enrollment works, through
    // the socket, and the token registers a doctor on the running server.
    let out = run(&["enroll-doctor", "--data", d, "--name", "Dr Live"]);
    let token = token_of(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("issued by the running server"));
    let (s, body) = server.request("POST", "/v1/principals", Some(&doctor_registration(1, token.clone())));
    assert_eq!(s, 201, "{body}");
    let (s, _) = server.request("POST", "/v1/principals", Some(&doctor_registration(3, token)));
    assert_eq!(s, 401, "one time only");
    // An explicit --socket, the other roles, and the refusals.
    let s_arg = socket.to_str().unwrap();
    token_of(&run(&["enroll", "--data", d, "--socket", s_arg, "--role", "auditor", "--name", "Aud"]));
    let out = run(&["enroll", "--data", d, "--role", "patient", "--name", "P"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("patients self-register"));
    let out = run(&["enroll-doctor", "--data", d, "--socket", "/nonexistent/admin.sock", "--name", "Dr"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("connecting to /nonexistent/admin.sock"));
    // The public port serves no admin route.
    let req = br#"{"role":"doctor","name":"Dr"}"#;
    assert_eq!(server.request("POST", "/admin/v1/enrollments", Some(req)).0, 404);
    server.stop();
    assert!(!socket.exists(), "a graceful shutdown removes the socket");

    // Offline again once the server is stopped.
    let out = run(&["enroll-doctor", "--data", d, "--name", "Dr Offline"]);
    token_of(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("issued offline"));

    // After a crash the stale socket refuses connections: the CLI falls back
    // to the database, and the next server replaces the socket.
    let server = Server::start(&data);
    server.crash();
    assert!(socket.exists());
    let out = run(&["enroll-doctor", "--data", d, "--name", "Dr After Crash"]);
    token_of(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("issued offline"));
    let server = Server::start(&data);
    let out = run(&["enroll-doctor", "--data", d, "--name", "Dr Restarted"]);
    token_of(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("issued by the running server"));
    server.stop();

    // With --no-admin-socket there is no socket, and enrolling while the
    // server runs fails clearly (the database is locked) instead of hanging.
    let server = Server::start_with(&data, &["--no-admin-socket"]);
    assert!(!socket.exists());
    let out = run(&["enroll-doctor", "--data", d, "--name", "Dr"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("storage"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop();
}

/// One raw request over a fresh connection; the whole answer as text.
fn raw(addr: &str, head: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Issue 12, finding 6 over real TCP: a request whose headers arrived but
/// whose body stalls is answered 408 and its connection closed once the
/// body deadline passes (it was held forever), and a quota answers 429 with
/// `Retry-After` keyed by the real peer address.
#[test]
fn a_stalled_body_is_cut_off_and_quotas_answer_429() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(run(&["init", "--data", data.to_str().unwrap()]).status.success());
    let server =
        Server::start_with(&data, &["--body-timeout-secs", "1", "--register-rate-per-source", "1/h"]);

    let started = Instant::now();
    let head = "POST /v1/auth/challenge HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Content-Length: 1000\r\n\r\n";
    let answer = raw(&server.addr, head, b"{\"principal");
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\":\"body_timeout\""), "{answer}");
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(10), "{took:?}");
    // (read_to_end returned: the server closed the connection.)
    assert_eq!(server.request("GET", "/healthz", None).0, 200);

    // Registration attempts are counted before the body is read.
    let (s, _) = server.request("POST", "/v1/principals", Some(b"{\"bogus\":1}"));
    assert_eq!(s, 400);
    let body = b"{\"bogus\":1}";
    let head = format!(
        "POST /v1/principals HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let answer = raw(&server.addr, &head, body);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    let retry = answer
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: ").or_else(|| l.strip_prefix("Retry-After: ")))
        .expect("Retry-After");
    assert!(retry.trim().parse::<u64>().unwrap() > 3000, "{retry}");
    assert!(answer.contains("\"error\":\"rate_limited\""), "{answer}");
    server.stop();
}

/// Issue 12, finding 4: under umask 022 the server still creates a tree no
/// group or other user can read, refuses to start on a directory others
/// can access (naming the chmod that fixes it), and, when the tests run as
/// root, a second Unix user really cannot read anything in it.
#[cfg(unix)]
#[test]
fn the_data_directory_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv").join("data");
    let d = data.to_str().unwrap();
    let out =
        Command::new("sh").args(["-c", "umask 022; exec \"$0\" \"$@\"", BIN, "init", "--data", d]).output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let server = Server::start_under_umask(&data, &[], Some("022"));
    let token = token_of(&run(&["enroll-doctor", "--data", d, "--name", "Dr Umask"]));
    let (s, body) = server.request("POST", "/v1/principals", Some(&doctor_registration(11, token)));
    assert_eq!(s, 201, "{body}");
    server.stop();

    fn walk(p: &Path, out: &mut Vec<(std::path::PathBuf, u32)>) {
        let m = std::fs::symlink_metadata(p).unwrap();
        out.push((p.to_path_buf(), m.permissions().mode() & 0o777));
        if m.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), out);
            }
        }
    }
    let mut tree = Vec::new();
    walk(&data, &mut tree);
    assert!(tree.len() > 5, "{tree:?}");
    for (path, mode) in &tree {
        assert_eq!(mode & 0o077, 0, "{} is {mode:04o}", path.display());
    }
    assert_eq!(tree[0].1, 0o700);

    // A second Unix user (nobody), when the tests run as root: the control
    // file proves the switch works, then nothing in the data is readable.
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    if root && setpriv {
        let as_nobody = |args: &[&str]| {
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .args(args)
                .output()
                .unwrap()
        };
        let open =
            tempfile::Builder::new().permissions(std::fs::Permissions::from_mode(0o755)).tempdir().unwrap();
        let control = open.path().join("control.txt");
        std::fs::write(&control, b"readable").unwrap();
        std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = as_nobody(&["cat", control.to_str().unwrap()]);
        assert!(o.status.success() && o.stdout == b"readable", "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(data.parent().unwrap(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for (path, _) in &tree {
            let o = as_nobody(&["cat", path.to_str().unwrap()]);
            assert!(!o.status.success(), "nobody read {}", path.display());
        }
        let o = as_nobody(&["ls", d]);
        assert!(!o.status.success(), "nobody listed the data directory");
    } else {
        eprintln!(
            "note: not root or no setpriv: the second-user check is skipped, the mode bits were checked"
        );
    }

    // A directory others can enter is refused, with the fix in the error.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(&["serve", "--data", d, "--bind", "127.0.0.1:1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mode 0755") && err.contains(&format!("chmod -R go-rwx {d}")), "{err}");
    let fix = Command::new("sh").args(["-c", &format!("chmod -R go-rwx {d}")]).status().unwrap();
    assert!(fix.success());
    let server = Server::start(&data);
    assert_eq!(server.request("GET", "/healthz", None).0, 200);
    server.stop();
}

/// Challenge, signature, bearer token over raw HTTP; (status, token or error body).
fn login_raw(server: &Server, sk: &SigningKey) -> (u16, String) {
    let principal = sk.principal_id();
    let (s, body) = server.request(
        "POST",
        "/v1/auth/challenge",
        Some(serde_json::json!({ "principal": principal }).to_string().as_bytes()),
    );
    assert_eq!(s, 200, "{body}");
    let ch: medrelay_wire::ChallengeResponse = serde_json::from_str(&body).unwrap();
    let msg = medrelay_wire::challenge_message(&principal, ch.nonce.as_bytes());
    let req = medrelay_wire::TokenRequest {
        principal,
        nonce: ch.nonce,
        signature: sk.sign(domain::SIG_AUTH_CHALLENGE, &msg),
    };
    let (s, body) = server.request("POST", "/v1/auth/token", Some(&serde_json::to_vec(&req).unwrap()));
    if s != 200 {
        return (s, body);
    }
    (s, serde_json::from_str::<medrelay_wire::TokenResponse>(&body).unwrap().token)
}

/// Issue 12: the operator suspends a doctor through the running server's
/// admin socket (its sessions stop working at once, logins are refused),
/// and lifts it offline with the server stopped.
#[cfg(unix)]
#[test]
fn suspend_and_unsuspend_from_the_cli_live_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    assert!(run(&["init", "--data", d]).status.success());
    let token = token_of(&run(&["enroll-doctor", "--data", d, "--name", "Dr Stolen"]));
    let server = Server::start(&data);
    let (s, body) = server.request("POST", "/v1/principals", Some(&doctor_registration(21, token)));
    assert_eq!(s, 201, "{body}");
    let sk = SigningKey::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(21));
    let id = sk.principal_id().to_string();
    let (s, bearer) = login_raw(&server, &sk);
    assert_eq!(s, 200, "{bearer}");
    let grants = format!("/v1/doctors/{id}/grants");
    let authed = |server: &Server, t: &str| {
        let head = format!(
            "GET {grants} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {t}\r\n\r\n"
        );
        raw(&server.addr, &head, b"")
    };
    assert!(authed(&server, &bearer).starts_with("HTTP/1.1 200"));

    let out = run(&["suspend", "--data", d, "--principal", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("done by the running server"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("suspended doctor {id}")) && stdout.contains("1 session(s) stopped working"),
        "{stdout}"
    );
    let refused = authed(&server, &bearer);
    assert!(refused.starts_with("HTTP/1.1 403") && refused.contains("suspended"), "{refused}");
    let (s, body) = login_raw(&server, &sk);
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("\"error\":\"suspended\""), "{body}");
    let out = run(&["suspend", "--data", d, "--principal", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already suspended"));
    server.stop();

    let out = run(&["unsuspend", "--data", d, "--principal", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("done offline"));
    let out = run(&["unsuspend", "--data", d, "--principal", &id]);
    assert!(!out.status.success(), "not suspended any more");
    let server = Server::start(&data);
    assert!(authed(&server, &bearer).starts_with("HTTP/1.1 401"), "old sessions never work again");
    let (s, bearer) = login_raw(&server, &sk);
    assert_eq!(s, 200, "{bearer}");
    assert!(authed(&server, &bearer).starts_with("HTTP/1.1 200"));
    server.stop();
}
