//! Two `medrelay-server` processes (replicas) on one PostgreSQL database,
//! driven by the real CLIs, behave as one server: tokens issued at one
//! replica enroll at the other; two patients importing at once through
//! different replicas write one log that the auditor's full audit accepts
//! from either replica, whose checkpoints are byte-identical; a revocation
//! through replica A is honoured by replica B at once (even with B's
//! re-encryption key cache warm); DP queries racing at both replicas never
//! overspend the analyst's budget; a replica killed with SIGKILL under
//! write load loses no acknowledged write and the other keeps serving;
//! doctors fetching through B while the patient revokes through A are
//! served nothing after the revocation.
//!
//! The database is a fresh one on the test binary's throwaway cluster
//! (`medrelay_server::store::postgres::testing`): skipped with a message if
//! PostgreSQL is not installed, failed under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use medrelay_crypto::PrincipalId;
use medrelay_fhir::fhir_record_id;
use medrelay_server::store::postgres::testing::fresh_database;

const SCHEMA: &str = "health-basics";

/// One replica: `serve --data DIR --database URL`.
struct Replica {
    data: PathBuf,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    fn start(data: &Path, database: &str) -> Self {
        let port = free_port();
        let log = data.with_extension("log");
        let child = Command::new(bin("medrelay-server"))
            .args(["serve", "--data"])
            .arg(data)
            .args(["--database", database, "--bind", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut r = Self { data: data.to_owned(), port, log, child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while get(port, "/healthz").0 != 200 {
            if let Some(status) = r.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "replica exited with {status}: {}",
                    std::fs::read_to_string(&r.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "replica did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An enrollment token issued by this (running) replica, through its
    /// admin socket.
    fn enroll(&self, role: &str, name: &str) -> String {
        let out = Command::new(bin("medrelay-server"))
            .args(["enroll", "--role", role, "--name", name, "--data"])
            .arg(&self.data)
            .output()
            .unwrap();
        assert!(out.status.success(), "enroll: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("issued by the running server"));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// SIGKILL: no shutdown, nothing flushed.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain HTTP/1.0 GET: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

fn id_of(who: &User) -> PrincipalId {
    who.run(&["whoami", "--json"]).json()["id"].as_str().unwrap().parse().unwrap()
}

/// `user` runs `args` against `server` (the profile's own server otherwise).
fn at(user: &User, server: &Replica, args: &[&str]) -> Out {
    let url = server.url();
    let mut all = vec!["--server", url.as_str()];
    all.extend_from_slice(args);
    user.run(&all)
}

/// `patient` grants `doctor` the laboratory results for 30 days through
/// `server`: the CLI's JSON receipt.
fn grant_labs(patient: &User, server: &Replica, doctor: &PrincipalId) -> serde_json::Value {
    at(
        patient,
        server,
        &[
            "grant",
            &doctor.to_string(),
            "--scope",
            "Observation?category=laboratory",
            "--expires",
            "30d",
            "--yes",
            "--json",
        ],
    )
    .json()
}

/// `init` on `database` and two replicas serving it (`ROOT/a`, and `ROOT/b`,
/// a copy of the data directory: the one log signing key).
fn two_replicas(root: &Path, database: &str) -> (Replica, Replica) {
    let (data_a, data_b) = (root.join("a"), root.join("b"));
    let out = Command::new(bin("medrelay-server"))
        .args(["init", "--data"])
        .arg(&data_a)
        .args(["--database", database])
        .output()
        .unwrap();
    assert!(out.status.success(), "init: {}", String::from_utf8_lossy(&out.stderr));
    assert!(Command::new("cp").arg("-a").arg(&data_a).arg(&data_b).status().unwrap().success());
    (Replica::start(&data_a, database), Replica::start(&data_b, database))
}

#[test]
fn two_replicas_on_one_database_behave_as_one_server() {
    let Some(database) = fresh_database() else { return };
    let root = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (root.path().join("a"), root.path().join("b"));
    let out = Command::new(bin("medrelay-server"))
        .args(["init", "--data"])
        .arg(&data_a)
        .args(["--database", &database])
        .output()
        .unwrap();
    assert!(out.status.success(), "init: {}", String::from_utf8_lossy(&out.stderr));
    // A second `init` on the same database is refused (it would make a
    // second signing key for the one log); a replica is a copy of the data
    // directory, which holds the one log signing key.
    let again = Command::new(bin("medrelay-server"))
        .args(["init", "--data"])
        .arg(root.path().join("other"))
        .args(["--database", &database])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a log"));
    assert!(Command::new("cp").arg("-a").arg(&data_a).arg(&data_b).status().unwrap().success());
    // A PostgreSQL deployment's directory is never served from sled (a
    // second log under the same key would fork it).
    let sled = Command::new(bin("medrelay-server")).args(["serve", "--data"]).arg(&data_a).output().unwrap();
    assert!(!sled.status.success());
    assert!(String::from_utf8_lossy(&sled.stderr).contains("initialized for PostgreSQL"), "{sled:?}");
    let a = Replica::start(&data_a, &database);
    let b = Replica::start(&data_b, &database);

    // Operator commands reach the database while the replicas run.
    let schemas = |env: Option<&str>| {
        let mut c = Command::new(bin("medrelay-server"));
        c.args(["schema", "list", "--data"]).arg(&data_b).env_remove("MEDRELAY_DATABASE");
        if let Some(url) = env {
            c.env("MEDRELAY_DATABASE", url);
        }
        c.output().unwrap()
    };
    let listed = schemas(Some(&database));
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains(SCHEMA), "{listed:?}");
    let unset = schemas(None);
    assert!(!unset.status.success());
    assert!(String::from_utf8_lossy(&unset.stderr).contains("set MEDRELAY_DATABASE"), "{unset:?}");

    // Tokens issued at one replica are used at the other.
    let doctor_token = a.enroll("doctor", "Dr Example");
    let auditor_token = b.enroll("auditor", "Auditor Example");
    let analyst_token = a.enroll("analyst", "Analyst Example");
    let patient = User::new("medrelay-patient", root.path(), "alpha");
    let bravo = User::new("medrelay-patient", root.path(), "bravo");
    let doctor = User::new("medrelay-doctor", root.path(), "doctor");
    let auditor = User::new("medrelay-auditor", root.path(), "auditor");
    let analyst = User::new("medrelay-doctor", root.path(), "analyst");
    patient.run(&["init", "--server", &a.url(), "--name", "Alpha"]).ok();
    bravo.run(&["init", "--server", &b.url(), "--name", "Bravo"]).ok();
    doctor
        .run(&["init", "--server", &b.url(), "--name", "Dr Example", "--enrollment-token", &doctor_token])
        .ok();
    auditor.run(&["init", "--server", &a.url(), "--enrollment-token", &auditor_token]).ok();
    analyst.run(&["init", "--analyst", "--server", &b.url(), "--enrollment-token", &analyst_token]).ok();
    let pid = id_of(&patient);
    let did = id_of(&doctor);

    // Two imports at once, one through each replica: one log.
    let imports: Vec<_> = [(&patient, "alpha"), (&bravo, "bravo")]
        .into_iter()
        .map(|(p, name)| {
            let (bin, profile, home) = (p.bin.clone(), p.profile.clone(), p.home.clone());
            let bundle = data(&format!("fhir-patient-{name}.json"));
            std::thread::spawn(move || {
                let u = User { bin, profile, pass: PASS.to_owned(), home };
                u.run(&["import", bundle.to_str().unwrap()]).ok()
            })
        })
        .collect();
    for h in imports {
        let out = h.join().unwrap();
        assert!(out.contains("uploaded, 0 already present"), "{out}");
    }

    // Granted through A, read through B.
    let g = grant_labs(&patient, &a, &did);
    let grant_id = g["grant_id"].as_str().unwrap().to_owned();
    let shared = at(&doctor, &b, &["shared", "--json"]).json();
    assert_eq!(shared[0]["records"].as_array().unwrap().len(), 3, "{shared}");
    let hba1c = fhir_record_id(&pid, "Observation", "alpha-hba1c");
    // Twice through B (its key cache is warm after the first), once through A.
    for r in [&b, &b, &a] {
        let one = at(&doctor, r, &["fetch", &hba1c.to_string()]).ok();
        assert!(one.contains("\"alpha-hba1c\""), "{one}");
    }

    // Revoked through A: B refuses at once.
    at(&patient, &a, &["revoke", &grant_id]).ok();
    at(&doctor, &b, &["fetch", &hba1c.to_string()]).fails_with("revoked");
    at(&doctor, &a, &["fetch", &hba1c.to_string()]).fails_with("revoked");

    // DP: both patients contribute (one through each replica); sixteen
    // queries of ε = 0.25 race at both replicas against the default budget
    // of ε = 1: exactly four are answered.
    at(&patient, &a, &["contribute", "--schema", SCHEMA, "--yes"]).ok();
    at(&bravo, &b, &["contribute", "--schema", SCHEMA, "--yes"]).ok();
    let queries: Vec<_> = (0..16)
        .map(|i| {
            let (bin, profile, home) = (analyst.bin.clone(), analyst.profile.clone(), analyst.home.clone());
            let url = if i % 2 == 0 { a.url() } else { b.url() };
            std::thread::spawn(move || {
                let u = User { bin, profile, pass: PASS.to_owned(), home };
                u.run(&[
                    "--server",
                    &url,
                    "query",
                    "--schema",
                    SCHEMA,
                    "--epsilon",
                    "0.25",
                    "count",
                    "--json",
                ])
            })
        })
        .collect();
    let outs: Vec<Out> = queries.into_iter().map(|h| h.join().unwrap()).collect();
    let answered = outs.iter().filter(|o| o.code == 0).count();
    assert_eq!(answered, 4, "{outs:?}");
    for o in outs.iter().filter(|o| o.code != 0) {
        assert!(o.stderr.contains("budget"), "{o:?}");
    }
    let budget = at(&analyst, &a, &["budget", "--schema", SCHEMA, "--json"]).json();
    assert_eq!(budget["queries"], 4, "{budget}");
    assert!(budget["remaining_epsilon"].as_f64().unwrap() < 1e-5, "{budget}");

    // The auditor's full audit accepts the one log from either replica, and
    // both replicas sign the same checkpoint.
    for r in [&a, &b] {
        let out = at(&auditor, r, &["verify"]).ok();
        assert!(out.starts_with("ok: "), "{out}");
        let report = at(&auditor, r, &["audit", "--full", "--json"]).json();
        assert_eq!(report["clean"], true, "{report}");
        assert_eq!(report["counts"]["reencryption_served"], 3, "{report}");
    }
    let (ca, cb) = (get(a.port, "/v1/log/checkpoint"), get(b.port, "/v1/log/checkpoint"));
    assert_eq!(ca.0, 200);
    assert_eq!(ca, cb, "one log, one key: identical checkpoints");
}

/// SIGKILL of one replica while both take writes: every write that was
/// acknowledged (the CLI exited 0) is there afterwards, the other replica
/// keeps serving throughout, and the log still verifies.
#[test]
fn a_replica_killed_under_write_load_loses_no_acknowledged_write() {
    let Some(database) = fresh_database() else { return };
    let root = tempfile::tempdir().unwrap();
    let (mut a, b) = two_replicas(root.path(), &database);
    let auditor_token = b.enroll("auditor", "Auditor Example");

    // Writers: patients registering and uploading a file each, alternately
    // through A and B, until A is killed (and a while after, through B).
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let root = root.path().to_owned();
            let (ua, ub) = (a.url(), b.url());
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for i in 0..8 {
                    let url = if i % 2 == 0 { &ua } else { &ub };
                    let p = User::new("medrelay-patient", &root, &format!("w{w}-{i}"));
                    if p.run(&["init", "--server", url, "--name", &format!("W{w} {i}")]).code != 0 {
                        continue;
                    }
                    let file = root.join(format!("w{w}-{i}.txt"));
                    std::fs::write(&file, format!("note {w} {i}")).unwrap();
                    let up = p.run(&["upload", file.to_str().unwrap(), "--category", "general"]);
                    if up.code == 0 {
                        acknowledged.push(p);
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    a.kill();
    let acknowledged: Vec<User> = writers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert!(acknowledged.len() >= 4, "B kept taking writes: {} acknowledged", acknowledged.len());
    for p in &acknowledged {
        let records = at(p, &b, &["records", "--json"]).json();
        assert_eq!(records.as_array().unwrap().len(), 1, "an acknowledged upload is stored");
    }
    let auditor = User::new("medrelay-auditor", root.path(), "auditor");
    auditor.run(&["init", "--server", &b.url(), "--enrollment-token", &auditor_token]).ok();
    let report = auditor.run(&["audit", "--full", "--json"]).json();
    assert_eq!(report["clean"], true, "{report}");
    // Every acknowledged upload is in the log; an upload the killed replica
    // committed but could not acknowledge may be there too.
    let published = report["counts"]["record_published"].as_u64().unwrap() as usize;
    assert!(published >= acknowledged.len(), "{published} < {}: {report}", acknowledged.len());
}

/// One fetch attempt of the race below: when it started and ended, the log
/// indices of what it was served, and the refusal codes it got.
#[derive(Debug)]
struct Attempt {
    started: Instant,
    ended: Instant,
    served: Vec<u64>,
    refused: Vec<String>,
}

/// Doctors fetch through replica B in a tight loop while the patient
/// revokes through replica A: over HTTP, with the real servers, no access
/// is served after the revocation. Every access served has a log index
/// below the revocation's; every fetch that started after the revocation
/// was acknowledged is refused `revoked`; a fetch caught mid-way either
/// completes before the revocation in the log or is refused (the store
/// writes nothing for it, and the server authorizes it afresh); and the
/// auditor's full audit of the log counts exactly the accesses the doctors
/// were answered, each matched against a grant unrevoked at its index.
#[test]
fn fetches_racing_a_revocation_at_the_other_replica_are_served_only_before_it() {
    use medrelay_client::{Connect, Doctor, Passphrase, Patient};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let Some(database) = fresh_database() else { return };
    let root = tempfile::tempdir().unwrap();
    let (a, b) = two_replicas(root.path(), &database);
    let doctor_token = a.enroll("doctor", "Dr Example");
    let auditor_token = b.enroll("auditor", "Auditor Example");
    let patient = User::new("medrelay-patient", root.path(), "alpha");
    let doctor = User::new("medrelay-doctor", root.path(), "doctor");
    let auditor = User::new("medrelay-auditor", root.path(), "auditor");
    patient.run(&["init", "--server", &a.url(), "--name", "Alpha"]).ok();
    doctor
        .run(&["init", "--server", &b.url(), "--name", "Dr Example", "--enrollment-token", &doctor_token])
        .ok();
    auditor.run(&["init", "--server", &b.url(), "--enrollment-token", &auditor_token]).ok();
    let out = patient.run(&["import", data("fhir-patient-alpha.json").to_str().unwrap()]).ok();
    assert!(out.contains("uploaded"), "{out}");
    let (pid, did) = (id_of(&patient), id_of(&doctor));
    let grant = grant_labs(&patient, &a, &did);
    let grant_id = grant["grant_id"].as_str().unwrap().parse().unwrap();
    let labs: Vec<_> = ["alpha-hba1c", "alpha-glucose", "alpha-ldl"]
        .iter()
        .map(|id| fhir_record_id(&pid, "Observation", id))
        .collect();

    // Three doctor sessions on B, each fetching the three lab results one
    // request at a time until told to stop.
    let pass = Passphrase::new(PASS).unwrap();
    let doctors: Vec<Doctor> = (0..3)
        .map(|_| {
            let connect = Connect { server: Some(b.url()), ca_cert: None };
            Doctor::open(&doctor.profile, &connect, &pass).unwrap()
        })
        .collect();
    let stop = AtomicBool::new(false);
    let served_before = AtomicUsize::new(0);
    let (attempts, revoked_at) = std::thread::scope(|scope| {
        let workers: Vec<_> = doctors
            .iter()
            .map(|d| {
                let (stop, served_before, labs) = (&stop, &served_before, &labs);
                scope.spawn(move || {
                    let mut attempts = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        for id in labs {
                            let started = Instant::now();
                            let (served, refused) = match d.fetch(id) {
                                Ok(f) => {
                                    assert_eq!(f.grant_id, grant_id);
                                    assert!(String::from_utf8_lossy(&f.record.body).contains("alpha-"));
                                    served_before.fetch_add(1, Ordering::SeqCst);
                                    (vec![f.log_index], vec![])
                                }
                                Err(e) => {
                                    let code = e.server_code().unwrap_or_else(|| panic!("{e}")).to_owned();
                                    (vec![], vec![code])
                                }
                            };
                            attempts.push(Attempt { started, ended: Instant::now(), served, refused });
                        }
                    }
                    attempts
                })
            })
            .collect();
        // Revoke through A once the doctors are being served.
        let deadline = Instant::now() + Duration::from_secs(60);
        while served_before.load(Ordering::SeqCst) < 12 {
            assert!(Instant::now() < deadline, "the doctors were not served");
            std::thread::sleep(Duration::from_millis(5));
        }
        let connect = Connect { server: Some(a.url()), ca_cert: None };
        let p = Patient::open(&patient.profile, &connect, &pass).unwrap();
        let asked = Instant::now();
        let receipt = p.revoke(&grant_id).unwrap();
        let acknowledged = Instant::now();
        std::thread::sleep(Duration::from_millis(800));
        stop.store(true, Ordering::SeqCst);
        let attempts: Vec<Attempt> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        (attempts, (receipt.log_index, asked, acknowledged))
    });
    let (revocation_index, asked, acknowledged) = revoked_at;

    let served: Vec<u64> = attempts.iter().flat_map(|t| t.served.iter().copied()).collect();
    let overlapping = attempts.iter().filter(|t| t.started < acknowledged && t.ended > asked).count();
    eprintln!(
        "{} fetches, {} served, {} overlapping the revocation (log index {revocation_index})",
        attempts.len(),
        served.len(),
        overlapping
    );
    assert!(served.len() >= 12, "{attempts:?}");
    for t in &attempts {
        for &i in &t.served {
            assert!(
                i < revocation_index,
                "access logged at {i}, after the revocation at {revocation_index}: {t:?}"
            );
        }
        for code in &t.refused {
            // `conflict`: the grant was revoked under this request three
            // times in a row (nothing was written for it).
            assert!(code == "revoked" || code == "conflict", "{t:?}");
        }
        if t.started > acknowledged {
            assert!(t.served.is_empty() && t.refused == ["revoked"], "fetch after the revocation: {t:?}");
        }
    }
    let after: Vec<_> = attempts.iter().filter(|t| t.started > acknowledged).collect();
    assert!(after.len() >= 3, "the doctors kept asking after the revocation: {}", after.len());
    // No fetch was refused before the patient asked to revoke.
    let first_refusal = attempts.iter().filter(|t| !t.refused.is_empty()).map(|t| t.ended).min().unwrap();
    assert!(first_refusal > asked, "refused before the revocation was asked for: {attempts:?}");

    // The log holds exactly the accesses answered, all before the revocation.
    let report = at(&auditor, &b, &["audit", "--full", "--json"]).json();
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["counts"]["reencryption_served"].as_u64().unwrap() as usize, served.len(), "{report}");
    assert_eq!(report["counts"]["grant_revoked"], 1, "{report}");
}

/// A sled deployment moves to PostgreSQL: `migrate` copies it and verifies
/// the log root; the patient's records and verified history carry on over
/// the copy (the client's remembered checkpoint is consistent with it), and
/// the old sled store is never served again.
#[test]
fn a_sled_deployment_migrates_to_postgres_and_carries_on() {
    let Some(database) = fresh_database() else { return };
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::init();
    server.start();
    let patient = User::new("medrelay-patient", root.path(), "alpha");
    patient.run(&["init", "--server", &server.url(), "--name", "Alpha"]).ok();
    patient.run(&["import", data("fhir-patient-alpha.json").to_str().unwrap()]).ok();
    let before = patient.run(&["records", "--json"]).json();
    assert!(patient.run(&["history"]).code == 0);
    server.stop();

    let out = Command::new(bin("medrelay-server"))
        .args(["migrate", "--from"])
        .arg(server.data_dir())
        .args(["--to", &database])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("verified: the copy's log has"), "{stdout}");
    // Once migrated, the directory is never served from sled again.
    let sled = Command::new(bin("medrelay-server"))
        .args(["serve", "--data"])
        .arg(server.data_dir())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&sled.stderr).contains("initialized for PostgreSQL"), "{sled:?}");

    let replica = Replica::start(&server.data_dir(), &database);
    assert_eq!(at(&patient, &replica, &["records", "--json"]).json(), before);
    at(&patient, &replica, &["history"]).ok();
}

/// Every command that takes a database URL honours its `sslmode` and
/// never shows its password: `init`, `serve` and `migrate --to` refuse a
/// server without TLS under `sslmode=require` (the shared test cluster has
/// none), saying so; `--help` hides `MEDRELAY_DATABASE`'s value; a URL that
/// does not parse is refused without being echoed.
#[test]
fn database_urls_honour_sslmode_and_never_show_the_password() {
    const PASSWORD: &str = "pw-N0t-in-any-output";
    let Some(database) = fresh_database() else { return };
    let with_password =
        database.replacen("postgres://medrelay@", &format!("postgres://medrelay:{PASSWORD}@"), 1);
    let require = format!("{with_password}?sslmode=require");
    let root = tempfile::tempdir().unwrap();
    let shown = |out: &std::process::Output| {
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains(PASSWORD), "the password leaked: {text}");
        text
    };
    let fresh_data = |name: &str| root.path().join(name);

    let init = Command::new(bin("medrelay-server"))
        .args(["init", "--data"])
        .arg(fresh_data("init"))
        .env("MEDRELAY_DATABASE", &require)
        .output()
        .unwrap();
    let text = shown(&init);
    assert!(!init.status.success());
    assert!(text.contains("sslmode=require") && text.contains("does not accept TLS"), "{text}");
    assert_eq!(text.matches("does not accept TLS").count(), 1, "the cause is said once: {text}");
    // Nothing was initialized against the database.
    assert!(!fresh_data("init").join("backend").exists(), "{text}");

    // A PostgreSQL deployment made over plaintext (the cluster is local),
    // then served with a URL that requires TLS.
    let data = fresh_data("served");
    let made = Command::new(bin("medrelay-server"))
        .args(["init", "--data"])
        .arg(&data)
        .args(["--database", &format!("{with_password}?sslmode=disable")])
        .output()
        .unwrap();
    shown(&made);
    assert!(made.status.success(), "{made:?}");
    let serve = Command::new(bin("medrelay-server"))
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--bind", &format!("127.0.0.1:{}", free_port())])
        .env("MEDRELAY_DATABASE", &require)
        .output()
        .unwrap();
    let text = shown(&serve);
    assert!(!serve.status.success());
    assert!(text.contains("sslmode=require") && text.contains("does not accept TLS"), "{text}");

    let server = Server::init();
    let migrate = Command::new(bin("medrelay-server"))
        .args(["migrate", "--from"])
        .arg(server.data_dir())
        .args(["--to", &require])
        .output()
        .unwrap();
    let text = shown(&migrate);
    assert!(!migrate.status.success());
    assert!(text.contains("sslmode=require") && text.contains("does not accept TLS"), "{text}");

    let help = Command::new(bin("medrelay-server"))
        .args(["serve", "--help"])
        .env("MEDRELAY_DATABASE", &require)
        .output()
        .unwrap();
    let text = shown(&help);
    assert!(help.status.success() && text.contains("MEDRELAY_DATABASE"), "{text}");

    let bad = Command::new(bin("medrelay-server"))
        .args(["init", "--data"])
        .arg(fresh_data("bad"))
        .args(["--database", &format!("postgres://medrelay:{PASSWORD}@[::1/d")])
        .output()
        .unwrap();
    let text = shown(&bad);
    assert!(!bad.status.success() && text.contains("does not parse"), "{text}");
}
