//! What the HTTP load benchmarks share: a minimal HTTP/1.1 client (one
//! connection per request, so every request pays the same), registration
//! and login as a real client does them, and a server on a free loopback
//! port.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use medrelay_crypto::{domain, SigningKey};
use medrelay_server::{app, AppState};
use medrelay_wire::{
    challenge_message, registration_message, ChallengeResponse, RegisterRequest, Role, TokenRequest,
    TokenResponse, B64,
};

/// One request; returns (status, body).
pub fn request(addr: &str, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = std::str::from_utf8(&raw[9..12]).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}

/// POSTs JSON and insists on 200 or 201; returns the body.
pub fn post_json<T: serde::Serialize>(addr: &str, path: &str, token: Option<&str>, body: &T) -> Vec<u8> {
    let (s, b) = request(addr, "POST", path, token, &serde_json::to_vec(body).unwrap());
    assert!(s == 200 || s == 201, "{path}: {s} {}", String::from_utf8_lossy(&b));
    b
}

/// Registers `sk` as `role` with PRE public keys `keys`.
pub fn register(addr: &str, sk: &SigningKey, role: Role, keys: Vec<u8>, token: Option<String>) {
    let vk = sk.verifying_key();
    let sig = sk.sign(domain::SIG_REGISTRATION, &registration_message(role, "bench", &vk, &keys));
    let req = RegisterRequest {
        role,
        name: "bench".into(),
        signing_key: vk,
        pre_public_keys: B64(keys),
        enrollment_token: token,
        signature: sig,
    };
    post_json(addr, "/v1/principals", None, &req);
}

/// Challenge, signature, bearer token.
pub fn login(addr: &str, sk: &SigningKey) -> String {
    let principal = sk.principal_id();
    let ch: ChallengeResponse = serde_json::from_slice(&post_json(
        addr,
        "/v1/auth/challenge",
        None,
        &serde_json::json!({ "principal": principal }),
    ))
    .unwrap();
    let sig = sk.sign(domain::SIG_AUTH_CHALLENGE, &challenge_message(&principal, ch.nonce.as_bytes()));
    let t: TokenResponse = serde_json::from_slice(&post_json(
        addr,
        "/v1/auth/token",
        None,
        &TokenRequest { principal, nonce: ch.nonce, signature: sig },
    ))
    .unwrap();
    t.token
}

/// Serves `state` on a fresh loopback port with 2 workers; returns the address.
pub fn serve(state: AppState) -> String {
    let addr =
        format!("127.0.0.1:{}", TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let bind = addr.clone();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            actix_web::HttpServer::new(move || app(state.clone()))
                .workers(2)
                .bind(&bind)
                .unwrap()
                .run()
                .await
                .unwrap();
        });
    });
    while TcpStream::connect(&addr).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    addr
}
