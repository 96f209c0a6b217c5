//! Load benchmark: re-encryption requests per second and p50/p99 latency at a
//! fixed concurrency, over real HTTP on loopback, next to the raw
//! `reencrypt_capsule` rate measured in the same run.
//!
//! The HTTP load runs twice against the same database: once with the
//! re-encryption key cache off (every request decodes the grant's keys from
//! the store and prepares their NTT form: the behaviour before the cache) and
//! once with it on (the default).
//!
//! `cargo bench -p medrelay-server --bench reencrypt_load`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use medrelay_crypto::{
    encrypt_record, generate_reencryption_key, reencrypt_capsule, GrantId, KeyClass, PatientSecretKeys,
    PreKeyPair, RecordCategory, RecordHeader, RecordId, SigningKey, Threshold, Timestamp,
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

fn main() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("db")).unwrap();
    let log_key = SigningKey::generate(&mut rng);
    let signer = || LogSigner::new("bench.medrelay/log", &log_key).unwrap();
    // Two servers over one database: cache off (the pre-cache behaviour) and on.
    let state = AppState::new(store.clone(), Clock::System, signer()).with_rekey_cache(0);
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
    let envelopes: Vec<_> = (0..RECORDS)
        .map(|_| {
            let h = RecordHeader::new(
                RecordId::random(&mut rng),
                p.principal_id(),
                cat.clone(),
                "application/fhir+json",
                now,
            )
            .unwrap();
            encrypt_record(&mut rng, &p, &pkeys.public_keys(), h, &[b'x'; 2048]).unwrap()
        })
        .collect();
    let ids: Vec<RecordId> = envelopes.iter().map(|e| e.header().record_id()).collect();
    post_json(
        &addr,
        "/v1/records/batch",
        Some(&tp),
        &UploadRecordsRequest { envelopes: envelopes.iter().map(|e| B64(e.to_bytes())).collect() },
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
    .unwrap();
    let rk = generate_reencryption_key(
        &mut rng,
        &pkeys,
        KeyClass::Laboratory,
        dkeys.public_key(),
        Threshold::new(1, 1).unwrap(),
    );
    let rk_bytes = rk.to_bytes();
    post_json(
        &addr,
        "/v1/grants",
        Some(&tp),
        &CreateGrantRequest { grant: B64(grant.sign(&p).unwrap().to_bytes()), rekeys: vec![B64(rk_bytes)] },
    );

    // Raw reencrypt_capsule rate, same process, same key and envelope.
    let vrk = rk.verify(&pkeys.public_keys(), dkeys.public_key()).map_err(|(e, _)| e).unwrap();
    let start = Instant::now();
    for i in 0..RAW_ITERATIONS {
        reencrypt_capsule(&mut OsRng, &vrk, &p.verifying_key(), &envelopes[i % RECORDS]).unwrap();
    }
    let raw_secs = start.elapsed().as_secs_f64();

    // HTTP load at fixed concurrency, cache off then on.
    let off = http_load(&addr, &td, &ids);
    let on = http_load(&cached_addr, &td, &ids);
    assert_eq!(state.rekey_cache().len(), 0);
    assert_eq!(cached.rekey_cache().len(), 1, "the grant's one key is cached");
    println!(
        "raw reencrypt_capsule: {RAW_ITERATIONS} in {raw_secs:.3} s = {:.1} ops/s",
        RAW_ITERATIONS as f64 / raw_secs
    );
    for (label, (rate, lat)) in [("key cache off", off), ("key cache on ", on)] {
        println!(
            "HTTP re-encryption, {label} (concurrency {CONCURRENCY}, {} requests, 2 workers): {rate:.1} req/s, p50 {:.2} ms, p99 {:.2} ms",
            lat.len(),
            percentile(&lat, 0.50).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3
        );
    }
}
