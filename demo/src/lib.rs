//! medrelay's narrated demo (`cargo run --release -p medrelay-demo`): the
//! whole story on in-process servers, told step by step in plain words.
//!
//! The demo creates a fresh data directory (a temporary one, or `--data
//! DIR`), starts the real HTTP server on a free loopback port over the sled
//! store ([`LocalServer`]), and plays every role through the same client
//! library the command-line clients use: a patient imports a synthetic FHIR
//! bundle, grants a doctor laboratory results for 30 days, the doctor reads
//! them and is refused a mental-health record, the patient revokes, the
//! patient reads the access history, an auditor verifies the log and audits
//! it in full, patients contribute DP summaries and an analyst asks noisy
//! aggregate questions, the same patients contribute to a private study
//! that a second, helper aggregator runs with the server (neither sees a
//! summary), and finally every byte both servers stored is scanned for
//! plaintext.
//!
//! Each step checks that the system behaved as the narration says; the
//! first deviation stops the demo with a [`DemoError`] naming the step (and
//! the binary exits non-zero).
//!
//! It lives in its own crate, beside the clients it drives, so that the
//! server library does not link the client library; it uses only the
//! server's public API.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use medrelay_client::{
    Analyst, Auditor, Doctor, FetchFormat, ImportRequest, Passphrase, Patient, SharedPatient,
};
use medrelay_crypto::{PrincipalId, RecordId};
use medrelay_dp::{Epsilon, Filter, Privacy, Query, Statistic};
use medrelay_fhir::fhir_record_id;
use medrelay_policy::{Purpose, Scope};
use medrelay_server::scan::{Needles, ScanReport};
use medrelay_server::{enroll_in, DatabaseUrl, Quotas, Rate};
use medrelay_wire::Role;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

mod cohort;
mod database;
mod deployment;
mod story;
mod study;

use cohort::cohort_bundle;
use database::database_name;
use deployment::Deployment;
use story::{describe_answer, describe_observation, expect_denied, short, AtStep, Story};
use study::study_step;

/// The synthetic FHIR bundles shipped in `tests/data/` (written for
/// medrelay; they describe no real person). Alpha's is shaped like a real
/// export: a transaction Bundle with `urn:uuid` references, an Organization
/// and a Practitioner without ids, encounters, a claim, and a depression
/// diagnosis coded only in SNOMED CT.
const BUNDLES: [(&str, &str, &str); 3] = [
    ("Alpha", "fhir-patient-alpha.json", include_str!("../../tests/data/fhir-patient-alpha.json")),
    ("Bravo", "fhir-patient-bravo.json", include_str!("../../tests/data/fhir-patient-bravo.json")),
    ("Charlie", "fhir-patient-charlie.json", include_str!("../../tests/data/fhir-patient-charlie.json")),
];

/// A laboratory result labelled mental health (`meta.security` PSY): a
/// synthetic lithium level for Alpha. It is in a "laboratory" scope by
/// category, and excluded from it by its label.
const LITHIUM: &str = r#"{"resourceType":"Observation","id":"alpha-lithium","status":"final",
 "meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},
 "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
 "code":{"coding":[{"system":"http://loinc.org","code":"14334-7","display":"Lithium [Moles/volume] in Serum or Plasma"}]},
 "subject":{"reference":"Patient/synthetic-alpha"},"effectiveDateTime":"2026-09-02T08:40:00Z",
 "valueQuantity":{"value":0.7,"unit":"mmol/L"}}"#;

/// The DP summary schema `medrelay-server init` installs.
const SCHEMA: &str = "health-basics";
/// The scope of the doctor's grant.
const LAB_SCOPE: &str = "Observation?category=laboratory";
/// The grant's validity.
const GRANT_DAYS: u64 = 30;
/// ε of the analyst's count.
const COUNT_EPSILON: f64 = 0.5;
/// ε of the analyst's median.
const MEDIAN_EPSILON: f64 = 0.4;
/// ε of a third question: more than the default budget (ε = 1) has left.
const GREEDY_EPSILON: f64 = 0.2;
/// The passphrase every demo profile is sealed under (a demo on synthetic
/// data; real users pick their own).
const DEMO_PASSPHRASE: &str = "demo passphrase for synthetic data";
/// Strings from the records that must never appear in the server's files.
const CANARIES: [&str; 4] =
    ["Synthetic-Alpha", "Major depressive disorder", "Hemoglobin A1c", "Lithium [Moles/volume]"];

/// Synthetic patients the demo generates for the DP study by default.
pub const DEFAULT_COHORT: u16 = 40;

/// How to run the demo.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Keep everything under this directory (it must be absent or empty):
    /// the server's data in `DIR/server` (over PostgreSQL, each replica's
    /// in `DIR/replica-a`, `DIR/replica-b`, …), client profiles in
    /// `DIR/profiles`. `None`: a temporary directory, removed at the end.
    pub data: Option<PathBuf>,
    /// Synthetic patients generated for the DP study, besides Alpha, Bravo
    /// and Charlie.
    pub cohort: usize,
    /// Seed of the synthetic cohort's values (not of any key: keys come from
    /// the operating system's RNG).
    pub seed: u64,
    /// Keep the server's store in this PostgreSQL database (it must hold
    /// no medrelay log yet) instead of the embedded sled database.
    pub database: Option<DatabaseUrl>,
    /// Server replicas over the one database, 1 to [`MAX_REPLICAS`]; more
    /// than one only with [`DemoOptions::database`].
    pub replicas: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self { data: None, cohort: usize::from(DEFAULT_COHORT), seed: 2026, database: None, replicas: 1 }
    }
}

/// Most server replicas the demo runs.
pub const MAX_REPLICAS: usize = 3;

impl DemoOptions {
    /// Refuses replica counts the demo cannot run.
    fn check(&self) -> Result<(), String> {
        if !(1..=MAX_REPLICAS).contains(&self.replicas) {
            return Err(format!("--replicas must be 1 to {MAX_REPLICAS}, not {}", self.replicas));
        }
        if self.replicas > 1 && self.database.is_none() {
            return Err("several replicas need a shared PostgreSQL database (--database postgres://…): \
                        sled admits one process per database"
                .into());
        }
        Ok(())
    }
}

/// What a finished demo reports.
#[derive(Clone, Debug)]
pub struct DemoOutcome {
    /// Steps narrated.
    pub steps: usize,
    /// Entries in the audit log at the end.
    pub log_entries: u64,
    /// The kept directory (`--data`), if any.
    pub kept: Option<PathBuf>,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// A step that did not behave as narrated, or could not run.
#[derive(Debug, thiserror::Error)]
#[error("demo step {step} ({title}): {message}")]
pub struct DemoError {
    /// Step number.
    pub step: usize,
    /// Step title.
    pub title: &'static str,
    /// What went wrong.
    pub message: String,
}

/// Directory layout of one run.
struct Dirs {
    /// Holds the temporary directory alive.
    _temp: Option<tempfile::TempDir>,
    root: PathBuf,
}

impl Dirs {
    fn new(data: Option<&Path>) -> Result<Self, String> {
        match data {
            Some(d) => {
                if d.exists() {
                    let mut it = std::fs::read_dir(d).map_err(|e| format!("{}: {e}", d.display()))?;
                    if it.next().is_some() {
                        return Err(format!(
                            "{} is not empty: the demo needs a fresh directory (or none, for a temporary one)",
                            d.display()
                        ));
                    }
                }
                std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
                Ok(Self { _temp: None, root: d.to_path_buf() })
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("medrelay-demo-")
                    .tempdir()
                    .map_err(|e| format!("temporary directory: {e}"))?;
                Ok(Self { root: t.path().to_path_buf(), _temp: Some(t) })
            }
        }
    }
    fn profile(&self, name: &str) -> PathBuf {
        self.root.join("profiles").join(name.to_lowercase().replace(' ', "-"))
    }
    /// Files on the patients' own machines (FHIR exports).
    fn inbox(&self, name: &str) -> PathBuf {
        self.root.join("patients-files").join(name)
    }
}

/// Runs the demo, narrating to `out`.
pub fn run(opts: &DemoOptions, out: &mut impl Write) -> Result<DemoOutcome, DemoError> {
    let started = Instant::now();
    let mut story = Story { out, step: 0, title: "setting up" };
    opts.check().map_err(|e| story.fail(e))?;
    let dirs = Dirs::new(opts.data.as_deref()).map_err(|e| story.fail(e))?;
    let pass = Passphrase::new(DEMO_PASSPHRASE).at(&story)?;

    // 1. The operator.
    let n = opts.replicas;
    story.step(if n == 1 {
        "The operator starts a medrelay server"
    } else {
        "The operator starts medrelay replicas"
    });
    // Every demo patient registers and logs in from this machine's loopback
    // address: the anonymous quotas are raised to fit the cohort.
    let fit = |n: usize, secs| Rate::per(u32::try_from(n).unwrap_or(u32::MAX), secs).unwrap_or(Rate::Off);
    let people = opts.cohort + 16;
    let quotas = Quotas {
        register_per_source: fit(people, 3600),
        register_total: fit(people.max(300), 3600),
        login_per_source: fit((4 * people).max(120), 60),
        ..Quotas::default()
    };
    let servers = Deployment::start(&dirs.root, opts.database.as_ref(), n, quotas).at(&story)?;
    match servers.database() {
        None => {
            story.say(format!("data directory: {} (sled, embedded)", servers.dirs()[0].display()));
            story.say(format!(
                "log signing key made; auditors pin its fingerprint {}",
                servers.log_key().fingerprint()
            ));
            story.say(format!("serving the HTTP API on {} (in this process)", servers.at(0).url()));
        }
        Some(url) => {
            story.say(format!(
                "store: PostgreSQL database {} (schema migrated at start); replica A's data directory {} holds \
                 the log signing key, whose public half the database records",
                database_name(url),
                servers.dirs()[0].display()
            ));
            story.say(format!(
                "log signing key made; auditors pin its fingerprint {}",
                servers.log_key().fingerprint()
            ));
            for i in 0..n {
                let copy =
                    if i == 0 { String::new() } else { ", a copy of A's: one log, one signing key".into() };
                story.say(format!(
                    "replica {} serves the HTTP API on {} (in this process; data directory {}{copy})",
                    servers.name(i),
                    servers.at(i).url(),
                    servers.dirs()[i].display()
                ));
            }
            story.say(
                "a balancer would spread the clients over the replicas; here each role is sent to one, \
                 so every step below crosses replicas",
            );
        }
    }
    // Enrollment tokens are rows of the one store: any replica issues them.
    let enroll = |story: &Story<'_>, role: Role, name: &str| {
        let server = servers.at(0);
        enroll_in(server.state().store().as_ref(), role, name, server.state().clock()).at(story)
    };
    // Which replica serves whom.
    let (at_patient, at_doctor, at_auditor) = (0, 1 % n, n - 1);

    // 2. Alpha imports records.
    story.step("Patient Alpha makes keys and imports a FHIR export");
    let alpha =
        Patient::init(&dirs.profile("alpha"), &servers.options(at_patient), "Alpha", &pass).at(&story)?;
    let who = alpha.whoami();
    story.say(format!(
        "Alpha's id {} (keys made on Alpha's machine; only public halves sent){}",
        who.id,
        servers.via(at_patient)
    ));
    story.say(format!(
        "signing key {}, PRE keys (Umbral + lattice) {}",
        who.signing_key_fingerprint,
        who.pre_key_fingerprint.as_deref().unwrap_or("-")
    ));
    let files = write_files(&dirs.inbox("alpha"), &[(BUNDLES[0].1, BUNDLES[0].2), ("lithium.json", LITHIUM)])
        .at(&story)?;
    let request = ImportRequest { paths: files, ..ImportRequest::default() };
    let plan = alpha.import(&ImportRequest { dry_run: true, ..request.clone() }, &mut |_| ()).at(&story)?;
    story.say(format!(
        "Alpha's export: a transaction Bundle of 16 entries (urn:uuid references, an Organization and a \
         Practitioner without ids, a Claim), plus a lab result labelled PSY; a dry run shows {} records and \
         what would be labelled, and why:",
        plan.records()
    ));
    let labelled: Vec<(String, Vec<String>)> =
        plan.labelled.iter().map(|l| (l.resource.clone(), l.reasons.clone())).collect();
    for (resource, reasons) in &labelled {
        story.say(format!("  {resource}: {}", reasons.join("; ")));
    }
    let want_labelled = [
        "Condition/alpha-depression",
        "Encounter/alpha-visit-2",
        "Claim/alpha-claim-2",
        "Observation/alpha-lithium",
    ];
    story.expect(
        sorted_strings(labelled.iter().map(|(r, _)| r.clone()).collect())
            == sorted_strings(want_labelled.map(String::from).to_vec())
            && labelled.iter().all(|(_, why)| why.iter().all(|w| w.starts_with("mental-health: "))),
        || format!("expected exactly {want_labelled:?} to be labelled mental-health, got {labelled:?}"),
    )?;
    let report = alpha.import(&request, &mut |_| ()).at(&story)?;
    story.expect(report.failed() == 0 && report.problems() == 0 && report.uploaded() == 17, || {
        format!(
            "expected 17 records uploaded, got {} uploaded, {} files failed, {} bad entries",
            report.uploaded(),
            report.failed(),
            report.problems()
        )
    })?;
    story.say(format!(
        "encrypted and uploaded {} records (AES-256-GCM bodies, one hybrid capsule per key class, owner-signed headers){}:",
        report.uploaded(),
        servers.via(at_patient)
    ));
    for r in alpha.records().at(&story)? {
        let source = r.source.unwrap_or_default();
        story.say(format!(
            "  {}  {:<48} {}",
            short(r.record_id),
            r.category.unwrap_or_default(),
            source.rsplit('#').next().unwrap_or_default()
        ));
    }

    // 3. A doctor enrolls; Alpha grants lab results.
    story.step("Dr Grey enrolls; Alpha grants laboratory results for 30 days");
    let token = enroll(&story, Role::Doctor, "Dr Grey")?;
    story.say(format!(
        "the operator issued Dr Grey a one-time enrollment token{}",
        if n == 1 {
            String::new()
        } else {
            format!(
                " at replica {}; Dr Grey redeems it at replica {} (tokens, challenges and sessions are rows of \
                 the one database)",
                servers.name(0),
                servers.name(at_doctor)
            )
        }
    ));
    let doctor =
        Doctor::init(&dirs.profile("dr-grey"), &servers.options(at_doctor), "Dr Grey", &token, &pass)
            .at(&story)?;
    let dwho = doctor.whoami();
    let d = alpha.doctor(&doctor.id()).at(&story)?;
    let seen = d.doctor_key().at(&story)?.fingerprint().to_string();
    story.expect(Some(&seen) == dwho.pre_key_fingerprint.as_ref(), || {
        format!("the directory's key fingerprint {seen} is not the one Dr Grey holds")
    })?;
    if n == 1 {
        story.say(format!("Dr Grey's id {}; Alpha checks the key fingerprint {seen} with Dr Grey", dwho.id));
    } else {
        story.say(format!(
            "Dr Grey's id {}, registered through replica {}; Alpha, at replica {}, finds that key in the one \
             directory and checks the fingerprint {seen} with Dr Grey",
            dwho.id,
            servers.name(at_doctor),
            servers.name(at_patient)
        ));
    }
    let scope: Scope = LAB_SCOPE.parse().at(&story)?;
    let grant = alpha.grant(&d, &scope, GRANT_DAYS * 86_400, Purpose::Treatment).at(&story)?;
    story.say(format!(
        "grant {} signed by Alpha: scope \"{}\", purpose {}, for {GRANT_DAYS} days{}",
        grant.grant_id,
        grant.scope,
        grant.purpose,
        servers.via(at_patient)
    ));
    story.say(
        "with it, Alpha sent re-encryption keys: they let the server transform capsules, never read them",
    );

    // 4. The doctor reads the labs and is refused the rest.
    story.step("Dr Grey reads the shared laboratory results, and is refused the rest");
    let aid = alpha.id();
    let labs: Vec<RecordId> = ["alpha-hba1c", "alpha-glucose", "alpha-ldl"]
        .iter()
        .map(|i| fhir_record_id(&aid, "Observation", i))
        .collect();
    let shared = doctor.shared().at(&story)?;
    let offered = shared_records(&shared, &aid);
    story.expect(sorted(offered.clone()) == sorted(labs.clone()), || {
        format!("expected exactly Alpha's 3 unlabelled lab results to be shared, got {offered:?}")
    })?;
    story.say(format!("Dr Grey sees {} records shared by Alpha{}", offered.len(), servers.via(at_doctor)));
    for id in &labs {
        let f = doctor.fetch(id).at(&story)?;
        let resource = f.record.fhir_entry().at(&story)?.resource;
        story.say(format!(
            "fetched {} → decrypted on Dr Grey's machine: {} (log entry {}{})",
            short(id),
            describe_observation(&resource),
            f.log_index,
            if n == 1 {
                String::new()
            } else {
                format!("; re-encrypted by replica {}", servers.name(at_doctor))
            }
        ));
    }
    let depression = fhir_record_id(&aid, "Condition", "alpha-depression");
    expect_denied(&story, doctor.fetch(&depression), "out_of_scope")?;
    story.say(format!(
        "depression diagnosis {} → refused: out_of_scope (a Condition is not a laboratory result)",
        short(depression)
    ));
    let lithium = fhir_record_id(&aid, "Observation", "alpha-lithium");
    expect_denied(&story, doctor.fetch(&lithium), "sensitive_excluded")?;
    story.say(format!(
        "lithium level {} → refused: sensitive_excluded (a lab result, but labelled mental health: \
         only a grant that names that label covers it)",
        short(lithium)
    ));
    let chart_dir = dirs.root.join("doctors-files").join("dr-grey");
    let chart = doctor.fetch_all(&aid, &chart_dir, FetchFormat::Bundle, &mut |_| ()).at(&story)?;
    story.expect(
        chart.resources == 3
            && chart.by_type.get("Observation") == Some(&3)
            && chart.withheld.is_empty()
            && chart.failed.is_empty(),
        || format!("expected a Bundle of the 3 lab results and nothing else listed; got {chart:?}"),
    )?;
    story.say(format!(
        "fetch-all → one FHIR R4 Bundle ({}) of {} resources, each as Alpha published it; the server \
         listed nothing else, so Dr Grey learns nothing of Alpha's other {} records",
        chart.bundle.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
        chart.resources,
        17 - chart.resources
    ));

    // 5. Revocation.
    story.step("Alpha revokes the grant; Dr Grey is refused again");
    let doctors_cache = servers.at(at_doctor).state().rekey_cache();
    let warm = doctors_cache.contains(&grant.grant_id);
    alpha.revoke(&grant.grant_id).at(&story)?;
    if n == 1 {
        story.say(format!(
            "grant {} revoked; the server deleted its re-encryption keys at once",
            grant.grant_id
        ));
    } else {
        // Replica A's revocation is committed to the database before it is
        // acknowledged; replica B learns of it only from the database.
        story.expect(warm, || {
            format!(
                "replica {}'s key cache did not hold the grant's keys after step 4",
                servers.name(at_doctor)
            )
        })?;
        story.say(format!(
            "grant {} revoked through replica {}: committed (grant marked revoked, its re-encryption keys \
             deleted, logged) before Alpha's client was answered",
            grant.grant_id,
            servers.name(at_patient)
        ));
    }
    expect_denied(&story, doctor.fetch(&labs[0]), "revoked")?;
    story.say(format!(
        "Dr Grey asks for {} again{} → refused: revoked",
        short(labs[0]),
        servers.via(at_doctor)
    ));
    if n > 1 {
        story.expect(!doctors_cache.contains(&grant.grant_id), || {
            format!("replica {} still caches the revoked grant's keys", servers.name(at_doctor))
        })?;
        story.say(format!(
            "at once: replica {} still held the grant's keys in its cache from step 4, read the grant from the \
             database on this request, refused, and dropped them",
            servers.name(at_doctor)
        ));
    }
    let shared = doctor.shared().at(&story)?;
    story.expect(shared_records(&shared, &aid).is_empty(), || {
        "records are still shared after revocation".into()
    })?;
    story.say("Dr Grey keeps what was decrypted before; nothing new can be read");

    // 6. History.
    story.step("Alpha reads who accessed what, proven against the signed log");
    let history = alpha.history(&mut |_| ()).at(&story)?;
    let mut served = 0;
    let mut denied = 0;
    for item in &history.items {
        match item.kind.as_str() {
            "reencryption_served" => served += 1,
            "access_denied" => denied += 1,
            _ => continue,
        }
        story.say(format!(
            "entry {:>3}  {:<19}  record {}  by {}  {}",
            item.index,
            item.kind,
            item.record.map(short).unwrap_or_default(),
            item.doctor.map(short).unwrap_or_default(),
            item.detail
        ));
    }
    // Three single fetches and the three lab results again in the chart.
    story.expect(served == 6 && denied == 3, || {
        format!("expected 6 accesses served and 3 denied in the history, found {served} and {denied}")
    })?;
    story.say(format!(
        "each item above is in the log of {} entries, by inclusion proof{}",
        history.tree_size,
        if n == 1 {
            String::new()
        } else {
            format!(
                " (read through replica {}: the accesses replica {} served are in the one log)",
                servers.name(at_patient),
                servers.name(at_doctor)
            )
        }
    ));

    // 7. Auditor.
    story.step("An auditor verifies the log and audits every entry");
    let token = enroll(&story, Role::Auditor, "Auditor Ada")?;
    let auditor =
        Auditor::init(&dirs.profile("auditor"), &servers.options(at_auditor), "Auditor Ada", &token, &pass)
            .at(&story)?;
    let v = auditor.verify(&mut |_| ()).at(&story)?;
    story.say(format!(
        "checkpoint signed by the pinned log key: {} entries, root {}{}",
        v.tree_size,
        short(&v.root_hash),
        servers.via(at_auditor)
    ));
    let audit = auditor.audit(&mut |_| ()).at(&story)?;
    story.expect(audit.is_clean(), || {
        let list: Vec<String> = audit.anomalies().iter().map(ToString::to_string).collect();
        format!("the full audit found anomalies: {}", list.join("; "))
    })?;
    story.say(format!(
        "full audit of {} entries{}: root recomputed, {} grant(s), {} revocation(s), {} access(es) served \
         — each matched a patient-signed, unrevoked, in-scope grant; no anomaly",
        audit.entries(),
        servers.via(at_auditor),
        audit.count("grant_created"),
        audit.count("grant_revoked"),
        audit.count("reencryption_served")
    ));
    if n > 1 {
        story.say(format!(
            "the writes made through replicas {} are one sequence: no gap, no duplicate index, one root",
            (0..n).map(|i| servers.name(i)).collect::<Vec<_>>().join(", ")
        ));
    }
    let first_size = v.tree_size;

    // 8. DP summaries.
    story.step("Patients contribute summaries to a differentially private study");
    let mut contributors = 0usize;
    let mut cohort_patients = Vec::new();
    let preview = alpha.summary(SCHEMA).at(&story)?;
    story.say(format!(
        "Alpha's client decrypts Alpha's own {} records locally and derives the \"{SCHEMA}\" summary:",
        preview.records_used
    ));
    story.say(format!("  {}", serde_json::to_string(&preview.doc.values).at(&story)?));
    alpha.contribute(&preview).at(&story)?;
    contributors += 1;
    // Bravo, Charlie and the generated cohort, each sent to the next
    // replica in turn (Alpha is the first).
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let generated = (0..opts.cohort).map(|i| (format!("Cohort-{:02}", i + 1), cohort_bundle(&mut rng, i)));
    let bundled = BUNDLES[1..].iter().map(|(name, _, bundle)| ((*name).to_owned(), (*bundle).to_owned()));
    let mut per_replica = vec![0usize; n];
    per_replica[at_patient] += 1;
    for (k, (name, bundle)) in bundled.chain(generated).enumerate() {
        let at = at_patient + k + 1;
        let p = Patient::init(&dirs.profile(&name), &servers.options(at), &name, &pass).at(&story)?;
        let files = write_files(&dirs.inbox(&name), &[("bundle.json", &bundle)]).at(&story)?;
        let r =
            p.import(&ImportRequest { paths: files, ..ImportRequest::default() }, &mut |_| ()).at(&story)?;
        story.expect(r.failed() == 0 && r.problems() == 0, || format!("{name}'s bundle did not import"))?;
        p.contribute(&p.summary(SCHEMA).at(&story)?).at(&story)?;
        contributors += 1;
        per_replica[at % n] += 1;
        cohort_patients.push((p, at, name));
    }
    story.say(format!(
        "{contributors} patients contributed (Alpha, Bravo, Charlie and {} generated synthetic patients); \
         the server stores their summaries, never a record",
        opts.cohort
    ));
    if n > 1 {
        let spread: Vec<String> = per_replica
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} through replica {}", servers.name(i)))
            .collect();
        story.say(format!("spread as a balancer would: {}", spread.join(", ")));
    }

    // 9. The analyst.
    story.step("An analyst asks noisy questions within a privacy budget");
    let token = enroll(&story, Role::Analyst, "Analyst Ana")?;
    // The analyst's questions go to two replicas in turn: the budget is one
    // ledger, debited atomically wherever a question arrives.
    let (at_first, at_second) = (0, 1 % n);
    let analyst =
        Analyst::init(&dirs.profile("analyst"), &servers.options(at_first), "Analyst Ana", &token, &pass)
            .at(&story)?;
    let second_analyst = if at_second == at_first {
        None
    } else {
        Some(Analyst::open(&dirs.profile("analyst"), &servers.connect(at_second), &pass).at(&story)?)
    };
    let analyst_b = second_analyst.as_ref().unwrap_or(&analyst);
    let before = analyst.budget(SCHEMA).at(&story)?;
    story.say(format!(
        "Analyst Ana's budget for \"{SCHEMA}\": ε = {} in all (δ = {:e}), {} spent",
        before.total_epsilon, before.delta, before.spent_epsilon
    ));
    let epsilon = |x: f64| Epsilon::new(x).map(Privacy::Epsilon);
    let count = Query {
        statistic: Statistic::Count {},
        filters: vec![Filter::Is { field: "diabetes".into(), value: json!(true) }],
        privacy: epsilon(COUNT_EPSILON).at(&story)?,
    };
    let a = analyst.query(SCHEMA, &count).at(&story)?;
    story.say(format!("How many contributors have diabetes? (ε = {COUNT_EPSILON}){}", servers.via(at_first)));
    story.say(format!("  {}", describe_answer(&a)));
    story.say(
        "  (the exact count is never released; noise is not clipped, so a small count can come out negative)",
    );
    let median = Query {
        statistic: Statistic::Median { field: "systolic_bp".into(), candidates: None },
        filters: vec![],
        privacy: epsilon(MEDIAN_EPSILON).at(&story)?,
    };
    let a = analyst_b.query(SCHEMA, &median).at(&story)?;
    story.say(format!(
        "Median systolic blood pressure, mm[Hg]? (ε = {MEDIAN_EPSILON}){}",
        servers.via(at_second)
    ));
    story.say(format!("  {}", describe_answer(&a)));
    let after = analyst_b.budget(SCHEMA).at(&story)?;
    let spent = after.spent_epsilon - before.spent_epsilon;
    let asked = COUNT_EPSILON + MEDIAN_EPSILON;
    story.expect((spent - asked).abs() < 1e-6 && after.queries == before.queries + 2, || {
        format!("expected ε {asked} spent by 2 queries, the ledger shows {spent} by {}", after.queries)
    })?;
    story.say(format!(
        "budget after 2 answers{}: ε {:.3} spent, {:.3} left (each debit was written durably, and logged, \
         before its answer was sent)",
        if n == 1 { String::new() } else { format!(", read through replica {}", servers.name(at_second)) },
        after.spent_epsilon,
        after.remaining_epsilon
    ));
    let greedy = Query { privacy: epsilon(GREEDY_EPSILON).at(&story)?, ..count };
    expect_denied(&story, analyst.query(SCHEMA, &greedy), "budget_exceeded")?;
    let unchanged = analyst.budget(SCHEMA).at(&story)?;
    story.expect(unchanged == after, || "a refused query changed the budget".into())?;
    story.say(format!(
        "one more count at ε = {GREEDY_EPSILON}{} → refused: budget_exceeded; nothing spent",
        servers.via(at_first)
    ));
    if n > 1 {
        story.say(format!(
            "one budget across replicas: replica {} counted the debit made at replica {}, and replica {} the \
             one made at {} (each debit locks the analyst's ledger row in the database)",
            servers.name(at_second),
            servers.name(at_first),
            servers.name(at_first),
            servers.name(at_second)
        ));
    }

    // 10. A private study: two aggregators, no summary in the clear.
    story.step("The same patients join a private study no server can read");
    // The leader aggregator runs on replica A only (its preparation driver
    // is not coordinated across replicas): patients send their reports there.
    let mut at_leader = Vec::with_capacity(cohort_patients.len());
    let mut moved = 0usize;
    for (p, at, name) in cohort_patients {
        if at % n == 0 {
            at_leader.push(p);
        } else {
            drop(p);
            at_leader.push(Patient::open(&dirs.profile(&name), &servers.connect(0), &pass).at(&story)?);
            moved += 1;
        }
    }
    if n > 1 {
        story.say(format!(
            "the study's leader aggregator runs on replica {} only (its preparation driver is not coordinated \
             across replicas), so the {moved} patients served by the other replicas send their reports there",
            servers.name(0)
        ));
    }
    study_step(&mut story, servers.leader(), servers.helper(), &alpha, &at_leader, &analyst)?;

    // 11. The auditor again: the log only grew.
    story.step("The auditor checks again: the log only grew");
    // Through another replica than the first check, if there is one: the
    // consistency proof then joins checkpoints signed by two replicas.
    let at_auditor_again = (at_auditor + 1) % n;
    let auditor_again = if at_auditor_again == at_auditor {
        None
    } else {
        Some(Auditor::open(&dirs.profile("auditor"), &servers.connect(at_auditor_again), &pass).at(&story)?)
    };
    let auditor = auditor_again.as_ref().unwrap_or(&auditor);
    let v = auditor.verify(&mut |_| ()).at(&story)?;
    story.expect(v.previous_size.is_some_and(|p| p >= first_size), || {
        "no earlier checkpoint was compared".into()
    })?;
    story.say(format!(
        "consistency proof: the log grew from {} to {} entries without changing a byte of history",
        v.previous_size.unwrap_or_default(),
        v.tree_size
    ));
    if n > 1 {
        story.say(format!(
            "the earlier checkpoint was signed by replica {}, this one by replica {}: both with the one log \
             signing key the auditor pinned, over the one log",
            servers.name(at_auditor),
            servers.name(at_auditor_again)
        ));
    }
    let audit = auditor.audit(&mut |_| ()).at(&story)?;
    story.expect(audit.is_clean(), || "the second full audit found anomalies".into())?;
    story.say(format!(
        "full audit clean: {} summaries submitted and {} DP answers logged (names only, never values)",
        audit.count("summary_submitted"),
        audit.count("dp_query_answered")
    ));
    story.expect(audit.count("study_added") == 1 && audit.count("study_batch_released") == 1, || {
        "the study and its release are not in the log".into()
    })?;
    story.say(format!(
        "and the private study: its definition, {} upload(s), {} preparation job(s) and the release with its cost",
        audit.count("study_reports_uploaded"),
        audit.count("study_reports_aggregated")
    ));
    let log_entries = audit.entries();

    // 12. Canary scan.
    story.step(if n == 1 && servers.database().is_none() {
        "The server's disk holds no plaintext"
    } else {
        "The servers' disks and the database hold no plaintext"
    });
    let database = servers.database().cloned();
    let mut scanned: Vec<(PathBuf, String)> = servers
        .dirs()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let who =
                if database.is_some() { format!("replica {}", servers.name(i)) } else { "server".into() };
            (d.clone(), who)
        })
        .collect();
    scanned.push((servers.helper_dir().to_path_buf(), "helper".into()));
    servers.stop().at(&story)?;
    let mut needles = Needles::new();
    for c in CANARIES {
        needles.text(c, c.as_bytes());
    }
    needles.secret("the profiles' passphrase", DEMO_PASSPHRASE.as_bytes());
    let mut scan = ScanReport::default();
    for (dir, _) in &scanned {
        let one = needles.scan_dir(dir).at(&story)?;
        scan.files += one.files;
        scan.bytes += one.bytes;
        scan.hits.extend(one.hits);
    }
    story.expect(scan.hits.is_empty(), || {
        let list: Vec<String> =
            scan.hits.iter().map(|h| format!("{} in {}", h.label, h.path.display())).collect();
        format!("plaintext found on the server's disk: {}", list.join("; "))
    })?;
    let dirs_scanned: Vec<String> = scanned.iter().map(|(d, who)| format!("{who} {}", d.display())).collect();
    story.say(format!(
        "{} stopped and flushed; scanned the data directories ({}): {} files, {} bytes",
        if scanned.len() == 2 { "both servers".to_owned() } else { format!("all {} servers", scanned.len()) },
        dirs_scanned.join(", "),
        scan.files,
        scan.bytes
    ));
    if let Some(url) = &database {
        // PostgreSQL renders bytea as hex in a row's text: the canaries'
        // hex forms are looked for there too.
        for c in CANARIES {
            needles.raw(&format!("{c} (hex)"), hex::encode(c).as_bytes());
        }
        let db = database::scan_database(url, &needles).at(&story)?;
        story.expect(db.hits.is_empty(), || {
            format!("plaintext found in the database: {}", db.hits.join("; "))
        })?;
        story.expect(db.tables > 0 && db.rows > 0, || "the database scan read no rows".into())?;
        story.say(format!(
            "and the database {}: every row of its {} tables read back through SQL, {} rows as text \
             (`SELECT t::text`, bytea as hex) and every bytea value as raw bytes, {} bytes",
            database_name(url),
            db.tables,
            db.rows,
            db.bytes
        ));
    }
    story.say(format!(
        "looked for {} (raw and base64) and the passphrase: 0 hits",
        CANARIES.map(|c| format!("\"{c}\"")).join(", ")
    ));

    let elapsed = started.elapsed();
    let kept = opts.data.clone();
    let _ = writeln!(
        story.out,
        "\nThe story behaved as told: {} steps in {:.1} s.",
        story.step,
        elapsed.as_secs_f64()
    );
    match &kept {
        Some(d) => {
            let _ = writeln!(
                story.out,
                "Everything is kept in {} (server data in {}/).",
                d.display(),
                if n == 1 && opts.database.is_none() { "server" } else { "replica-a" }
            );
        }
        None => {
            let _ = writeln!(story.out, "The temporary directory is removed now.");
        }
    }
    Ok(DemoOutcome { steps: story.step, log_entries, kept, elapsed })
}

fn sorted(mut v: Vec<RecordId>) -> Vec<RecordId> {
    v.sort();
    v
}

fn sorted_strings(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn shared_records(shared: &[SharedPatient], patient: &PrincipalId) -> Vec<RecordId> {
    shared
        .iter()
        .filter(|p| &p.patient == patient)
        .flat_map(|p| p.records.iter().map(|r| r.record_id))
        .collect()
}

/// Writes client-side files (a patient's FHIR exports) and returns their paths.
fn write_files(dir: &Path, files: &[(&str, &str)]) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    files
        .iter()
        .map(|(name, body)| {
            let p = dir.join(name);
            std::fs::write(&p, body).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(p)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_non_empty_data_directory_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), b"x").unwrap();
        let opts = DemoOptions { data: Some(dir.path().to_path_buf()), ..DemoOptions::default() };
        let mut out = Vec::new();
        let err = run(&opts, &mut out).unwrap_err();
        assert!(err.message.contains("is not empty"), "{err}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("keep.txt")]);
    }

    #[test]
    fn replica_counts_it_cannot_run_are_refused_before_anything_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("demo");
        let db = Some(DatabaseUrl::new("postgres://medrelay@127.0.0.1:1/unused"));
        for (replicas, database, says) in [
            (2, None, "several replicas need a shared PostgreSQL database"),
            (0, db.clone(), "--replicas must be 1 to 3, not 0"),
            (4, db, "--replicas must be 1 to 3, not 4"),
        ] {
            let opts = DemoOptions { data: Some(data.clone()), replicas, database, ..DemoOptions::default() };
            let mut out = Vec::new();
            let err = run(&opts, &mut out).unwrap_err();
            assert!(err.message.contains(says), "{err}");
            assert_eq!(err.step, 0, "{err}");
            assert!(!data.exists(), "the demo made {} before refusing", data.display());
        }
    }
}
