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
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(BIN)
            .args(["serve", "--data", data.to_str().unwrap(), "--bind", &addr])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&addr).is_err() {
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
