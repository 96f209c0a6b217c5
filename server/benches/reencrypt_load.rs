//! Load benchmark: re-encryption requests per second and p50/p99 latency at a
//! fixed concurrency, over real HTTP on loopback, next to the raw
//! `reencrypt_capsule` rate measured in the same run.
//!
//! The HTTP load runs twice against the same database: once with the
//! re-encryption key cache off (every request decodes the grant's keys from
//! the store and prepares their NTT form: the behaviour before the cache) and
//! once with it on (the default).
//!
//! Then, in the same run and on the same server (cache on, default quotas),
//! the load runs once more while attackers send refused requests as fast as
//! they can (issue 12): an ungranted doctor asking for the records, an
//! anonymous client flooding login challenges, and an analyst sending DP
//! queries with a vanishing ρ. Printed: the honest doctor's throughput with
//! and without the attack, and what the attackers got back.
//!
//! `cargo bench -p medrelay-server --bench reencrypt_load`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use medrelay_crypto::{
    encrypt_record, generate_batch, generate_reencryption_key, reencrypt_capsule, GrantId, KeyClass,
    PatientSecretKeys, PreKeyPair, RecordCategory, RecordHeader, RecordId, SigningKey, Threshold, Timestamp,
};
use medrelay_policy::{Grant, LogSigner, Purpose};
use medrelay_server::store::SledStore;
use medrelay_server::{enroll_in, AppState, Clock};
use medrelay_wire::{CreateGrantRequest, Role, UploadRecordsRequest, B64};
use rand::rngs::OsRng;
use rand_chacha::rand_core::SeedableRng;

mod common;
use common::{login, post_json, register, request, serve};

const CONCURRENCY: usize = 4;
const REQUESTS_PER_CLIENT: usize = 50;
const RAW_ITERATIONS: usize = 200;
const RECORDS: usize = 8;
/// Attacker threads during the attacked run.
const ATTACKERS: usize = 2;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// `CONCURRENCY` clients each asking `REQUESTS_PER_CLIENT` re-encryptions;
/// returns (requests/s, sorted latencies).
fn http_load(addr: &str, td: &str, ids: &[RecordId]) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let handles: Vec<_> = (0..CONCURRENCY)
        .map(|c| {
            let addr = addr.to_owned();
            let td = td.to_owned();
            let ids = ids.to_vec();
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(REQUESTS_PER_CLIENT);
                for i in 0..REQUESTS_PER_CLIENT {
                    let id = ids[(c + i) % ids.len()];
                    let t = Instant::now();
                    let (s, b) =
                        request(&addr, "POST", &format!("/v1/records/{id}/reencrypt"), Some(&td), b"");
                    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    (lat.len() as f64 / secs, lat)
}

/// Attackers sending refused requests back to back until `stop`; returns
/// the count of each (kind, status).
fn attack(
    addr: &str,
    stranger: &str,
    analyst: &str,
    victim: medrelay_crypto::PrincipalId,
    ids: &[RecordId],
    dp_work: bool,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<BTreeMap<(&'static str, u16), u64>>> {
    (0..ATTACKERS)
        .map(|a| {
            let (addr, stranger, analyst, ids) =
                (addr.to_owned(), stranger.to_owned(), analyst.to_owned(), ids.to_vec());
            let stop = Arc::clone(stop);
            std::thread::spawn(move || {
                let mut seen = BTreeMap::new();
                let challenge = serde_json::json!({ "principal": victim }).to_string();
                let tiny = br#"{"statistic": {"kind": "count"}, "privacy": {"rho": 1e-300}}"#;
                let edges: Vec<f64> = (0..=256).map(|k| 1900.0 + f64::from(k) * 0.5).collect();
                let heavy = serde_json::json!({"statistic": {"kind": "histogram", "field": "birth_year",
                    "edges": edges}, "privacy": {"rho": 1e-10}})
                .to_string();
                let mut i = a;
                while !stop.load(Ordering::Relaxed) {
                    let (kind, (s, _)) = match if dp_work { 3 } else { i % 3 } {
                        3 => (
                            "DP histogram, 256 bins, rho = 1e-10",
                            request(
                                &addr,
                                "POST",
                                "/v1/dp/schemas/health-basics/query",
                                Some(&analyst),
                                heavy.as_bytes(),
                            ),
                        ),
                        0 => (
                            "ungranted re-encryption",
                            request(
                                &addr,
                                "POST",
                                &format!("/v1/records/{}/reencrypt", ids[i % ids.len()]),
                                Some(&stranger),
                                b"",
                            ),
                        ),
                        1 => (
                            "anonymous login challenge",
                            request(&addr, "POST", "/v1/auth/challenge", None, challenge.as_bytes()),
                        ),
                        _ => (
                            "DP query with rho = 1e-300",
                            request(
                                &addr,
                                "POST",
                                "/v1/dp/schemas/health-basics/query",
                                Some(&analyst),
                                tiny,
                            ),
                        ),
                    };
                    *seen.entry((kind, s)).or_insert(0) += 1;
                    i += 1;
                }
                seen
            })
        })
        .collect()
}

fn main() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("db")).unwrap();
    let log_key = SigningKey::generate(&mut rng);
    let signer = || LogSigner::new("bench.medrelay/log", &log_key).unwrap();
    // Two servers over one database: cache off (the pre-cache behaviour) and on.
    let state = AppState::new(store.clone(), Clock::System, signer()).with_rekey_cache(0);
    medrelay_server::install_default_schema(&store, &Clock::System).unwrap();
    let cached = AppState::new(store, Clock::System, signer());
    let addr = serve(state.clone());
    let cached_addr = serve(cached.clone());

    let p = SigningKey::generate(&mut rng);
    let d = SigningKey::generate(&mut rng);
    let pkeys = PatientSecretKeys::generate(&mut rng);
    let dkeys = PreKeyPair::generate(&mut rng);
    register(&addr, &p, Role::Patient, pkeys.public_keys().to_bytes(), None);
    let token = enroll_in(state.store().as_ref(), Role::Doctor, "Dr Bench", state.clock()).unwrap();
    register(&addr, &d, Role::Doctor, dkeys.public_key().to_bytes(), Some(token.to_string()));
    let tp = login(&addr, &p);
    let td = login(&addr, &d);

    let now = state.clock().now();
    let cat = RecordCategory::new("Observation", ["laboratory".to_owned()], []).unwrap();
    // One batch capsule per record, so that the first pass over the records
    // re-encrypts each capsule (later passes serve the stored result).
    let sealed: Vec<_> = (0..RECORDS)
        .map(|_| {
            let batch = generate_batch(&mut rng, &p, &pkeys.public_keys(), KeyClass::Laboratory).unwrap();
            let h = RecordHeader::new(
                RecordId::random(&mut rng),
                p.principal_id(),
                cat.clone(),
                "application/fhir+json",
                now,
            )
            .unwrap();
            let env = encrypt_record(&mut rng, &p, &batch, h, &[b'x'; 2048]).unwrap();
            (env, batch.capsule().clone())
        })
        .collect();
    let ids: Vec<RecordId> = sealed.iter().map(|(e, _)| e.header().record_id()).collect();
    for (env, capsule) in &sealed {
        post_json(
            &addr,
            "/v1/records/batch",
            Some(&tp),
            &UploadRecordsRequest {
                capsules: vec![B64(capsule.to_bytes())],
                envelopes: vec![B64(env.to_bytes())],
            },
        );
    }
    let rk = generate_reencryption_key(
        &mut rng,
        &pkeys,
        p.principal_id(),
        KeyClass::Laboratory,
        dkeys.public_key(),
        Threshold::new(1, 1).unwrap(),
    );
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
    .unwrap()
    .with_rekey_digests(vec![rk.digest()])
    .unwrap();
    let rk_bytes = rk.to_bytes();
    post_json(
        &addr,
        "/v1/grants",
        Some(&tp),
        &CreateGrantRequest { grant: B64(grant.sign(&p).unwrap().to_bytes()), rekeys: vec![B64(rk_bytes)] },
    );

    // Raw reencrypt_capsule rate, same process, same key and envelope.
    let vrk =
        rk.verify(&p.verifying_key(), &pkeys.public_keys(), dkeys.public_key()).map_err(|(e, _)| e).unwrap();
    let start = Instant::now();
    for i in 0..RAW_ITERATIONS {
        reencrypt_capsule(&mut OsRng, &vrk, &p.verifying_key(), &sealed[i % RECORDS].1).unwrap();
    }
    let raw_secs = start.elapsed().as_secs_f64();

    // The attackers: a doctor with no grant, and an analyst.
    let stranger = SigningKey::generate(&mut rng);
    let token = enroll_in(state.store().as_ref(), Role::Doctor, "Dr Stranger", state.clock()).unwrap();
    let skeys = PreKeyPair::generate(&mut rng);
    register(&addr, &stranger, Role::Doctor, skeys.public_key().to_bytes(), Some(token.to_string()));
    let ts = login(&cached_addr, &stranger);
    let analyst = SigningKey::generate(&mut rng);
    let token = enroll_in(state.store().as_ref(), Role::Analyst, "Ana", state.clock()).unwrap();
    register(&addr, &analyst, Role::Analyst, vec![0u8; 8], Some(token.to_string()));
    let ta = login(&cached_addr, &analyst);

    // HTTP load at fixed concurrency, cache off then on, then on under attack.
    let off = http_load(&addr, &td, &ids);
    let on = http_load(&cached_addr, &td, &ids);
    let stop = Arc::new(AtomicBool::new(false));
    let log_before = state.store().log_size().unwrap();
    let attackers = attack(&cached_addr, &ts, &ta, p.principal_id(), &ids, false, &stop);
    std::thread::sleep(Duration::from_millis(200));
    let attacked = http_load(&cached_addr, &td, &ids);
    stop.store(true, Ordering::Relaxed);
    let seen = Mutex::new(BTreeMap::new());
    for h in attackers {
        for (k, n) in h.join().unwrap() {
            *seen.lock().unwrap().entry(k).or_insert(0u64) += n;
        }
    }
    let logged = state.store().log_size().unwrap() - log_before - attacked.1.len() as u64;
    // And while an analyst keeps the DP slots busy with expensive (allowed)
    // answers: at most `dp_gate().slots()` cores compute DP.
    let stop = Arc::new(AtomicBool::new(false));
    let analysts = attack(&cached_addr, &ts, &ta, p.principal_id(), &ids, true, &stop);
    std::thread::sleep(Duration::from_millis(500));
    let dp_loaded = http_load(&cached_addr, &td, &ids);
    stop.store(true, Ordering::Relaxed);
    let mut dp_seen = BTreeMap::new();
    for h in analysts {
        for (k, n) in h.join().unwrap() {
            *dp_seen.entry(k).or_insert(0u64) += n;
        }
    }
    assert_eq!(state.rekey_cache().len(), 0);
    assert_eq!(cached.rekey_cache().len(), 1, "the grant's one key is cached");
    println!(
        "raw reencrypt_capsule: {RAW_ITERATIONS} in {raw_secs:.3} s = {:.1} ops/s",
        RAW_ITERATIONS as f64 / raw_secs
    );
    let base_rate = on.0;
    let attacked_rate = attacked.0;
    let dp_rate = dp_loaded.0;
    for (label, (rate, lat)) in [
        ("key cache off", off),
        ("key cache on ", on),
        ("under attack ", attacked),
        ("under DP load", dp_loaded),
    ] {
        println!(
            "HTTP re-encryption, {label} (concurrency {CONCURRENCY}, {} requests, 2 workers): {rate:.1} req/s, p50 {:.2} ms, p99 {:.2} ms",
            lat.len(),
            percentile(&lat, 0.50).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3
        );
    }
    println!(
        "under attack / alone (same server, cache on): {:.2} ({ATTACKERS} attacker threads, refused requests back to back)",
        attacked_rate / base_rate
    );
    let seen = seen.into_inner().unwrap();
    let total: u64 = seen.values().sum();
    println!("attackers sent {total} requests during the attacked run:");
    for ((kind, status), n) in &seen {
        println!("  {kind:<28} {status}: {n}");
    }
    println!("attack entries added to the audit log: {logged}");
    println!(
        "under DP load / alone (same server, cache on): {:.2} ({ATTACKERS} analyst threads, DP slots: {})",
        dp_rate / base_rate,
        cached.dp_gate().slots()
    );
    for ((kind, status), n) in &dp_seen {
        println!("  {kind:<36} {status}: {n}");
    }
}
