//! A real chart end to end: the 1,111-entry Synthea export of
//! `../shared/fhir-samples/synthea/` (Fletcher Hyatt) imported by the
//! patient client into a real server on loopback (sled, flushed writes),
//! then fetched in full by a doctor as one FHIR Bundle. Each figure is
//! printed next to raw AES-256-GCM over the same plaintext bytes, measured
//! in the same run:
//!
//! - import rate (resources/s): planning, labelling, encryption, upload;
//! - bytes the server's data directory grew by, per plaintext byte;
//! - `fetch-all` time (every record granted), and its rate.
//!
//! `cargo bench -p medrelay-server --bench fhir_chart` (needs `../shared/`;
//! without it the bench says so and exits).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use medrelay_client::{Doctor, FetchFormat, ImportRequest, Passphrase, Patient, ServerOptions};
use medrelay_fhir::{plan_import, Format, ImportOptions, Source};
use medrelay_policy::Purpose;
use medrelay_server::{enroll_in, init, LocalServer};
use medrelay_wire::Role;
use rand::RngCore;

fn dir_bytes(p: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() { dir_bytes(&e.path()) } else { m.len() };
    }
    n
}

fn chart() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fhir-samples/synthea");
    std::fs::read_dir(dir)
        .ok()?
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("Fletcher_Hyatt"))
}

/// Raw AES-256-GCM over each body: (encrypt seconds, decrypt seconds,
/// ciphertext bytes incl. nonce and tag).
fn raw_aes_gcm(bodies: &[Vec<u8>]) -> (f64, f64, u64) {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let cipher = Aes256Gcm::new(&key.into());
    let mut sealed = Vec::with_capacity(bodies.len());
    let t = Instant::now();
    for b in bodies {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut buf = b.clone();
        let tag = cipher.encrypt_in_place_detached(Nonce::from_slice(&nonce), b"header", &mut buf).unwrap();
        sealed.push((nonce, buf, tag));
    }
    let enc = t.elapsed().as_secs_f64();
    let bytes: u64 = sealed.iter().map(|(n, c, t)| (n.len() + c.len() + t.len()) as u64).sum();
    let t = Instant::now();
    for (nonce, c, tag) in &mut sealed {
        cipher.decrypt_in_place_detached(Nonce::from_slice(nonce), b"header", c, tag).unwrap();
    }
    (enc, t.elapsed().as_secs_f64(), bytes)
}

fn main() {
    let Some(path) = chart() else {
        println!("fhir_chart: ../shared/fhir-samples/ is not present; nothing measured");
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    // The plaintext the records hold: the planned record bodies.
    let plan = plan_import(
        &[Source { name: "chart.json", bytes: &bytes, format: Format::Json }],
        &ImportOptions::default(),
    );
    let bodies: Vec<Vec<u8>> = plan.records.iter().map(|r| r.body.clone()).collect();
    let plain: u64 = bodies.iter().map(|b| b.len() as u64).sum();
    let n = bodies.len();

    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("server");
    init(&data).unwrap();
    let server = LocalServer::start(&data, "bench.medrelay/log", 2).unwrap();
    let opts = ServerOptions::new(server.url());
    let pass = Passphrase::new("bench passphrase, synthetic data").unwrap();
    let patient = Patient::init(&root.path().join("patient"), &opts, "Fletcher", &pass).unwrap();
    let token =
        enroll_in(server.state().store().as_ref(), Role::Doctor, "Dr Bench", server.state().clock()).unwrap();
    let doctor = Doctor::init(&root.path().join("doctor"), &opts, "Dr Bench", &token, &pass).unwrap();
    let before = dir_bytes(&data);

    let request = ImportRequest { paths: vec![path.clone()], ..ImportRequest::default() };
    let t = Instant::now();
    let report = patient.import(&request, &mut |_| ()).unwrap();
    let import_secs = t.elapsed().as_secs_f64();
    assert_eq!((report.uploaded(), report.failed(), report.problems()), (n, 0, 0));
    let stored = dir_bytes(&data) - before;

    // Every type of the chart, and its one label: the whole chart.
    let mut types: Vec<&str> = plan.records.iter().map(|r| r.resource_type.as_str()).collect();
    types.sort();
    types.dedup();
    let scope = format!("{},sensitive:substance-use", types.join(","));
    let d = patient.doctor(&doctor.id()).unwrap();
    patient.grant(&d, &scope.parse().unwrap(), 86_400, Purpose::Treatment).unwrap();
    let out = root.path().join("chart");
    let t = Instant::now();
    let fetched = doctor.fetch_all(&patient.id(), &out, FetchFormat::Bundle, &mut |_| ()).unwrap();
    let fetch_secs = t.elapsed().as_secs_f64();
    assert_eq!(fetched.resources, n);
    assert!(fetched.failed.is_empty() && fetched.denied.is_empty());
    server.stop().unwrap();

    let (aes_enc, aes_dec, aes_bytes) = raw_aes_gcm(&bodies);
    println!("medrelay FHIR chart benchmark: {} ({n} resources, {plain} plaintext bytes)", path.display());
    println!();
    println!("{:<58} {:>14} {:>14} {:>10}", "", "medrelay", "raw AES-GCM", "ratio");
    println!(
        "{:<58} {:>12.0}/s {:>12.0}/s {:>10.0}",
        "import rate (resources/s)",
        n as f64 / import_secs,
        n as f64 / aes_enc,
        (n as f64 / aes_enc) / (n as f64 / import_secs)
    );
    println!(
        "{:<58} {:>14.1} {:>14.3} {:>10.0}",
        "bytes stored per plaintext byte",
        stored as f64 / plain as f64,
        aes_bytes as f64 / plain as f64,
        (stored as f64 / plain as f64) / (aes_bytes as f64 / plain as f64)
    );
    println!(
        "{:<58} {:>12.2} s {:>12.4} s {:>10.0}",
        "fetch-all of the whole chart (seconds)",
        fetch_secs,
        aes_dec,
        fetch_secs / aes_dec
    );
    println!(
        "{:<58} {:>12.0}/s {:>12.0}/s",
        "fetch-all rate (resources/s)",
        n as f64 / fetch_secs,
        n as f64 / aes_dec
    );
    println!();
    println!(
        "import {import_secs:.2} s; server data directory grew by {stored} bytes ({:.1} KiB per record)",
        stored as f64 / n as f64 / 1024.0
    );
}
