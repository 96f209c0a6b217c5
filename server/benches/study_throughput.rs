//! Private-study throughput, end to end over HTTP with durable storage: a
//! leader and a helper aggregator (each its own sled database, log and HPKE
//! key, both in this process on loopback, two actix workers each), the
//! example study (`bp-by-diabetes`: two numeric fields, one correlation,
//! two histograms, three strata; ε = 1 per release).
//!
//! Measured in the same run:
//! - the client: sealing one report (encode, Prio3 shard, two HPKE seals)
//!   and its size;
//! - `prio` alone: both aggregators' preparation and aggregation of the
//!   same reports in one thread, in memory (HPKE opens included), the
//!   ceiling of the HTTP path;
//! - the aggregators: N reports uploaded 1,000 per request from two
//!   client threads while the leader's driver prepares them with the
//!   helper in jobs of 1,000 (one request, one transaction and one flush
//!   per job on each side), then the batch released (everything prepared,
//!   charged, logged, both noisy shares summed);
//! - the curated mode's ingest: patients PUT their summary, one per request
//!   (each a durable write with its log entry), next to the same patients
//!   uploading one study report per request.
//!
//! `cargo bench -p medrelay-server --bench study_throughput`
//! (`STUDY_BENCH_REPORTS=10000` for a quicker run).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use medrelay_client::{Http, ServerOptions};
use medrelay_crypto::{domain, PatientSecretKeys, SigningKey};
use medrelay_dp::study::{
    example_study, AggregatorRole, Report, ReportSealer, StudyDefinition, StudyEncoding, StudyVdaf,
};
use medrelay_dp::{Epsilon, Privacy, Schema, Summary, SummaryDoc};
use medrelay_server::study::{add_study, load_aggregator_key};
use medrelay_server::{init, AggregatorConfig, AggregatorToken, LocalServer, Quotas};
use medrelay_wire::{registration_message, RegisterRequest, Role, B64};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::json;
use sha2::{Digest, Sha256};

const DEFAULT_REPORTS: usize = 100_000;
const PER_REQUEST: usize = 1000;
const CLIENT_THREADS: usize = 2;
const SINGLE: usize = 600;

fn person(rng: &mut ChaCha20Rng) -> Summary {
    let bmi: f64 = 18.0 + 17.0 * rng.gen::<f64>();
    let sex = ["female", "male", "other", "unknown"][rng.gen_range(0..4)];
    let doc: SummaryDoc = serde_json::from_value(json!({"schema": "health-basics", "values": {
        "birth_year": rng.gen_range(1930..2010),
        "sex": sex,
        "systolic_bp": 90.0 + 2.0 * bmi + 20.0 * rng.gen::<f64>(),
        "bmi": bmi,
        "diabetes": rng.gen_bool(0.1),
        "hypertension": rng.gen_bool(0.3),
        "asthma": rng.gen_bool(0.08),
    }}))
    .unwrap();
    Summary::validate(&Schema::health_basics(), &doc).unwrap()
}

fn register(url: &str, pre: &[u8], i: u64) -> Http {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i + 1).to_be_bytes());
    let sk = SigningKey::from_seed(&seed);
    let vk = sk.verifying_key();
    let signature =
        sk.sign(domain::SIG_REGISTRATION, &registration_message(Role::Patient, "bench", &vk, pre));
    let http = Http::new(&ServerOptions::new(url)).unwrap().with_identity(Arc::new(sk));
    http.register(&RegisterRequest {
        role: Role::Patient,
        name: "bench".into(),
        signing_key: vk,
        pre_public_keys: B64(pre.to_vec()),
        enrollment_token: None,
        signature,
    })
    .unwrap();
    http
}

fn rate(n: usize, secs: f64) -> String {
    format!("{:>9.0}/s", n as f64 / secs)
}

fn main() {
    let n: usize =
        std::env::var("STUDY_BENCH_REPORTS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_REPORTS);
    let root = tempfile::tempdir().unwrap();
    let (l, h) = (root.path().join("leader"), root.path().join("helper"));
    init(&l).unwrap();
    init(&h).unwrap();
    let schema_sha = hex::encode(Sha256::digest(serde_json::to_vec(&Schema::health_basics()).unwrap()));
    let base = example_study(
        &schema_sha,
        load_aggregator_key(&l).unwrap().public_key().as_bytes(),
        load_aggregator_key(&h).unwrap().public_key().as_bytes(),
        100,
        Privacy::Epsilon(Epsilon::new(1.0).unwrap()),
    )
    .unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&base.canonical_json().unwrap()).unwrap();
    doc["reports_per_patient"] = json!(n.max(SINGLE));
    let def = StudyDefinition::from_json(&serde_json::to_vec(&doc).unwrap()).unwrap();
    add_study(&l, &def.canonical_json().unwrap()).unwrap();
    add_study(&h, &def.canonical_json().unwrap()).unwrap();
    let encoding = StudyEncoding::new(&Schema::health_basics(), &def).unwrap();
    let sealer = Arc::new(ReportSealer::new(encoding.clone()).unwrap());
    let now = medrelay_client::time::now().unix_seconds();

    println!(
        "private study `{}`: {} coordinates (bits/values/squares: {}/{}/{}), {n} reports",
        def.name(),
        encoding.group_len(medrelay_dp::study::Group::Bits)
            + encoding.group_len(medrelay_dp::study::Group::Values)
            + encoding.group_len(medrelay_dp::study::Group::Squares),
        encoding.group_len(medrelay_dp::study::Group::Bits),
        encoding.group_len(medrelay_dp::study::Group::Values),
        encoding.group_len(medrelay_dp::study::Group::Squares)
    );

    // ------------------------------------------------------------- client
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let people: Vec<Summary> = (0..2000).map(|_| person(&mut rng)).collect();
    let t = Instant::now();
    let sample: Vec<Report> =
        people.iter().map(|p| sealer.seal(&mut rand::rngs::OsRng, p, now).unwrap()).collect();
    let seal_ms = t.elapsed().as_secs_f64() * 1000.0 / sample.len() as f64;
    let size = sample[0].encode().len();
    println!(
        "client: seal one report (encode, shard, 2 HPKE seals)   {seal_ms:>8.3} ms   report {size} bytes"
    );

    // ------------------------------------------ prio alone, in memory
    let leader_key = load_aggregator_key(&l).unwrap();
    let helper_key = load_aggregator_key(&h).unwrap();
    let vdaf = StudyVdaf::new(&encoding).unwrap();
    let key = [7u8; 32];
    let (mut la, mut ha) = (vdaf.aggregate_init(), vdaf.aggregate_init());
    let t = Instant::now();
    for r in &sample {
        let ls = r.open_share(AggregatorRole::Leader, &leader_key).unwrap();
        let hs = r.open_share(AggregatorRole::Helper, &helper_key).unwrap();
        let (lst, lv) =
            vdaf.verify_init(&key, AggregatorRole::Leader, &r.id.0, &r.public_share, &ls).unwrap();
        let (hst, hv) =
            vdaf.verify_init(&key, AggregatorRole::Helper, &r.id.0, &r.public_share, &hs).unwrap();
        let msg = vdaf.verifier_message(&hst, &lv, &hv).unwrap();
        vdaf.accumulate(&mut ha, &vdaf.finish(hst, &msg).unwrap()).unwrap();
        vdaf.accumulate(&mut la, &vdaf.finish(lst, &msg).unwrap()).unwrap();
    }
    let mem = t.elapsed().as_secs_f64();
    println!(
        "prio alone: both aggregators, one thread, no I/O        {} reports prepared and aggregated",
        rate(sample.len(), mem)
    );

    // -------------------------------------------------- the aggregators
    let token = AggregatorToken::generate();
    let helper = LocalServer::start_with(
        &h,
        "helper.bench/log",
        2,
        Quotas::off(),
        Some(AggregatorConfig::Helper { token: token.clone() }),
    )
    .unwrap();
    let leader = LocalServer::start_with(
        &l,
        "leader.bench/log",
        2,
        Quotas::off(),
        Some(AggregatorConfig::Leader { helper_url: helper.url(), token }),
    )
    .unwrap();
    let url = leader.url();
    let pre = PatientSecretKeys::generate(&mut ChaCha20Rng::seed_from_u64(9)).public_keys().to_bytes();

    eprintln!("sealing {n} reports on {CLIENT_THREADS} threads (not timed)...");
    let per_thread = n / CLIENT_THREADS;
    let batches: Vec<Vec<Vec<Vec<u8>>>> = (0..CLIENT_THREADS)
        .map(|t| {
            let sealer = Arc::clone(&sealer);
            std::thread::spawn(move || {
                let mut rng = ChaCha20Rng::seed_from_u64(100 + t as u64);
                let reports: Vec<Vec<u8>> = (0..per_thread)
                    .map(|_| sealer.seal(&mut rand::rngs::OsRng, &person(&mut rng), now).unwrap().encode())
                    .collect();
                reports.chunks(PER_REQUEST).map(<[Vec<u8>]>::to_vec).collect()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|j| j.join().unwrap())
        .collect();
    let total: usize = batches.iter().flatten().map(Vec::len).sum();
    let uploaders: Vec<Http> =
        (0..CLIENT_THREADS).map(|t| register(&url, &pre, 1_000_000 + t as u64)).collect();

    let t0 = Instant::now();
    let handles: Vec<_> = batches
        .into_iter()
        .zip(uploaders)
        .map(|(chunks, http)| {
            std::thread::spawn(move || {
                for chunk in chunks {
                    let r = http.upload_study_reports("bp-by-diabetes", chunk).unwrap();
                    assert!(r.refused.is_empty(), "{:?}", r.refused.first());
                }
            })
        })
        .collect();
    for j in handles {
        j.join().unwrap();
    }
    let uploaded = t0.elapsed().as_secs_f64();
    // The analyst's release: the leader prepares what is still pending,
    // charges and logs, collects the helper's noisy share, adds its own.
    let analyst_token = medrelay_server::enroll_in(
        leader.state().store().as_ref(),
        Role::Analyst,
        "bench",
        leader.state().clock(),
    )
    .unwrap();
    let ana_key = Arc::new(SigningKey::from_seed(&[0xA7; 32]));
    let ana = Http::new(&ServerOptions::new(&url)).unwrap().with_identity(Arc::clone(&ana_key));
    let vk = ana_key.verifying_key();
    let keys = vec![0x42; 8];
    ana.register(&RegisterRequest {
        role: Role::Analyst,
        name: "bench".into(),
        signing_key: vk,
        pre_public_keys: B64(keys.clone()),
        enrollment_token: Some(analyst_token.to_string()),
        signature: ana_key
            .sign(domain::SIG_REGISTRATION, &registration_message(Role::Analyst, "bench", &vk, &keys)),
    })
    .unwrap();
    let t1 = Instant::now();
    let release = ana.study_release("bp-by-diabetes", 0).unwrap();
    let released = t1.elapsed().as_secs_f64();
    let end_to_end = t0.elapsed().as_secs_f64();
    let count: i64 = (0..encoding.blocks())
        .map(|b| release.sums.sums[0][b * (release.sums.sums[0].len() / encoding.blocks())])
        .sum();
    println!("aggregators: {total} reports uploaded ({PER_REQUEST} per request, {CLIENT_THREADS} clients)  {} in {uploaded:.1} s", rate(total, uploaded));
    println!("             prepared with the helper, aggregated, released  {} end to end in {end_to_end:.1} s (release call {released:.1} s; noisy count {count})", rate(total, end_to_end));

    // ------------------------------------ curated ingest, same run
    eprintln!("registering {SINGLE} patients...");
    let patients: Vec<Http> = (0..SINGLE as u64).map(|i| register(&url, &pre, i)).collect();
    let summaries: Vec<Vec<u8>> = (0..SINGLE)
        .map(|i| {
            let p = person(&mut ChaCha20Rng::seed_from_u64(5000 + i as u64));
            serde_json::to_vec(&p.to_doc(&Schema::health_basics())).unwrap()
        })
        .collect();
    let singles: Vec<Vec<u8>> = (0..SINGLE)
        .map(|i| sealer.seal(&mut rand::rngs::OsRng, &people[i % people.len()], now).unwrap().encode())
        .collect();
    let run = |f: &(dyn Fn(usize) + Sync)| {
        let t = Instant::now();
        std::thread::scope(|s| {
            for c in 0..CLIENT_THREADS {
                s.spawn(move || {
                    for i in (c..SINGLE).step_by(CLIENT_THREADS) {
                        f(i);
                    }
                });
            }
        });
        t.elapsed().as_secs_f64()
    };
    let curated = run(&|i| {
        let doc: SummaryDoc = serde_json::from_slice(&summaries[i]).unwrap();
        patients[i].dp_put_summary("health-basics", &doc).unwrap();
    });
    let single = run(&|i| {
        let r = patients[i].upload_study_reports("bp-by-diabetes", vec![singles[i].clone()]).unwrap();
        assert_eq!(r.accepted, 1);
    });
    println!("curated ingest: PUT one summary per request ({SINGLE} patients) {}", rate(SINGLE, curated));
    println!("study upload: one report per request (same patients)        {}", rate(SINGLE, single));
    drop(leader);
    drop(helper);
    let size = |d: &std::path::Path| -> u64 { walk(d) };
    println!("disk after the run: leader {} MiB, helper {} MiB", size(&l) >> 20, size(&h) >> 20);
}

fn walk(d: &std::path::Path) -> u64 {
    std::fs::read_dir(d)
        .map(|it| {
            it.flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
