//! The real `medrelay-server` binary over real HTTP on loopback: `init`,
//! `enroll-doctor`, `serve`, registration, a bad request, graceful shutdown
//! on SIGTERM, and that the data survives a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use medrelay_crypto::{domain, SigningKey};
use medrelay_wire::{registration_message, PrincipalInfo, RegisterRequest, Role, B64};
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
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(BIN)
            .args(["serve", "--data", data.to_str().unwrap(), "--bind", &addr])
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
        Server { child, addr }
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
    assert!(body.contains("\"log_size\":0"), "{body}");

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
    let server = Server::start(&data);
    let (s, body) = server.request("GET", &format!("/v1/principals/{}", sk.principal_id()), None);
    assert_eq!(s, 200, "{body}");
    let info: PrincipalInfo = serde_json::from_str(&body).unwrap();
    assert_eq!((info.role, info.log_index), (Role::Doctor, 0));
    server.stop();
}
