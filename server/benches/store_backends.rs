//! The two stores side by side, in one run, through the real HTTP stack on
//! loopback: sled (the embedded default), PostgreSQL with one replica, and
//! PostgreSQL with two replicas on one database (two servers in this
//! process, each with its own store, pool and caches, as two processes
//! would have; clients alternate between them).
//!
//! Per setup: record uploads/s (batches of 10 envelopes from 4 patients at
//! once), re-encryptions/s (4 concurrent doctors' requests, key cache on),
//! and DP count queries/s (4 concurrent requests over 1,000 summaries, the
//! summary cache off in every setup: over PostgreSQL it is off, since its
//! invalidation is per process; rate limits off). The PostgreSQL cluster is a throwaway one
//! on 127.0.0.1 with `fsync` on (durable commits, as in production).
//!
//! `cargo bench -p medrelay-server --bench store_backends`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use medrelay_crypto::{
    encrypt_record, generate_batch, generate_reencryption_key, GrantId, KeyClass, PatientSecretKeys,
    PreKeyPair, PrincipalId, RecordCategory, RecordEnvelope, RecordHeader, RecordId, SigningKey, Threshold,
    Timestamp,
};
use medrelay_dp::{Budget, Delta, Epsilon};
use medrelay_policy::{Grant, LogEvent, LogSigner, Purpose};
use medrelay_server::store::postgres::testing::TestCluster;
use medrelay_server::store::{encode_summary, LogAppend, PgStore, SledStore, Store};
use medrelay_server::{enroll_in, install_default_schema, set_budget_in, AppState, Clock, Quotas};
use medrelay_wire::{CreateGrantRequest, Role, UploadRecordsRequest, B64};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

mod common;
use common::{login, post_json, register, request, serve};

const CLIENTS: usize = 4;
const UPLOAD_BATCHES: usize = 8;
const BATCH: usize = 10;
const REENCRYPTIONS_PER_CLIENT: usize = 40;
const LAB_RECORDS: usize = 8;
const SUMMARIES: usize = 1000;
const DP_SECONDS: u64 = 4;
const HB: &str = "health-basics";

struct Figures {
    uploads: f64,
    reencryptions: f64,
    dp: f64,
}

/// `n` lab records of `owner`, sealed `per_capsule` to a batch capsule, as
/// upload bodies (the capsule with its records).
fn sealed_uploads(
    rng: &mut ChaCha20Rng,
    owner: &SigningKey,
    keys: &PatientSecretKeys,
    n: usize,
    per_capsule: usize,
) -> Vec<(UploadRecordsRequest, Vec<RecordId>)> {
    let cat = RecordCategory::new("Observation", ["laboratory".to_owned()], []).unwrap();
    (0..n.div_ceil(per_capsule))
        .map(|b| {
            let batch = generate_batch(rng, owner, &keys.public_keys(), KeyClass::Laboratory).unwrap();
            let envs: Vec<RecordEnvelope> = (0..per_capsule.min(n - b * per_capsule))
                .map(|_| {
                    let h = RecordHeader::new(
                        RecordId::random(rng),
                        owner.principal_id(),
                        cat.clone(),
                        "application/fhir+json",
                        Timestamp(1_700_000_000),
                    )
                    .unwrap();
                    encrypt_record(rng, owner, &batch, h, &[b'x'; 2048]).unwrap()
                })
                .collect();
            let ids = envs.iter().map(|e| e.header().record_id()).collect();
            let body = UploadRecordsRequest {
                capsules: vec![B64(batch.capsule().to_bytes())],
                envelopes: envs.iter().map(|e| B64(e.to_bytes())).collect(),
            };
            (body, ids)
        })
        .collect()
}

/// Runs `f(client, address)` on `CLIENTS` threads, client `c` talking to
/// replica `c % addrs.len()`; returns the seconds it took.
fn concurrently(addrs: &[String], f: impl Fn(usize, &str) + Send + Sync + Clone + 'static) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let addr = addrs[c % addrs.len()].clone();
            let f = f.clone();
            std::thread::spawn(move || f(c, &addr))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed().as_secs_f64()
}

/// One setup: `stores` are the replicas' stores (one database).
fn run<S: Store + Clone>(stores: Vec<S>, seed: u64) -> Figures {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let log_key = SigningKey::generate(&mut rng);
    let states: Vec<AppState> = stores
        .into_iter()
        .map(|s| {
            // Quotas off: one analyst's back-to-back queries are the load.
            AppState::new(s, Clock::System, LogSigner::new("bench.medrelay/log", &log_key).unwrap())
                .with_dp_cache(0)
                .with_quotas(Quotas::off())
        })
        .collect();
    let first = states[0].clone();
    install_default_schema(first.store().as_ref(), &Clock::System).unwrap();
    let addrs: Vec<String> = states.iter().map(|s| serve(s.clone())).collect();
    let a0 = &addrs[0];

    // ---- uploads: each client a patient, batches of BATCH envelopes.
    let patients: Vec<(SigningKey, PatientSecretKeys)> = (0..CLIENTS)
        .map(|_| (SigningKey::generate(&mut rng), PatientSecretKeys::generate(&mut rng)))
        .collect();
    let mut batches = Vec::new();
    let mut tokens = Vec::new();
    for (sk, keys) in &patients {
        register(a0, sk, Role::Patient, keys.public_keys().to_bytes(), None);
        tokens.push(login(a0, sk));
        let bodies = sealed_uploads(&mut rng, sk, keys, UPLOAD_BATCHES * BATCH, BATCH);
        batches.push(bodies.iter().map(|(b, _)| serde_json::to_vec(b).unwrap()).collect::<Vec<_>>());
    }
    let batches = Arc::new(batches);
    let tokens = Arc::new(tokens);
    let secs = concurrently(&addrs, {
        let (batches, tokens) = (Arc::clone(&batches), Arc::clone(&tokens));
        move |c, addr| {
            for body in &batches[c] {
                let (s, b) = request(addr, "POST", "/v1/records/batch", Some(&tokens[c]), body);
                assert!(s == 200 || s == 201, "{s} {}", String::from_utf8_lossy(&b));
            }
        }
    });
    let uploads = (CLIENTS * UPLOAD_BATCHES * BATCH) as f64 / secs;

    // ---- re-encryptions: one patient's lab records granted to one doctor.
    let (p, pkeys) = &patients[0];
    let d = SigningKey::generate(&mut rng);
    let dkeys = PreKeyPair::generate(&mut rng);
    let token = enroll_in(first.store().as_ref(), Role::Doctor, "Dr Bench", first.clock()).unwrap();
    register(a0, &d, Role::Doctor, dkeys.public_key().to_bytes(), Some(token.to_string()));
    let td = Arc::new(login(a0, &d));
    // One capsule per record: the first request for each re-encrypts its
    // capsule, later ones are served the stored re-encryption.
    let lab = sealed_uploads(&mut rng, p, pkeys, LAB_RECORDS, 1);
    for (body, _) in &lab {
        post_json(a0, "/v1/records/batch", Some(&tokens[0]), body);
    }
    let now = first.clock().now();
    let grant = Grant::new(
        GrantId::random(&mut rng),
        p.principal_id(),
        d.principal_id(),
        "Observation?category=laboratory".parse().unwrap(),
        Purpose::Treatment,
        now,
        Timestamp(now.0 + 3600),
        now,
    )
    .unwrap();
    let rk = generate_reencryption_key(
        &mut rng,
        pkeys,
        p.principal_id(),
        KeyClass::Laboratory,
        dkeys.public_key(),
        Threshold::new(1, 1).unwrap(),
    );
    let grant = grant.with_rekey_digests(vec![rk.digest()]).unwrap();
    post_json(
        a0,
        "/v1/grants",
        Some(&tokens[0]),
        &CreateGrantRequest {
            grant: B64(grant.sign(p).unwrap().to_bytes()),
            rekeys: vec![B64(rk.to_bytes())],
        },
    );
    let ids: Arc<Vec<RecordId>> = Arc::new(lab.iter().flat_map(|(_, ids)| ids.iter().copied()).collect());
    // Warm every replica's key cache first (one request each).
    for addr in &addrs {
        let (s, _) = request(addr, "POST", &format!("/v1/records/{}/reencrypt", ids[0]), Some(&td), b"");
        assert_eq!(s, 200);
    }
    let secs = concurrently(&addrs, {
        let (ids, td) = (Arc::clone(&ids), Arc::clone(&td));
        move |c, addr| {
            for i in 0..REENCRYPTIONS_PER_CLIENT {
                let id = ids[(c + i) % ids.len()];
                let (s, b) = request(addr, "POST", &format!("/v1/records/{id}/reencrypt"), Some(&td), b"");
                assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
            }
        }
    });
    let reencryptions = (CLIENTS * REENCRYPTIONS_PER_CLIENT) as f64 / secs;

    // ---- DP: SUMMARIES stored summaries, an analyst with a large budget.
    for i in 0..SUMMARIES {
        let mut id = [0xAA; 32];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let patient = PrincipalId::from_bytes(id);
        let json = serde_json::json!({"schema": HB, "values": {"birth_year": 1950 + (i % 60), "bmi": 20.0 + (i % 15) as f64}});
        let ev =
            LogAppend::seal(&LogEvent::SummarySubmitted { at: Timestamp(1), patient, schema: HB.into() })
                .unwrap();
        first
            .store()
            .put_summary(HB, &patient, &encode_summary(&serde_json::to_vec(&json).unwrap()), &ev)
            .unwrap();
    }
    let analyst = SigningKey::generate(&mut rng);
    let token = enroll_in(first.store().as_ref(), Role::Analyst, "Ana", first.clock()).unwrap();
    register(a0, &analyst, Role::Analyst, vec![0u8; 8], Some(token.to_string()));
    let budget = Budget { epsilon: Epsilon::new(100.0).unwrap(), delta: Delta::new(1e-6).unwrap() };
    set_budget_in(first.store().as_ref(), &analyst.principal_id(), HB, budget, first.clock()).unwrap();
    let ta = Arc::new(login(a0, &analyst));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let secs = concurrently(&addrs, {
        let (ta, answered) = (Arc::clone(&ta), Arc::clone(&answered));
        move |_, addr| {
            let body = br#"{"statistic": {"kind": "count"}, "privacy": {"epsilon": 0.01}}"#;
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(DP_SECONDS) {
                let (s, b) = request(addr, "POST", &format!("/v1/dp/schemas/{HB}/query"), Some(&ta), body);
                assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let dp = answered.load(std::sync::atomic::Ordering::Relaxed) as f64 / secs;
    // Every answer was debited exactly once, whichever replica served it.
    let ledger = first.store().get_ledger(&analyst.principal_id(), HB).unwrap().unwrap();
    assert_eq!(ledger.queries() as usize, answered.load(std::sync::atomic::Ordering::Relaxed));
    Figures { uploads, reencryptions, dp }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(true).expect("a throwaway PostgreSQL cluster (initdb, pg_ctl)");
    let sled = run(vec![SledStore::open(&dir.path().join("db")).unwrap()], 1);
    let url = cluster.create_database().unwrap();
    let pg1 = run(vec![PgStore::open(&url).unwrap()], 1);
    let url = cluster.create_database().unwrap();
    let pg2 = run(vec![PgStore::open(&url).unwrap(), PgStore::open(&url).unwrap()], 1);
    println!(
        "{:<36} {:>14} {:>18} {:>16}",
        "setup (same run, loopback HTTP)", "uploads/s", "re-encryptions/s", "DP queries/s"
    );
    for (label, f) in
        [("sled (embedded)", &sled), ("PostgreSQL, 1 replica", &pg1), ("PostgreSQL, 2 replicas", &pg2)]
    {
        println!("{label:<36} {:>14.1} {:>18.1} {:>16.1}", f.uploads, f.reencryptions, f.dp);
    }
    println!(
        "PostgreSQL 1 replica / sled: uploads {:.2}, re-encryptions {:.2}, DP {:.2}",
        pg1.uploads / sled.uploads,
        pg1.reencryptions / sled.reencryptions,
        pg1.dp / sled.dp
    );
    println!(
        "PostgreSQL 2 replicas / 1 replica: uploads {:.2}, re-encryptions {:.2}, DP {:.2} ({} cores)",
        pg2.uploads / pg1.uploads,
        pg2.reencryptions / pg1.reencryptions,
        pg2.dp / pg1.dp,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
}
