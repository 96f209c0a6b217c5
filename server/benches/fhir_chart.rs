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
use medrelay_client::{Connect, Doctor, FetchFormat, ImportRequest, Passphrase, Patient, ServerOptions};
use medrelay_fhir::{plan_import, Format, ImportOptions, Source};
use medrelay_policy::Purpose;
use medrelay_server::store::SledStore;
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

/// Where the data directory's bytes are: each file (or directory) of the
/// sled database (`segments/` holds the segment files), and the live keys
/// and values by key prefix (the store's namespaces, `r/`, `l/`, `n/`,
/// …), split into what sled holds and what the segment files hold, from the
/// store reopened after the server stopped.
fn storage_breakdown(data: &Path, plain: u64) {
    let db_path = data.join("db");
    println!("data directory by file:");
    let mut files: Vec<(String, u64)> = std::fs::read_dir(&db_path)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            let n = if m.is_dir() { dir_bytes(&e.path()) } else { m.len() };
            (e.file_name().to_string_lossy().into_owned(), n)
        })
        .collect();
    files.sort();
    for (name, n) in &files {
        println!("  {name:<24} {n:>12} bytes");
    }
    let store = SledStore::open_waiting(&db_path, std::time::Duration::from_secs(30)).unwrap();
    let usage = store.storage_usage().unwrap();
    println!(
        "live keys and values by prefix (in sled: keys, values or segment references; in segment files):"
    );
    let (mut tk, mut tv, mut ts) = (0, 0, 0);
    for (prefix, u) in &usage.prefixes {
        println!(
            "  {prefix:<8} {:>7} entries {:>10} key bytes {:>10} sled value bytes {:>10} segment bytes  {:>6.3} per \
             plaintext byte",
            u.entries,
            u.key_bytes,
            u.value_bytes,
            u.segment_bytes,
            (u.key_bytes + u.value_bytes + u.segment_bytes) as f64 / plain as f64
        );
        tk += u.key_bytes;
        tv += u.value_bytes;
        ts += u.segment_bytes;
    }
    println!(
        "  total    {tk:>26} key bytes {tv:>10} sled value bytes {ts:>10} segment bytes  {:>6.3} per plaintext byte",
        (tk + tv + ts) as f64 / plain as f64
    );
    println!(
        "segment files: {} files, {} bytes, of which {} unreferenced (headers included)",
        usage.segment_files,
        usage.segment_file_bytes,
        usage.segment_garbage()
    );
}

/// (sled's own files, segment files) under the data directory's store.
fn split_bytes(data: &Path) -> (u64, u64) {
    let segs = dir_bytes(&data.join("db/segments"));
    (dir_bytes(&data.join("db")) - segs, segs)
}

fn opts2(server: &LocalServer) -> ServerOptions {
    ServerOptions::new(server.url())
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
    Doctor::init(&root.path().join("doctor"), &opts, "Dr Bench", &token, &pass).unwrap();
    let before = dir_bytes(&data);
    let db_before = std::fs::metadata(data.join("db/db")).unwrap().len();
    let blobs_before = dir_bytes(&data.join("db/blobs"));
    let (sled_before, segs_before) = split_bytes(&data);
    println!(
        "data directory before the import: {before} bytes (db file {db_before}, blobs {blobs_before}, \
         segment files {segs_before})"
    );

    let request = ImportRequest { paths: vec![path.clone()], ..ImportRequest::default() };
    let t = Instant::now();
    let report = patient.import(&request, &mut |_| ()).unwrap();
    let import_secs = t.elapsed().as_secs_f64();
    assert_eq!((report.uploaded(), report.failed(), report.problems()), (n, 0, 0));
    let stored = dir_bytes(&data) - before;
    server.stop().unwrap();
    let stopped = dir_bytes(&data) - before;
    let (sled_after, segs_after) = split_bytes(&data);
    println!(
        "after the import, server stopped: sled files grew {} bytes ({:.3} per plaintext byte), segment files \
         {} bytes ({:.3}); the directory {stopped} bytes ({:.3})",
        sled_after - sled_before,
        (sled_after - sled_before) as f64 / plain as f64,
        segs_after - segs_before,
        (segs_after - segs_before) as f64 / plain as f64,
        stopped as f64 / plain as f64
    );
    storage_breakdown(&data, plain);
    let server = LocalServer::start(&data, "bench.medrelay/log", 2).unwrap();
    println!("after reopening the store: data directory {} bytes", dir_bytes(&data));
    let connect = Connect { server: Some(server.url().to_string()), ca_cert: None };
    let patient = Patient::open(&root.path().join("patient"), &connect, &pass).unwrap();
    let doctor = Doctor::open(&root.path().join("doctor"), &connect, &pass).unwrap();

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
    // The same chart again, as patients 2 to 6, into the same database: what
    // one more chart adds once sled has segments to clean and reuse (each
    // measured from after its patient's registration to after the server
    // stopped). sled's file grows by whole 512 KiB segments when its
    // cleaner falls behind, so one import may add one or two and the next
    // none: the mean is the figure that holds for a store of many charts.
    const MORE: u32 = 6;
    let mut growth = Vec::new();
    let mut server = Some(server);
    let mut stored2 = 0;
    let mut after2 = 0;
    for k in 2..=MORE {
        let home = root.path().join(format!("patient{k}"));
        let opts = opts2(server.as_ref().unwrap());
        let next = Patient::init(&home, &opts, &format!("Fletcher {k}"), &pass).unwrap();
        // From after the registration (a patient's PRE public keys are
        // ~0.5 MB), as for the first import.
        let at = dir_bytes(&data);
        let (sled_at, segs_at) = split_bytes(&data);
        if k == 2 {
            println!("after the restart, the grant, fetch-all and a registration: data directory {at} bytes");
        }
        let report = next.import(&request, &mut |_| ()).unwrap();
        assert_eq!(report.uploaded(), n);
        if k == 2 {
            after2 = dir_bytes(&data);
            stored2 = after2 as i64 - at as i64;
        }
        server.take().unwrap().stop().unwrap();
        let (sled_k, segs_k) = split_bytes(&data);
        let grew = (dir_bytes(&data) as f64 - at as f64) / plain as f64;
        growth.push(grew);
        println!(
            "import {k} (patient {k}): sled files grew {} bytes ({:.3} per plaintext byte), segment files {} bytes \
             ({:.3}); the directory {grew:.3} per plaintext byte",
            sled_k as i64 - sled_at as i64,
            (sled_k as f64 - sled_at as f64) / plain as f64,
            segs_k - segs_at,
            (segs_k - segs_at) as f64 / plain as f64,
        );
        if k == 2 {
            println!("after the grant, fetch-all and the second import:");
            storage_breakdown(&data, plain);
        }
        if k < MORE {
            server = Some(LocalServer::start(&data, "bench.medrelay/log", 2).unwrap());
        }
    }

    let mean = growth.iter().sum::<f64>() / growth.len() as f64;
    let (lo, hi) = growth.iter().fold((f64::MAX, f64::MIN), |(l, h), g| (l.min(*g), h.max(*g)));
    println!(
        "imports 2 to {MORE}: the directory grew {mean:.2} per plaintext byte on average (each between {lo:.2} \
         and {hi:.2})"
    );

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
        "import {import_secs:.2} s; server data directory grew by {stored} bytes ({:.1} KiB per record); \
         {stopped} bytes ({:.2} per plaintext byte) once the server stopped and flushed",
        stored as f64 / n as f64 / 1024.0,
        stopped as f64 / plain as f64
    );
    println!(
        "the same chart imported again as a second patient: the directory grew by {stored2} bytes \
         ({:.2} per plaintext byte); {after2} bytes in all, {:.2} per plaintext byte of both charts",
        stored2 as f64 / plain as f64,
        (after2 - before) as f64 / (2 * plain) as f64
    );
}
