//! DP query throughput over 100,000 generated summaries stored in sled,
//! through the real HTTP stack on loopback: each request authenticates,
//! takes the validated summaries of the schema, builds the OpenDP
//! measurement, releases, and commits the ledger debit and its log entry
//! durably before answering.
//!
//! Measured in the same run, over the same database:
//! - where the uncached time goes: the sled scan, and parsing + validating
//!   the stored JSON;
//! - the old path: a server with the summary cache off (every query reads and
//!   validates every stored summary);
//! - the cold query: the first query after a summary write (reloads the
//!   cache), on a server with the cache on;
//! - the warm path: the same server once its cache holds the summaries;
//! - `medrelay_dp::answer` over the summaries in memory (no storage, no HTTP).
//!
//! `cargo bench -p medrelay-server --bench dp_queries`
//! (`DP_BENCH_ROWS=1000` for a quick smoke run with fewer summaries).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use medrelay_crypto::{PrincipalId, SigningKey, Timestamp};
use medrelay_dp::{
    answer, plan, AnalystId, Budget, Delta, Epsilon, FieldValue, Ledger, Query, Schema, Summary,
};
use medrelay_policy::{LogEvent, LogSigner};
use medrelay_server::store::{decode_summary, encode_summary, LogAppend, SledStore, Store};
use medrelay_server::{enroll_in, install_default_schema, set_budget_in, AppState, Clock};
use medrelay_wire::Role;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::json;

mod common;
use common::{login, register, request, serve};

const DEFAULT_ROWS: usize = 100_000;
const SEED_THREADS: usize = 8;
const SECONDS: u64 = 5;
const HB: &str = "health-basics";
const SEXES: [&str; 4] = ["female", "male", "other", "unknown"];

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
                    let append = LogAppend::seal(&ev).unwrap();
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

/// Queries per second and median latency of `query` over HTTP, sequential
/// requests for about [`SECONDS`] (at least 5).
fn run_http(addr: &str, token: &str, query: &serde_json::Value) -> (f64, Duration, usize) {
    let body = serde_json::to_vec(query).unwrap();
    let path = format!("/v1/dp/schemas/{HB}/query");
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(SECONDS) || lat.len() < 5 {
        lat.push(one_query(addr, &path, token, &body));
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    (lat.len() as f64 / secs, lat[lat.len() / 2], lat.len())
}

fn one_query(addr: &str, path: &str, token: &str, body: &[u8]) -> Duration {
    let t = Instant::now();
    let (s, b) = request(addr, "POST", path, Some(token), body);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    t.elapsed()
}

fn run_memory(schema: &Schema, rows: &[Summary], query: &serde_json::Value) -> f64 {
    let p = plan(schema, &serde_json::from_value::<Query>(query.clone()).unwrap()).unwrap();
    let budget = Budget { epsilon: Epsilon::new(100.0).unwrap(), delta: Delta::new(1e-6).unwrap() };
    let mut done = 0u32;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) || done < 5 {
        let mut ledger = Ledger::new(AnalystId::from_bytes([0; 32]), HB, budget).unwrap();
        std::hint::black_box(answer(&p, rows, &mut ledger).unwrap());
        done += 1;
    }
    f64::from(done) / start.elapsed().as_secs_f64()
}

/// Resident memory of this process, in bytes (Linux; 0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// Heap and inline bytes of one validated summary, as the cache holds it
/// (payload only; the allocator adds its own rounding to each of its
/// allocations: the values vector, the schema name, each category string).
fn summary_bytes(schema: &Schema, s: &Summary) -> usize {
    let fields = schema.fields().len();
    let strings: usize = (0..fields)
        .filter_map(|i| match s.value(i) {
            Some(FieldValue::Category(c)) => Some(c.len()),
            _ => None,
        })
        .sum();
    std::mem::size_of::<Summary>()
        + fields * std::mem::size_of::<Option<FieldValue>>()
        + s.schema().len()
        + strings
}

fn main() {
    println!(
        "medrelay-server DP query throughput; reproduce: cargo bench -p medrelay-server --bench dp_queries"
    );
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("db")).unwrap();
    let signer = LogSigner::new("bench.medrelay/log", &SigningKey::generate(&mut rng)).unwrap();
    // One database, two servers: the summary cache on (default) and off
    // (every query reads and validates every stored summary: the old path).
    let state = AppState::new(store, Clock::System, signer);
    let uncached = state.clone().with_dp_cache(0);
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

    // Where an uncached query's load goes: the sled scan, then parsing and
    // validating each stored JSON summary (best of 3).
    let schema = Schema::health_basics();
    let (mut scan, mut parse) = (f64::INFINITY, f64::INFINITY);
    let mut rows = Vec::new();
    for _ in 0..3 {
        drop(std::mem::take(&mut rows));
        let t = Instant::now();
        let blobs = state.store().list_summaries(HB, rows_wanted + 1).unwrap();
        scan = scan.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        rows =
            blobs.iter().map(|b| Summary::from_json(&schema, decode_summary(b).unwrap()).unwrap()).collect();
        parse = parse.min(t.elapsed().as_secs_f64());
    }
    assert_eq!(rows.len(), rows_wanted);
    println!(
        "load {rows_wanted} summaries (best of 3): sled scan {:.1} ms + JSON parse and validate {:.1} ms = {:.1} ms",
        scan * 1e3,
        parse * 1e3,
        (scan + parse) * 1e3
    );
    let payload: usize = rows.iter().map(|r| summary_bytes(&schema, r)).sum();
    println!(
        "cached summary size: {:.0} bytes payload each on average (Summary {} B + {} fields x {} B + strings); {:.1} MB for {rows_wanted}",
        payload as f64 / rows.len() as f64,
        std::mem::size_of::<Summary>(),
        schema.fields().len(),
        std::mem::size_of::<Option<FieldValue>>(),
        payload as f64 / 1e6
    );

    let addr_cached = serve(state.clone());
    let addr_uncached = serve(uncached);

    let analyst = SigningKey::generate(&mut rng);
    let token = enroll_in(state.store().as_ref(), Role::Analyst, "bench", state.clock()).unwrap();
    let addr = addr_cached.as_str();
    register(addr, &analyst, Role::Analyst, vec![0u8; 8], Some(token.to_string()));
    let principal = analyst.principal_id();
    let token = login(addr, &analyst);
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

    // The cache's memory: resident size before and after the first load.
    let rss_before = rss_bytes();
    let path = format!("/v1/dp/schemas/{HB}/query");
    let first = one_query(addr, &path, &token, &serde_json::to_vec(&queries[0].1).unwrap());
    let rss_after = rss_bytes();
    assert_eq!(state.dp_cache().cached_rows(HB), Some(rows_wanted));
    println!(
        "first query (cache cold): {:.1} ms; resident memory +{:.1} MB ({:.0} bytes per cached summary; an upper bound: includes the load's freed buffers the allocator keeps)",
        first.as_secs_f64() * 1e3,
        rss_after.saturating_sub(rss_before) as f64 / 1e6,
        rss_after.saturating_sub(rss_before) as f64 / rows_wanted as f64
    );

    println!();
    println!(
        "{:<38} {:>22} {:>15} {:>22} {:>13} {:>11} {:>11}",
        "query",
        "old path (cache off)",
        "cold (reload)",
        "warm (cache on)",
        "dp in memory",
        "warm/old",
        "warm/dp"
    );
    for (name, q) in &queries {
        let body = serde_json::to_vec(q).unwrap();
        let (old_qps, old_p50, _) = run_http(&addr_uncached, &token, q);
        // Cold: the first query after a summary write (an invalidation),
        // median of 3.
        let mut cold: Vec<Duration> = (0..3)
            .map(|_| {
                state.dp_cache().invalidate(HB);
                one_query(addr, &path, &token, &body)
            })
            .collect();
        cold.sort();
        let (warm_qps, warm_p50, _) = run_http(addr, &token, q);
        let mem_qps = run_memory(&schema, &rows, q);
        println!(
            "{name:<38} {:>8.2} q/s ({:>6.1} ms) {:>12.1} ms {:>8.2} q/s ({:>6.1} ms) {:>9.1} q/s {:>10.1}x {:>10.2}",
            old_qps,
            old_p50.as_secs_f64() * 1e3,
            cold[1].as_secs_f64() * 1e3,
            warm_qps,
            warm_p50.as_secs_f64() * 1e3,
            mem_qps,
            warm_qps / old_qps,
            warm_qps / mem_qps
        );
    }
    println!(
        "\n(HTTP: sequential requests, new connection each, {SECONDS} s per figure, p50 latency in brackets; {rows_wanted} stored summaries)"
    );
}
