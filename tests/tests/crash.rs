//! Acceptance (issue 12): crash safety of the real server binary. A client
//! keeps uploading records while the server is killed with SIGKILL
//! (`kill -9`: no shutdown, no flush) and restarted, in bounded cycles.
//! Afterwards every upload the server acknowledged (201) is there, the log
//! is consistent with the checkpoint an auditor pinned before the first
//! crash, and `medrelay-auditor audit --full` passes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, User};
use medrelay_crypto::{
    domain, encrypt_record, generate_batch, KeyClass, PatientSecretKeys, RecordCategory, RecordHeader,
    RecordId, SigningKey, Timestamp,
};
use medrelay_wire::{
    challenge_message, registration_message, ChallengeResponse, RegisterRequest, Role, TokenRequest,
    TokenResponse, UploadRecordRequest, UploadRecordsResponse, B64,
};
use rand::rngs::OsRng;

/// Kill cycles; each lets the writer run 150-650 ms first.
const CYCLES: u64 = 8;

/// One request with short timeouts; `None` if the connection failed (the
/// server is down or died mid-request).
fn request(port: u16, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = std::str::from_utf8(raw.get(9..12)?).ok()?.parse().ok()?;
    Some((status, raw[split + 4..].to_vec()))
}

fn ok(r: Option<(u16, Vec<u8>)>, want: u16) -> Vec<u8> {
    let (s, b) = r.expect("server answered");
    assert_eq!(s, want, "{}", String::from_utf8_lossy(&b));
    b
}

/// Registers a patient; returns its key, public keys and a bearer token.
fn patient(port: u16) -> (SigningKey, medrelay_crypto::PatientPublicKeys, String) {
    let sk = SigningKey::generate(&mut OsRng);
    let keys = PatientSecretKeys::generate(&mut OsRng).public_keys();
    let bytes = keys.to_bytes();
    let vk = sk.verifying_key();
    let req = RegisterRequest {
        role: Role::Patient,
        name: "Crash".into(),
        signing_key: vk,
        pre_public_keys: B64(bytes.clone()),
        enrollment_token: None,
        signature: sk
            .sign(domain::SIG_REGISTRATION, &registration_message(Role::Patient, "Crash", &vk, &bytes)),
    };
    ok(request(port, "POST", "/v1/principals", None, &serde_json::to_vec(&req).unwrap()), 201);
    let principal = sk.principal_id();
    let body = serde_json::json!({ "principal": principal }).to_string();
    let ch: ChallengeResponse =
        serde_json::from_slice(&ok(request(port, "POST", "/v1/auth/challenge", None, body.as_bytes()), 200))
            .unwrap();
    let signature = sk.sign(domain::SIG_AUTH_CHALLENGE, &challenge_message(&principal, ch.nonce.as_bytes()));
    let req = TokenRequest { principal, nonce: ch.nonce, signature };
    let t: TokenResponse = serde_json::from_slice(&ok(
        request(port, "POST", "/v1/auth/token", None, &serde_json::to_vec(&req).unwrap()),
        200,
    ))
    .unwrap();
    (sk, keys, t.token)
}

#[test]
fn kill_9_cycles_lose_no_acknowledged_write_and_the_audit_passes() {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::init();
    let auditor_token = server.enroll("auditor", "Crash Auditor");
    server.start();
    let (port, url) = (server.port, server.url());
    let auditor = User::new("medrelay-auditor", root.path(), "auditor");
    auditor.run(&["init", "--server", &url, "--enrollment-token", &auditor_token]).ok();
    assert!(auditor.run(&["verify"]).ok().starts_with("ok: "), "the auditor pins a checkpoint");
    let (sk, keys, token) = patient(port);

    // The writer: one record per request; an id counts only once the server
    // answered 201. Connection failures (the server is down) are retried
    // with a fresh record.
    let acked: Arc<Mutex<Vec<RecordId>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, token) = (Arc::clone(&acked), Arc::clone(&stop), token.clone());
        std::thread::spawn(move || {
            let cat = RecordCategory::new("Observation", ["laboratory".to_owned()], []).unwrap();
            let (mut attempts, mut failed) = (0u64, 0u64);
            // One batch capsule, sent with every record (the server keeps
            // the copy it stored first).
            let batch = generate_batch(&mut OsRng, &sk, &keys, KeyClass::Laboratory).unwrap();
            let capsule = B64(batch.capsule().to_bytes());
            while !stop.load(Ordering::Relaxed) {
                let id = RecordId::random(&mut OsRng);
                let header =
                    RecordHeader::new(id, sk.principal_id(), cat.clone(), "text/plain", Timestamp(1))
                        .unwrap();
                let env = encrypt_record(&mut OsRng, &sk, &batch, header, b"glucose 5.4 mmol/L").unwrap();
                let body = serde_json::to_vec(&UploadRecordRequest {
                    envelope: B64(env.to_bytes()),
                    capsule: Some(capsule.clone()),
                })
                .unwrap();
                attempts += 1;
                match request(port, "POST", "/v1/records", Some(&token), &body) {
                    Some((201, b)) => {
                        let r: UploadRecordsResponse = serde_json::from_slice(&b).unwrap();
                        assert_eq!(r.receipts[0].record_id, id);
                        acked.lock().unwrap().push(id);
                    }
                    Some((429, _)) => std::thread::sleep(Duration::from_secs(1)),
                    Some((s, b)) => panic!("unexpected {s}: {}", String::from_utf8_lossy(&b)),
                    None => {
                        failed += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            (attempts, failed)
        })
    };

    let mut per_cycle = Vec::new();
    for cycle in 0..CYCLES {
        let before = acked.lock().unwrap().len();
        // A spread of moments to die at, without a random-number dependency.
        std::thread::sleep(Duration::from_millis(150 + (cycle * 271) % 500));
        server.crash();
        std::thread::sleep(Duration::from_millis(50));
        server.start();
        per_cycle.push(acked.lock().unwrap().len() - before);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (attempts, failed) = writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "{CYCLES} kill -9 cycles: {} acknowledged writes ({per_cycle:?} per cycle), {attempts} attempts, {failed} cut off",
        acked.len()
    );
    assert!(per_cycle.iter().filter(|n| **n > 0).count() as u64 >= CYCLES / 2, "writes during most cycles");
    assert!(failed > 0, "some writes were in flight or refused at a kill");

    // Every acknowledged write survived every crash.
    for id in &acked {
        let b = ok(request(port, "GET", &format!("/v1/records/{id}"), Some(&token), b""), 200);
        let env: UploadRecordRequest = serde_json::from_slice(&b).unwrap();
        assert!(!env.envelope.as_bytes().is_empty());
    }
    // The log only grew from the pinned checkpoint, and the full audit of
    // every entry passes with at least every acknowledged record in it.
    assert!(auditor.run(&["verify"]).ok().starts_with("ok: "));
    let report = auditor.run(&["audit", "--full", "--json"]).json();
    assert_eq!(report["clean"], true, "{report}");
    let published = report["counts"]["record_published"].as_u64().unwrap();
    assert!(published >= acked.len() as u64, "{published} < {}", acked.len());
    server.stop();
    eprintln!("crash test took {:.1} s", started.elapsed().as_secs_f64());
}
