//! `medrelay-server demo`: the whole story on an in-process server, told
//! step by step in plain words.
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
//! the CLI exits non-zero).

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use medrelay_client::{
    Analyst, Auditor, ClientError, Doctor, FetchFormat, ImportRequest, Passphrase, Patient, ServerOptions,
    SharedPatient,
};
use medrelay_crypto::{PrincipalId, RecordId};
use medrelay_dp::{Epsilon, Filter, Privacy, Query, Statistic};
use medrelay_fhir::fhir_record_id;
use medrelay_policy::{Purpose, Scope};
use medrelay_wire::dp::DpAnswer;
use medrelay_wire::Role;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::scan::Needles;
use crate::{enroll_in, init, AggregatorConfig, AggregatorToken, LocalServer, Quotas, Rate};

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
/// ε of the noise each aggregator adds to a private study's release.
const STUDY_EPSILON: f64 = 1.0;
/// Strings from the records that must never appear in the server's files.
const CANARIES: [&str; 4] =
    ["Synthetic-Alpha", "Major depressive disorder", "Hemoglobin A1c", "Lithium [Moles/volume]"];

/// Synthetic patients the demo generates for the DP study by default.
pub const DEFAULT_COHORT: u16 = 40;

/// How to run the demo.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Keep everything under this directory (it must be absent or empty):
    /// the server's data in `DIR/server`, client profiles in
    /// `DIR/profiles`. `None`: a temporary directory, removed at the end.
    pub data: Option<PathBuf>,
    /// Synthetic patients generated for the DP study, besides Alpha, Bravo
    /// and Charlie.
    pub cohort: usize,
    /// Seed of the synthetic cohort's values (not of any key: keys come from
    /// the operating system's RNG).
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self { data: None, cohort: usize::from(DEFAULT_COHORT), seed: 2026 }
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

/// Narration: numbered steps, indented lines.
struct Story<'a> {
    out: &'a mut dyn Write,
    step: usize,
    title: &'static str,
}

impl Story<'_> {
    fn step(&mut self, title: &'static str) {
        self.step += 1;
        self.title = title;
        let _ = writeln!(self.out, "\n{}. {title}", self.step);
    }

    fn say(&mut self, line: impl Display) {
        let _ = writeln!(self.out, "   {line}");
    }

    fn fail(&self, message: impl Display) -> DemoError {
        DemoError { step: self.step, title: self.title, message: message.to_string() }
    }

    /// Checks a narrated expectation.
    fn expect(&self, ok: bool, message: impl FnOnce() -> String) -> Result<(), DemoError> {
        if ok {
            Ok(())
        } else {
            Err(self.fail(message()))
        }
    }
}

/// Attaches the current step to errors.
trait AtStep<T> {
    fn at(self, story: &Story<'_>) -> Result<T, DemoError>;
}

impl<T, E: Display> AtStep<T> for Result<T, E> {
    fn at(self, story: &Story<'_>) -> Result<T, DemoError> {
        self.map_err(|e| story.fail(e))
    }
}

fn short(id: impl Display) -> String {
    let s = id.to_string();
    s.chars().take(12).collect()
}

/// Expects a refusal with `code` from the server.
fn expect_denied<T>(story: &Story<'_>, r: Result<T, ClientError>, code: &str) -> Result<(), DemoError> {
    match r {
        Err(ClientError::Server { code: got, .. }) if got == code => Ok(()),
        Err(ClientError::BudgetExceeded(_)) if code == "budget_exceeded" => Ok(()),
        Err(e) => Err(story.fail(format!("expected a refusal with code {code}, got: {e}"))),
        Ok(_) => Err(story.fail(format!("expected a refusal with code {code}, but the record was served"))),
    }
}

/// A one-line reading of a decrypted FHIR Observation.
fn describe_observation(v: &Value) -> String {
    let name = v["code"]["coding"][0]["display"].as_str().or(v["code"]["text"].as_str()).unwrap_or("?");
    let q = &v["valueQuantity"];
    match (q["value"].as_f64(), q["unit"].as_str()) {
        (Some(x), Some(u)) => format!("{name}: {x} {u}"),
        (Some(x), None) => format!("{name}: {x}"),
        _ => name.to_owned(),
    }
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
    fn server(&self) -> PathBuf {
        self.root.join("server")
    }
    /// The second operator's helper aggregator for private studies.
    fn helper(&self) -> PathBuf {
        self.root.join("helper")
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
pub fn run(opts: &DemoOptions, out: &mut dyn Write) -> Result<DemoOutcome, DemoError> {
    let started = Instant::now();
    let mut story = Story { out, step: 0, title: "setting up" };
    let dirs = Dirs::new(opts.data.as_deref()).map_err(|e| story.fail(e))?;
    let pass = Passphrase::new(DEMO_PASSPHRASE).at(&story)?;

    // 1. The operator.
    story.step("The operator starts a medrelay server");
    let log_key = init(&dirs.server()).at(&story)?;
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
    // A second organization runs the helper aggregator of private studies
    // (step 10); this server is their leader. They share a secret token.
    init(&dirs.helper()).at(&story)?;
    let token = AggregatorToken::generate();
    let helper = LocalServer::start_with(
        &dirs.helper(),
        "helper.demo/log",
        1,
        Quotas::default(),
        Some(AggregatorConfig::Helper { token: token.clone() }),
    )
    .at(&story)?;
    let server = LocalServer::start_with(
        &dirs.server(),
        "medrelay.demo/log",
        2,
        quotas,
        Some(AggregatorConfig::Leader { helper_url: helper.url(), token }),
    )
    .at(&story)?;
    let opts_http = ServerOptions::new(server.url());
    story.say(format!("data directory: {} (sled, embedded)", dirs.server().display()));
    story.say(format!("log signing key made; auditors pin its fingerprint {}", log_key.fingerprint()));
    story.say(format!("serving the HTTP API on {} (in this process)", server.url()));
    let enroll = |story: &Story<'_>, role: Role, name: &str| {
        enroll_in(server.state().store().as_ref(), role, name, server.state().clock()).at(story)
    };

    // 2. Alpha imports records.
    story.step("Patient Alpha makes keys and imports a FHIR export");
    let alpha = Patient::init(&dirs.profile("alpha"), &opts_http, "Alpha", &pass).at(&story)?;
    let who = alpha.whoami();
    story.say(format!("Alpha's id {} (keys made on Alpha's machine; only public halves sent)", who.id));
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
        "encrypted and uploaded {} records (AES-256-GCM bodies, one hybrid capsule per key class, owner-signed headers):",
        report.uploaded()
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
    story.say("the operator issued Dr Grey a one-time enrollment token");
    let doctor = Doctor::init(&dirs.profile("dr-grey"), &opts_http, "Dr Grey", &token, &pass).at(&story)?;
    let dwho = doctor.whoami();
    let d = alpha.doctor(&doctor.id()).at(&story)?;
    let seen = d.doctor_key().at(&story)?.fingerprint().to_string();
    story.expect(Some(&seen) == dwho.pre_key_fingerprint.as_ref(), || {
        format!("the directory's key fingerprint {seen} is not the one Dr Grey holds")
    })?;
    story.say(format!("Dr Grey's id {}; Alpha checks the key fingerprint {seen} with Dr Grey", dwho.id));
    let scope: Scope = LAB_SCOPE.parse().at(&story)?;
    let grant = alpha.grant(&d, &scope, GRANT_DAYS * 86_400, Purpose::Treatment).at(&story)?;
    story.say(format!(
        "grant {} signed by Alpha: scope \"{}\", purpose {}, for {GRANT_DAYS} days",
        grant.grant_id, grant.scope, grant.purpose
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
    story.say(format!("Dr Grey sees {} records shared by Alpha", offered.len()));
    for id in &labs {
        let f = doctor.fetch(id).at(&story)?;
        let resource = f.record.fhir_entry().at(&story)?.resource;
        story.say(format!(
            "fetched {} → decrypted on Dr Grey's machine: {} (log entry {})",
            short(id),
            describe_observation(&resource),
            f.log_index
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
    alpha.revoke(&grant.grant_id).at(&story)?;
    story.say(format!("grant {} revoked; the server deleted its re-encryption keys at once", grant.grant_id));
    expect_denied(&story, doctor.fetch(&labs[0]), "revoked")?;
    story.say(format!("Dr Grey asks for {} again → refused: revoked", short(labs[0])));
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
    story.say(format!("each item above is in the log of {} entries, by inclusion proof", history.tree_size));

    // 7. Auditor.
    story.step("An auditor verifies the log and audits every entry");
    let token = enroll(&story, Role::Auditor, "Auditor Ada")?;
    let auditor =
        Auditor::init(&dirs.profile("auditor"), &opts_http, "Auditor Ada", &token, &pass).at(&story)?;
    let v = auditor.verify(&mut |_| ()).at(&story)?;
    story.say(format!(
        "checkpoint signed by the pinned log key: {} entries, root {}",
        v.tree_size,
        short(&v.root_hash)
    ));
    let audit = auditor.audit(&mut |_| ()).at(&story)?;
    story.expect(audit.is_clean(), || {
        let list: Vec<String> = audit.anomalies().iter().map(ToString::to_string).collect();
        format!("the full audit found anomalies: {}", list.join("; "))
    })?;
    story.say(format!(
        "full audit of {} entries: root recomputed, {} grant(s), {} revocation(s), {} access(es) served \
         — each matched a patient-signed, unrevoked, in-scope grant; no anomaly",
        audit.entries(),
        audit.count("grant_created"),
        audit.count("grant_revoked"),
        audit.count("reencryption_served")
    ));
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
    for (name, file, bundle) in &BUNDLES[1..] {
        let p = Patient::init(&dirs.profile(name), &opts_http, name, &pass).at(&story)?;
        let files = write_files(&dirs.inbox(name), &[(file, bundle)]).at(&story)?;
        let r =
            p.import(&ImportRequest { paths: files, ..ImportRequest::default() }, &mut |_| ()).at(&story)?;
        story.expect(r.failed() == 0 && r.problems() == 0, || format!("{name}'s bundle did not import"))?;
        p.contribute(&p.summary(SCHEMA).at(&story)?).at(&story)?;
        contributors += 1;
        cohort_patients.push(p);
    }
    let mut rng = StdRng::seed_from_u64(opts.seed);
    for i in 0..opts.cohort {
        let name = format!("Cohort-{:02}", i + 1);
        let p = Patient::init(&dirs.profile(&name), &opts_http, &name, &pass).at(&story)?;
        let files =
            write_files(&dirs.inbox(&name), &[("bundle.json", &cohort_bundle(&mut rng, i))]).at(&story)?;
        let r =
            p.import(&ImportRequest { paths: files, ..ImportRequest::default() }, &mut |_| ()).at(&story)?;
        story.expect(r.failed() == 0 && r.problems() == 0, || format!("{name}'s bundle did not import"))?;
        p.contribute(&p.summary(SCHEMA).at(&story)?).at(&story)?;
        contributors += 1;
        cohort_patients.push(p);
    }
    story.say(format!(
        "{contributors} patients contributed (Alpha, Bravo, Charlie and {} generated synthetic patients); \
         the server stores their summaries, never a record",
        opts.cohort
    ));

    // 9. The analyst.
    story.step("An analyst asks noisy questions within a privacy budget");
    let token = enroll(&story, Role::Analyst, "Analyst Ana")?;
    let analyst =
        Analyst::init(&dirs.profile("analyst"), &opts_http, "Analyst Ana", &token, &pass).at(&story)?;
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
    story.say(format!("How many contributors have diabetes? (ε = {COUNT_EPSILON})"));
    story.say(format!("  {}", describe_answer(&a)));
    story.say(
        "  (the exact count is never released; noise is not clipped, so a small count can come out negative)",
    );
    let median = Query {
        statistic: Statistic::Median { field: "systolic_bp".into(), candidates: None },
        filters: vec![],
        privacy: epsilon(MEDIAN_EPSILON).at(&story)?,
    };
    let a = analyst.query(SCHEMA, &median).at(&story)?;
    story.say(format!("Median systolic blood pressure, mm[Hg]? (ε = {MEDIAN_EPSILON})"));
    story.say(format!("  {}", describe_answer(&a)));
    let after = analyst.budget(SCHEMA).at(&story)?;
    let spent = after.spent_epsilon - before.spent_epsilon;
    let asked = COUNT_EPSILON + MEDIAN_EPSILON;
    story.expect((spent - asked).abs() < 1e-6 && after.queries == before.queries + 2, || {
        format!("expected ε {asked} spent by 2 queries, the ledger shows {spent} by {}", after.queries)
    })?;
    story.say(format!(
        "budget after 2 answers: ε {:.3} spent, {:.3} left (each debit was written durably, and logged, \
         before its answer was sent)",
        after.spent_epsilon, after.remaining_epsilon
    ));
    let greedy = Query { privacy: epsilon(GREEDY_EPSILON).at(&story)?, ..count };
    expect_denied(&story, analyst.query(SCHEMA, &greedy), "budget_exceeded")?;
    let unchanged = analyst.budget(SCHEMA).at(&story)?;
    story.expect(unchanged == after, || "a refused query changed the budget".into())?;
    story.say(format!("one more count at ε = {GREEDY_EPSILON} → refused: budget_exceeded; nothing spent"));

    // 10. A private study: two aggregators, no summary in the clear.
    story.step("The same patients join a private study no server can read");
    study_step(&mut story, &server, &helper, &alpha, &cohort_patients, &analyst)?;

    // 10. The auditor again: the log only grew.
    story.step("The auditor checks again: the log only grew");
    let v = auditor.verify(&mut |_| ()).at(&story)?;
    story.expect(v.previous_size.is_some_and(|p| p >= first_size), || {
        "no earlier checkpoint was compared".into()
    })?;
    story.say(format!(
        "consistency proof: the log grew from {} to {} entries without changing a byte of history",
        v.previous_size.unwrap_or_default(),
        v.tree_size
    ));
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

    // 11. Canary scan.
    story.step("The server's disk holds no plaintext");
    server.stop().at(&story)?;
    helper.stop().at(&story)?;
    let mut needles = Needles::new();
    for c in CANARIES {
        needles.text(c, c.as_bytes());
    }
    needles.secret("the profiles' passphrase", DEMO_PASSPHRASE.as_bytes());
    let mut scan = needles.scan_dir(&dirs.server()).at(&story)?;
    let helper_scan = needles.scan_dir(&dirs.helper()).at(&story)?;
    scan.files += helper_scan.files;
    scan.bytes += helper_scan.bytes;
    scan.hits.extend(helper_scan.hits);

    story.expect(scan.hits.is_empty(), || {
        let list: Vec<String> =
            scan.hits.iter().map(|h| format!("{} in {}", h.label, h.path.display())).collect();
        format!("plaintext found on the server's disk: {}", list.join("; "))
    })?;
    story.say(format!(
        "both servers stopped and flushed; scanned {} files, {} bytes for {} (raw and base64) and the passphrase: 0 hits",
        scan.files,
        scan.bytes,
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
            let _ = writeln!(story.out, "Everything is kept in {} (server data in server/).", d.display());
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

fn describe_answer(a: &DpAnswer) -> String {
    use medrelay_dp::{Accuracy, AnswerValue, Mechanism};
    let value = match &a.answer.value {
        AnswerValue::Scalar(x) => format!("{x:.1}"),
        AnswerValue::Histogram(bins) => {
            bins.iter().map(|b| format!("{}: {}", b.label, b.count)).collect::<Vec<_>>().join(", ")
        }
    };
    let accuracy = match &a.answer.accuracy {
        Accuracy::Interval { confidence, low, high, .. } => {
            format!("true value in [{low:.1}, {high:.1}] with {:.0}% confidence", confidence * 100.0)
        }
        Accuracy::PerBin { confidence, half_width } => {
            format!("each bin within ±{half_width:.1} with {:.0}% confidence", confidence * 100.0)
        }
        Accuracy::Rank { confidence, within } => {
            format!("within {within:.1} ranks of the true median with {:.0}% confidence", confidence * 100.0)
        }
    };
    let how: Vec<String> = a
        .answer
        .components
        .iter()
        .map(|c| {
            let m = match c.mechanism {
                Mechanism::DiscreteLaplace => "discrete Laplace noise",
                Mechanism::Laplace => "Laplace noise",
                Mechanism::DiscreteGaussian => "discrete Gaussian noise",
                Mechanism::Gaussian => "Gaussian noise",
                Mechanism::ExponentialMechanism => "exponential mechanism",
            };
            format!("{m}, scale {:.2}", c.scale)
        })
        .collect();
    format!("noisy answer {value}: {accuracy} ({})", how.join("; "))
}

/// A synthetic patient's bundle: a Patient, a blood-pressure panel, a BMI
/// and some of diabetes / hypertension / asthma. Values are drawn from
/// `rng`; nothing describes a real person.
fn cohort_bundle(rng: &mut StdRng, i: usize) -> String {
    let id = format!("cohort-{:02}", i + 1);
    let sex = if rng.gen_bool(0.5) { "female" } else { "male" };
    let birth_year = rng.gen_range(1940..2005);
    let hypertension = rng.gen_bool(0.35);
    let systolic = if hypertension { rng.gen_range(135..175) } else { rng.gen_range(105..138) };
    let bmi = (rng.gen_range(190..380) as f64) / 10.0;
    let diabetes = rng.gen_bool(0.25);
    let asthma = rng.gen_bool(0.1);
    let subject = json!({ "reference": format!("Patient/{id}") });
    let loinc = |code: &str, display: &str| json!({ "coding": [{ "system": "http://loinc.org", "code": code, "display": display }] });
    let mut entries = vec![
        json!({ "resourceType": "Patient", "id": id,
            "meta": { "tag": [{ "system": "https://medrelay.example/tags", "code": "synthetic" }] },
            "name": [{ "family": format!("Synthetic-Cohort-{:02}", i + 1) }],
            "gender": sex, "birthDate": format!("{birth_year}-06-15") }),
        json!({ "resourceType": "Observation", "id": format!("{id}-bp"), "status": "final",
            "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs" }] }],
            "code": loinc("85354-9", "Blood pressure panel"), "subject": subject,
            "effectiveDateTime": "2026-10-01T09:00:00Z",
            "component": [
                { "code": loinc("8480-6", "Systolic blood pressure"),
                  "valueQuantity": { "value": systolic, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]" } },
                { "code": loinc("8462-4", "Diastolic blood pressure"),
                  "valueQuantity": { "value": systolic * 2 / 3, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]" } }] }),
        json!({ "resourceType": "Observation", "id": format!("{id}-bmi"), "status": "final",
            "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs" }] }],
            "code": loinc("39156-5", "Body mass index (BMI) [Ratio]"), "subject": subject,
            "effectiveDateTime": "2026-10-01T09:00:00Z",
            "valueQuantity": { "value": bmi, "unit": "kg/m2", "system": "http://unitsofmeasure.org", "code": "kg/m2" } }),
    ];
    let conditions = [
        (diabetes, "diabetes", "E11.9", "Type 2 diabetes mellitus without complications"),
        (hypertension, "hypertension", "I10", "Essential (primary) hypertension"),
        (asthma, "asthma", "J45.909", "Unspecified asthma, uncomplicated"),
    ];
    for (present, slug, code, display) in conditions {
        if present {
            entries.push(json!({ "resourceType": "Condition", "id": format!("{id}-{slug}"),
                "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active" }] },
                "code": { "coding": [{ "system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code, "display": display }] },
                "subject": subject }));
        }
    }
    let entry: Vec<Value> = entries.into_iter().map(|r| json!({ "resource": r })).collect();
    json!({ "resourceType": "Bundle", "type": "collection", "entry": entry }).to_string()
}

/// Step 10: both aggregators install the example study, every demo patient
/// contributes one sealed report, the analyst releases the batch once and
/// reads the statistics; a second release is refused.
fn study_step(
    story: &mut Story<'_>,
    leader: &LocalServer,
    helper: &LocalServer,
    alpha: &Patient,
    others: &[Patient],
    analyst: &Analyst,
) -> Result<(), DemoError> {
    use sha2::Digest as _;
    let (Some(ls), Some(hs)) = (leader.state().study_service(), helper.state().study_service()) else {
        return Err(story.fail("the servers are not study aggregators"));
    };
    let patients: Vec<&Patient> = std::iter::once(alpha).chain(others).collect();
    let schema_json = serde_json::to_vec(&medrelay_dp::Schema::health_basics()).at(story)?;
    let schema_sha = hex::encode(sha2::Sha256::digest(&schema_json));
    let min = u64::try_from(patients.len()).unwrap_or(u64::MAX);
    let def = medrelay_dp::study::example_study(
        &schema_sha,
        ls.hpke_public_key().as_bytes(),
        hs.hpke_public_key().as_bytes(),
        min,
        Privacy::Epsilon(Epsilon::new(STUDY_EPSILON).at(story)?),
    )
    .at(story)?;
    let json = def.canonical_json().at(story)?;
    let (stored, _) = ls.install(leader.state().store().as_ref(), &json, leader.state().clock()).at(story)?;
    hs.install(helper.state().store().as_ref(), &json, helper.state().clock()).at(story)?;
    let name = def.name().to_owned();
    story.say(format!(
        "a second operator runs the helper aggregator at {} (its own data directory, HPKE key and log; it answers only this server)",
        helper.url()
    ));
    story.say(format!(
        "both install study \"{name}\" (sha256 {}…, logged on both): mean, spread and correlation of systolic pressure and BMI by diabetes status, released in batches of at least {min}, ε = {STUDY_EPSILON} of noise from each aggregator",
        &hex::encode(stored.sha256)[..12]
    ));
    let mut size = 0;
    for p in &patients {
        let study = p.study(&name).at(story)?;
        let preview = p.summary(study.definition().schema()).at(story)?;
        let now = medrelay_client::time::now().unix_seconds();
        size = size.max(medrelay_client::study::seal_contribution(&study, &preview, now).at(story)?.len());
        p.study_contribute(&study, &preview).at(story)?;
    }
    story.say(format!(
        "{} patients checked the study against the signed log and sent one report each: two secret shares \
         ({size} bytes in all), each encrypted to one aggregator; neither server can read a value",
        patients.len()
    ));
    let release = analyst.study_release(&name, None).at(story)?;
    story.say(format!(
        "the analyst releases batch {}: each aggregator added its own noise, and the cost was logged (entry {}) before anything left",
        release.batch, release.log_index
    ));
    let results = analyst.study_results(&name, None, 0.95, &[0.5]).at(story)?;
    for f in &results.overall.fields {
        story.say(format!(
            "  {}: mean {:.1} in [{:.1}, {:.1}], std {:.1} in [{:.1}, {:.1}] (95%)",
            f.field, f.mean.value, f.mean.low, f.mean.high, f.std_dev.value, f.std_dev.low, f.std_dev.high
        ));
    }
    for c in &results.overall.correlations {
        story.say(format!(
            "  correlation of {} and {}: {:.2} in [{:.2}, {:.2}]",
            c.x, c.y, c.r.value, c.r.low, c.r.high
        ));
    }
    story.say(format!(
        "  (computed on the analyst's machine from one noisy release; with {} patients the intervals are wide, and they narrow as batches grow)",
        patients.len()
    ));
    expect_denied(story, analyst.study_release(&name, Some(release.batch)), "already_released")?;
    story.say(format!("releasing batch {} again → refused: already_released", release.batch));
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn cohort_bundles_parse_as_fhir_and_derive_every_field() {
        let schema =
            medrelay_dp::Schema::from_json(include_bytes!("../../dp/schemas/health-basics.json")).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        for i in 0..20 {
            let bundle = cohort_bundle(&mut rng, i);
            let source = medrelay_fhir::Source {
                name: "bundle.json",
                bytes: bundle.as_bytes(),
                format: medrelay_fhir::Format::Json,
            };
            let plan = medrelay_fhir::plan_import(&[source], &medrelay_fhir::ImportOptions::default());
            assert!(plan.records.len() >= 3 && plan.problems() == 0, "{bundle}");
            let values: Vec<Value> = plan
                .records
                .iter()
                .map(|r| medrelay_fhir::StoredEntry::from_body(&r.body).unwrap().resource)
                .collect();
            let summary = medrelay_dp::derive_summary(&schema, &values).unwrap();
            let doc = summary.to_doc(&schema);
            for field in ["birth_year", "sex", "systolic_bp", "bmi", "diabetes", "hypertension", "asthma"] {
                assert!(
                    doc.values.get(field).is_some_and(Option::is_some),
                    "{field} not derived from {bundle}"
                );
            }
        }
    }

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
}
