//! DP query throughput over 100,000 generated summaries stored in sled,
//! through the real HTTP stack on loopback: each request authenticates,
//! reads and validates every stored summary of the schema, builds the OpenDP
//! measurement, releases, and commits the ledger debit and its log entry
//! durably before answering. The same query answered by `medrelay_dp` over
//! the summaries already in memory is measured in the same run, so the cost
//! of storage and HTTP is visible.
//!
//! `cargo bench -p medrelay-server --bench dp_queries`
//! (`DP_BENCH_ROWS=1000` for a quick smoke run with fewer summaries).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use medrelay_crypto::{domain, PrincipalId, SigningKey, Timestamp};
use medrelay_dp::{answer, plan, AnalystId, Budget, Delta, Epsilon, Ledger, Query, Schema, Summary};
use medrelay_policy::{LogEvent, LogSigner};
use medrelay_server::store::{decode_summary, encode_summary, LogAppend, SledStore, Store};
use medrelay_server::{app, enroll_in, install_default_schema, set_budget_in, AppState, Clock};
use medrelay_wire::{
    challenge_message, registration_message, ChallengeResponse, RegisterRequest, Role, TokenRequest,
    TokenResponse, B64,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::json;

const DEFAULT_ROWS: usize = 100_000;
const SEED_THREADS: usize = 8;
const SECONDS: u64 = 5;
const HB: &str = "health-basics";
const SEXES: [&str; 4] = ["female", "male", "other", "unknown"];

fn request(addr: &str, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, Vec<u8>) {
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

fn post_json<T: serde::Serialize>(addr: &str, path: &str, token: Option<&str>, body: &T) -> Vec<u8> {
    let (s, b) = request(addr, "POST", path, token, &serde_json::to_vec(body).unwrap());
    assert!(s == 200 || s == 201, "{path}: {s} {}", String::from_utf8_lossy(&b));
    b
}

fn summary_json(rng: &mut ChaCha20Rng) -> Vec<u8> {
    let bmi: f64 = 18.0 + 17.0 * rng.gen::<f64>();
    serde_json::to_vec(&json!({"schema": HB, "values": {
        "birth_year": rng.gen_range(1930..2010),
        "sex": SEXES[rng.gen_range(0..4)],
        "systolic_bp": 90.0 + 2.0 * bmi + 20.0 * rng.gen::<f64>(),
        "bmi": bmi,
        "diabetes": rng.gen_bool(0.1),
        "hypertension": rng.gen_bool(0.3),
        "asthma": rng.gen_bool(0.08),
    }}))
    .unwrap()
}

/// Stores `rows` summaries (each its own durable write with its log entry,
/// as a patient's PUT would do), from several threads.
fn seed(store: &Arc<dyn Store>, rows: usize) {
    let per = rows / SEED_THREADS;
    let handles: Vec<_> = (0..SEED_THREADS)
        .map(|t| {
            let store = Arc::clone(store);
            std::thread::spawn(move || {
                let mut rng = ChaCha20Rng::seed_from_u64(t as u64);
                for i in 0..per {
                    let mut id = [0u8; 32];
                    id[..8].copy_from_slice(&((t * per + i) as u64).to_be_bytes());
                    let patient = PrincipalId::from_bytes(id);
                    let ev = LogEvent::SummarySubmitted { at: Timestamp(1), patient, schema: HB.into() };
                    let append = LogAppend { data: ev.to_bytes().unwrap(), subjects: vec![patient] };
                    store
                        .put_summary(HB, &patient, &encode_summary(&summary_json(&mut rng)), &append)
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

fn run_http(addr: &str, token: &str, name: &str, query: &serde_json::Value, rows: usize) {
    let body = serde_json::to_vec(query).unwrap();
    let path = format!("/v1/dp/schemas/{HB}/query");
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(SECONDS) || lat.len() < 5 {
        let t = Instant::now();
        let (s, b) = request(addr, "POST", &path, Some(token), &body);
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        lat.push(t.elapsed());
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "HTTP  {name:<36} {:>8.2} queries/s   (p50 {:.1} ms, {} queries over {rows} stored summaries)",
        lat.len() as f64 / secs,
        lat[lat.len() / 2].as_secs_f64() * 1e3,
        lat.len()
    );
}

fn run_memory(schema: &Schema, rows: &[Summary], name: &str, query: &serde_json::Value) {
    let p = plan(schema, &serde_json::from_value::<Query>(query.clone()).unwrap()).unwrap();
    let budget = Budget { epsilon: Epsilon::new(100.0).unwrap(), delta: Delta::new(1e-6).unwrap() };
    let mut done = 0u32;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) || done < 5 {
        let mut ledger = Ledger::new(AnalystId::from_bytes([0; 32]), HB, budget).unwrap();
        std::hint::black_box(answer(&p, rows, &mut ledger).unwrap());
        done += 1;
    }
    println!(
        "dp    {name:<36} {:>8.2} queries/s   (in memory, no storage or HTTP)",
        f64::from(done) / start.elapsed().as_secs_f64()
    );
}

fn main() {
    println!(
        "medrelay-server DP query throughput; reproduce: cargo bench -p medrelay-server --bench dp_queries"
    );
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("db")).unwrap();
    let signer = LogSigner::new("bench.medrelay/log", &SigningKey::generate(&mut rng)).unwrap();
    let state = AppState::new(store, Clock::System, signer);
    install_default_schema(state.store().as_ref(), state.clock()).unwrap();
    let rows_wanted: usize =
        std::env::var("DP_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_ROWS);
    let rows_wanted = rows_wanted / SEED_THREADS * SEED_THREADS;
    let t = Instant::now();
    seed(state.store(), rows_wanted);
    println!(
        "seeded {rows_wanted} summaries ({SEED_THREADS} threads, one durable write each) in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Time to load and validate every stored summary (paid by every query).
    let schema = Schema::health_basics();
    let t = Instant::now();
    let rows: Vec<Summary> = state
        .store()
        .list_summaries(HB, rows_wanted + 1)
        .unwrap()
        .iter()
        .map(|b| Summary::from_json(&schema, decode_summary(b).unwrap()).unwrap())
        .collect();
    assert_eq!(rows.len(), rows_wanted);
    println!("load + validate {rows_wanted} summaries from sled: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);

    let addr =
        format!("127.0.0.1:{}", TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let st = state.clone();
    let bind = addr.clone();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            actix_web::HttpServer::new(move || app(st.clone()))
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

    let analyst = SigningKey::generate(&mut rng);
    let token = enroll_in(state.store().as_ref(), Role::Analyst, "bench", state.clock()).unwrap();
    let vk = analyst.verifying_key();
    let keys = vec![0u8; 8];
    let sig =
        analyst.sign(domain::SIG_REGISTRATION, &registration_message(Role::Analyst, "bench", &vk, &keys));
    let req = RegisterRequest {
        role: Role::Analyst,
        name: "bench".into(),
        signing_key: vk,
        pre_public_keys: B64(keys),
        enrollment_token: Some(token.to_string()),
        signature: sig,
    };
    post_json(&addr, "/v1/principals", None, &req);
    let principal = analyst.principal_id();
    let ch: ChallengeResponse = serde_json::from_slice(&post_json(
        &addr,
        "/v1/auth/challenge",
        None,
        &json!({ "principal": principal }),
    ))
    .unwrap();
    let sig = analyst.sign(domain::SIG_AUTH_CHALLENGE, &challenge_message(&principal, ch.nonce.as_bytes()));
    let t: TokenResponse = serde_json::from_slice(&post_json(
        &addr,
        "/v1/auth/token",
        None,
        &TokenRequest { principal, nonce: ch.nonce, signature: sig },
    ))
    .unwrap();
    let budget = Budget { epsilon: Epsilon::new(100.0).unwrap(), delta: Delta::new(1e-6).unwrap() };
    set_budget_in(state.store().as_ref(), &principal, HB, budget, state.clock()).unwrap();

    let queries = [
        (
            "count (no filter, ε=0.001)",
            json!({"statistic": {"kind": "count"}, "privacy": {"epsilon": 0.001}}),
        ),
        (
            "count (2 filters, ε=0.001)",
            json!({"statistic": {"kind": "count"}, "filters": [
                {"field": "diabetes", "op": "is", "value": true},
                {"field": "birth_year", "op": "range", "min": 1950, "max": 1970}], "privacy": {"epsilon": 0.001}}),
        ),
        (
            "median bmi (1024 candidates, ε=0.01)",
            json!({"statistic": {"kind": "median", "field": "bmi"}, "privacy": {"epsilon": 0.01}}),
        ),
        (
            "quantile 0.9 systolic_bp (ρ=0.0001)",
            json!({"statistic": {"kind": "quantile", "field": "systolic_bp", "alpha": 0.9}, "privacy": {"rho": 0.0001}}),
        ),
    ];
    for (name, q) in &queries {
        run_http(&addr, &t.token, name, q, rows_wanted);
        run_memory(&schema, &rows, name, q);
    }
}
