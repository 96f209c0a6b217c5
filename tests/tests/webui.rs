//! The local web apps in a real browser (headless Chromium through
//! ChromeDriver), against a real server and the real client binaries:
//!
//! - the story: a patient signs in with the one-time link, looks at the
//!   imported records, grants a doctor (checking the fingerprint the page
//!   shows against the doctor's own), the doctor fetches and reads the
//!   chart, the patient revokes and the doctor's refetch is refused, the
//!   patient's history shows both, the auditor's verification and full
//!   audit pass and list the refusal, a research summary is contributed
//!   and an analyst gets a noisy histogram; every page is saved to
//!   `docs/screenshots/`;
//! - the guard: no session cookie, a wrong Host header (DNS rebinding), a
//!   POST without (or with a wrong) CSRF token or from another origin, and
//!   a reused launch link are refused and change nothing; the app is not
//!   reachable on any address but 127.0.0.1;
//! - private studies (a leader and a helper aggregator): the patient's app
//!   shows the study's summary and sends it as one report, the analyst's
//!   app releases the batch and shows the statistics with their intervals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;
mod common;

use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use browser::{browser_or_skip, click, raw, screenshot, text, wait_for, App, Driver, Session};
use common::*;
use fantoccini::Locator;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn id_of(who: &User) -> String {
    who.run(&["whoami", "--json"]).json()["id"].as_str().unwrap().to_owned()
}

fn records_of(p: &User) -> Vec<Value> {
    p.run(&["records", "--json"]).json().as_array().unwrap().clone()
}

fn grants_of(p: &User) -> Vec<Value> {
    p.run(&["grants", "--json"]).json().as_array().unwrap().clone()
}

/// A server with a doctor, an auditor and an analyst enrolled, and the
/// profiles of everyone (the patient imported the sample bundle).
struct World {
    _root: tempfile::TempDir,
    server: Server,
    patient: User,
    doctor: User,
    auditor: User,
    analyst: User,
    root: std::path::PathBuf,
}

fn world() -> World {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::init();
    let doctor_token = server.enroll("doctor", "Dr Grey");
    let auditor_token = server.enroll("auditor", "Auditor Ada");
    let analyst_token = server.enroll("analyst", "Analyst Ana");
    server.start();
    let url = server.url();
    let patient = User::new("medrelay-patient", root.path(), "alpha");
    let doctor = User::new("medrelay-doctor", root.path(), "grey");
    let auditor = User::new("medrelay-auditor", root.path(), "ada");
    let analyst = User::new("medrelay-doctor", root.path(), "ana");
    patient.run(&["init", "--server", &url, "--name", "Alpha"]).ok();
    doctor.run(&["init", "--server", &url, "--name", "Dr Grey", "--enrollment-token", &doctor_token]).ok();
    auditor
        .run(&["init", "--server", &url, "--name", "Auditor Ada", "--enrollment-token", &auditor_token])
        .ok();
    analyst
        .run(&[
            "init",
            "--server",
            &url,
            "--analyst",
            "--name",
            "Analyst Ana",
            "--enrollment-token",
            &analyst_token,
        ])
        .ok();
    let path = root.path().to_owned();
    World { _root: root, server, patient, doctor, auditor, analyst, root: path }
}

/// A Synthea sample from `../shared/fhir-samples/` (present in CI).
fn synthea(name_part: &str) -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fhir-samples/synthea");
    let found = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(name_part)))?;
    // ChromeDriver takes canonical paths only.
    found.canonicalize().ok()
}

/// How many resources of `resource_type` a Bundle file holds.
fn count_in(bundle: &std::path::Path, resource_type: &str) -> usize {
    let b: Value = serde_json::from_slice(&std::fs::read(bundle).unwrap()).unwrap();
    b["entry"].as_array().unwrap().iter().filter(|e| e["resource"]["resourceType"] == resource_type).count()
}

/// A lab result labelled mental health (a synthetic lithium level), the
/// second file dropped with the export.
const LITHIUM: &str = r#"{"resourceType":"Observation","id":"giovanni-lithium","status":"final",
 "meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},
 "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
 "code":{"coding":[{"system":"http://loinc.org","code":"14334-7","display":"Lithium [Moles/volume] in Serum or Plasma"}]},
 "effectiveDateTime":"2019-05-01","valueQuantity":{"value":0.7,"unit":"mmol/L"}}"#;

#[tokio::test(flavor = "current_thread")]
async fn patient_doctor_auditor_and_analyst_in_a_browser() {
    let Some((chrome, driver)) = browser_or_skip("patient_doctor_auditor_and_analyst_in_a_browser") else {
        return;
    };
    let Some(export) = synthea("Giovanni_Balistreri") else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "../shared/fhir-samples/ is missing, and CI=true requires the browser tests"
        );
        eprintln!("\n*** SKIPPED the browser story: ../shared/fhir-samples/ is not present ***\n");
        return;
    };
    let w = world();
    // Two more patients contribute to the study from the command line, so
    // the analyst's histogram has more than one row behind it.
    for (name, file) in [("bravo", "fhir-patient-bravo.json"), ("charlie", "fhir-patient-charlie.json")] {
        let p = User::new("medrelay-patient", &w.root, name);
        p.run(&["init", "--server", &w.server.url(), "--name", name]).ok();
        p.run(&["import", data(file).to_str().unwrap()]).ok();
        p.run(&["contribute", "--schema", "health-basics", "--yes"]).ok();
    }
    let doctor_id = id_of(&w.doctor);
    let doctor_pre =
        w.doctor.run(&["whoami", "--json"]).json()["pre_key_fingerprint"].as_str().unwrap().to_owned();
    let lithium = w.root.join("lithium.json");
    std::fs::write(&lithium, LITHIUM).unwrap();

    let chromedriver = Driver::start(&chrome, &driver);
    let c = chromedriver.session().await;

    // The patient signs in with the printed link and lands on the overview.
    let mut patient_app = App::start(&w.patient);
    c.goto(&patient_app.launch).await.unwrap();
    wait_for(&c, "#patient-id", WAIT).await;
    assert_eq!(text(&c, "#patient-id").await, id_of(&w.patient));

    // Import: the Synthea export and the labelled lab result are read by
    // the app and shown with their labels before anything is uploaded.
    c.goto(&patient_app.url("/import")).await.unwrap();
    screenshot(&c, "patient-import").await;
    // Drag and drop (the page's one script, allowed by the CSP): a file
    // dropped on the zone is checked like a chosen one. Nothing uploaded.
    let drop = "const dt = new DataTransfer(); \
                dt.items.add(new File([arguments[0]], 'dropped.json', {type: 'application/json'})); \
                const zone = document.getElementById('dropzone'); \
                for (const t of ['dragenter', 'dragover', 'drop']) { \
                  zone.dispatchEvent(new DragEvent(t, {dataTransfer: dt, bubbles: true, cancelable: true})); \
                }";
    c.execute(drop, vec![Value::String(LITHIUM.to_owned())]).await.unwrap();
    wait_for(&c, "#import-files", WAIT).await;
    assert!(text(&c, "#import-files").await.contains("dropped.json"));
    assert!(records_of(&w.patient).is_empty());
    c.goto(&patient_app.url("/import")).await.unwrap();
    let files = format!("{}\n{}", export.display(), lithium.display());
    c.find(Locator::Css("#files")).await.unwrap().send_keys(&files).await.unwrap();
    click(&c, "#check-files").await;
    wait_for(&c, "#import-files", WAIT).await;
    let entries = count_in(&export, "Patient") + {
        let b: Value = serde_json::from_slice(&std::fs::read(&export).unwrap()).unwrap();
        b["entry"].as_array().unwrap().len() - 1
    };
    assert!(text(&c, "#import-files").await.contains(&entries.to_string()));
    let labels = text(&c, "#label-summary").await;
    assert!(labels.contains("mental-health") && labels.contains("Observation/giovanni-lithium"), "{labels}");
    assert!(records_of(&w.patient).is_empty(), "nothing is uploaded before the patient confirms");
    screenshot(&c, "patient-import-review").await;
    click(&c, "#upload-records").await;
    wait_for(&c, "#records", WAIT).await;
    let uploaded = records_of(&w.patient).len();
    assert_eq!(uploaded, entries + 1);
    assert!(text(&c, ".banner.ok").await.contains(&format!("{uploaded} records encrypted and uploaded")));
    c.goto(&patient_app.url("/")).await.unwrap();
    screenshot(&c, "patient-overview").await;

    // Records, searchable.
    c.goto(&patient_app.url("/records?type=Condition")).await.unwrap();
    let conditions = count_in(&export, "Condition");
    assert_eq!(c.find_all(Locator::Css("#records tbody tr")).await.unwrap().len(), conditions);
    c.goto(&patient_app.url("/records?label=any")).await.unwrap();
    assert_eq!(c.find_all(Locator::Css("#records tbody tr")).await.unwrap().len(), 1);
    c.goto(&patient_app.url("/records?type=Observation")).await.unwrap();
    screenshot(&c, "patient-records").await;

    // Grant: the page shows the doctor's fingerprint as the doctor's own
    // client reports it, and the key classes the scope exposes.
    c.goto(&patient_app.url("/grants/new")).await.unwrap();
    c.find(Locator::Css("#doctor")).await.unwrap().send_keys(&doctor_id).await.unwrap();
    let scope =
        ["AllergyIntolerance", "Condition", "Immunization", "MedicationRequest", "Observation", "Patient"];
    for item in scope {
        click(&c, &format!("input[name=item][value=\"{item}\"]")).await;
    }
    click(&c, "#review-button").await;
    wait_for(&c, "#review", WAIT).await;
    assert_eq!(text(&c, "#review-doctor").await, "Dr Grey");
    assert_eq!(text(&c, "#review-fingerprint").await, doctor_pre);
    let classes = text(&c, "#review-classes").await;
    assert!(
        classes.contains("general") && classes.contains("laboratory") && classes.contains("medications"),
        "{classes}"
    );
    assert!(!classes.contains("mental-health"), "{classes}");
    assert!(text(&c, "#review").await.contains("1 sensitive record"), "the lithium level stays excluded");
    screenshot(&c, "patient-grant-review").await;
    // Without the fingerprint confirmation nothing is granted.
    assert!(grants_of(&w.patient).is_empty());
    click(&c, "#confirmed").await;
    click(&c, "#grant-submit").await;
    wait_for(&c, "#grants", WAIT).await;
    assert!(text(&c, ".banner.ok").await.contains("Dr Grey can now read"));
    let grants = grants_of(&w.patient);
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["scope"], scope.join(","));
    screenshot(&c, "patient-grants").await;

    // The doctor's app: the patient is listed; fetching opens the chart.
    let doctor_app = App::start(&w.doctor);
    c.goto(&doctor_app.launch).await.unwrap();
    wait_for(&c, "#patients", WAIT).await;
    assert!(text(&c, "#patients").await.contains("Alpha"));
    screenshot(&c, "doctor-patients").await;
    click(&c, "#patients a.btn").await;
    wait_for(&c, "#fetch", WAIT).await;
    click(&c, "#fetch").await;
    wait_for(&c, "#conditions", WAIT).await;
    let section = text(&c, "#conditions").await;
    assert!(section.contains(&format!("({conditions})")), "{section}");
    let allergies = count_in(&export, "AllergyIntolerance");
    assert!(text(&c, "#allergies").await.contains(&format!("({allergies})")));
    let vaccines: std::collections::BTreeSet<String> = {
        let b: Value = serde_json::from_slice(&std::fs::read(&export).unwrap()).unwrap();
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["resource"]["resourceType"] == "Immunization")
            .map(|e| e["resource"]["vaccineCode"]["text"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(text(&c, "#immunizations").await.contains(&format!("({} vaccines)", vaccines.len())));
    assert!(text(&c, "#labs").await.contains("Hemoglobin [Mass/volume] in Blood"));
    assert!(!text(&c, "#labs").await.contains("Lithium"), "the labelled result is not shared");
    assert!(c.find(Locator::Css("#vitals svg")).await.is_ok(), "vital signs are plotted");
    assert!(text(&c, "#vitals").await.contains("Body Height"));
    screenshot(&c, "doctor-chart").await;

    // The patient revokes; the doctor's next fetch is refused.
    c.goto(&patient_app.url("/grants")).await.unwrap();
    click(&c, "#grants button.danger").await;
    wait_for(&c, ".banner.ok", WAIT).await;
    assert!(text(&c, ".banner.ok").await.contains("revoked"));
    assert_eq!(grants_of(&w.patient)[0]["revoked"], true);
    c.goto(&doctor_app.url(&format!("/patients/{}", id_of(&w.patient)))).await.unwrap();
    click(&c, "#fetch").await;
    wait_for(&c, "#refusals", WAIT).await;
    assert!(text(&c, "#refusals").await.contains("(revoked)"));
    screenshot(&c, "doctor-refused").await;
    // The doctor's own history, proven in the log, shows both.
    c.goto(&doctor_app.url("/history")).await.unwrap();
    wait_for(&c, "#history", WAIT).await;
    let own = text(&c, "#history").await;
    assert!(own.contains("record served") && own.contains("access refused"), "{own}");

    // The patient's history: served and refused, each proven in the log.
    c.goto(&patient_app.url("/history")).await.unwrap();
    wait_for(&c, "#history", WAIT).await;
    let history = text(&c, "#history").await;
    assert!(history.contains("record served") && history.contains("access refused"), "{history}");
    assert!(history.contains("denied: revoked"), "{history}");
    screenshot(&c, "patient-history").await;

    // Research: the patient sees the summary, then sends exactly it.
    c.goto(&patient_app.url("/research/health-basics")).await.unwrap();
    wait_for(&c, "#summary", WAIT).await;
    screenshot(&c, "patient-research-summary").await;
    click(&c, "form.actions button").await;
    wait_for(&c, ".banner.ok", WAIT).await;
    assert!(text(&c, ".banner.ok").await.contains("was sent"));

    // The auditor: verification and the full audit pass; the refusal is
    // in the accesses.
    let auditor_app = App::start(&w.auditor);
    c.goto(&auditor_app.launch).await.unwrap();
    wait_for(&c, "#verify-status", WAIT).await;
    assert!(text(&c, "#verify-status").await.contains("Log verified"));
    assert!(text(&c, "#audit-status").await.contains("Full audit passed"));
    screenshot(&c, "auditor-verification").await;
    c.goto(&auditor_app.url("/accesses?outcome=denied")).await.unwrap();
    let accesses = text(&c, "#audit-accesses").await;
    assert!(accesses.contains("revoked"), "{accesses}");
    screenshot(&c, "auditor-accesses").await;

    // The analyst: a noisy histogram with its accuracy, and the budget.
    let analyst_app = App::start(&w.analyst);
    c.goto(&analyst_app.launch).await.unwrap();
    wait_for(&c, "#query-form", WAIT).await;
    let budget_before = text(&c, "#budget").await;
    c.find(Locator::Css("#statistic")).await.unwrap().select_by_value("histogram").await.unwrap();
    c.find(Locator::Css("#field")).await.unwrap().select_by_value("diabetes").await.unwrap();
    let eps = c.find(Locator::Css("#epsilon")).await.unwrap();
    eps.clear().await.unwrap();
    eps.send_keys("0.5").await.unwrap();
    click(&c, "#ask").await;
    wait_for(&c, "section.answer svg", WAIT).await;
    let answer = text(&c, "section.answer").await;
    assert!(answer.contains("histogram diabetes") && answer.contains("confidence"), "{answer}");
    assert_ne!(text(&c, "#budget").await, budget_before, "the budget shows the debit");
    screenshot(&c, "analyst-answer").await;

    // "Lock and quit" stops the patient's app.
    c.goto(&patient_app.base).await.unwrap();
    click(&c, "header form button").await;
    assert!(patient_app.wait_exit(Duration::from_secs(30)).success());
    c.close().await.unwrap();
}

/// The addresses of this machine other than loopback (from the routing
/// table: a UDP "connect" sends nothing).
fn non_loopback_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    for target in ["10.255.255.255:9", "192.0.2.1:9", "198.18.0.1:9", "8.8.8.8:9"] {
        if let Ok(s) = UdpSocket::bind("0.0.0.0:0") {
            if s.connect(target).is_ok() {
                if let Ok(a) = s.local_addr() {
                    if !a.ip().is_loopback() && !a.ip().is_unspecified() && !out.contains(&a.ip()) {
                        out.push(a.ip());
                    }
                }
            }
        }
    }
    out
}

#[test]
fn the_app_refuses_strangers_and_forged_requests() {
    let w = world();
    let doctor_id = id_of(&w.doctor);
    w.patient.run(&["grant", &doctor_id, "--scope", "Condition", "--expires", "7d", "--yes"]).ok();
    let grant_id = grants_of(&w.patient)[0]["grant_id"].as_str().unwrap().to_owned();
    let app = App::start(&w.patient);
    let port = app.port;
    let host = format!("127.0.0.1:{port}");
    let token = app.launch.split("token=").nth(1).unwrap().to_owned();
    let launch_path = format!("/launch?token={token}");

    // Only loopback: not on the machine's other addresses, not on another
    // loopback address.
    let others = non_loopback_addresses();
    for ip in &others {
        let refused =
            TcpStream::connect_timeout(&SocketAddr::new(*ip, port), Duration::from_secs(2)).is_err();
        assert!(refused, "the app answered on {ip}:{port}");
    }
    if others.is_empty() {
        eprintln!("note: this machine has no non-loopback address; checked 127.0.0.2 only");
    }
    assert!(TcpStream::connect(("127.0.0.2", port)).is_err(), "the app answered on 127.0.0.2");

    // No session: refused, with the strict headers anyway.
    let r = raw(port, "GET", "/", &[("Host", &host)], "");
    assert_eq!(r.status, 401, "{}", r.body);
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("referrer-policy"), Some("same-origin"));
    assert!(!r.body.contains("Alpha"), "no data without a session");

    // DNS rebinding: the right token under another Host is refused and
    // not consumed.
    let r = raw(port, "GET", &launch_path, &[("Host", &format!("rebind.example:{port}"))], "");
    assert_eq!(r.status, 421);
    assert!(r.header("set-cookie").is_none());
    let r = raw(port, "GET", "/launch?token=00", &[("Host", &host)], "");
    assert_eq!(r.status, 403);

    // The real link, once: an HttpOnly, SameSite=Strict session cookie.
    let r = raw(port, "GET", &launch_path, &[("Host", &host)], "");
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let r = raw(port, "GET", &launch_path, &[("Host", &host)], "");
    assert_eq!(r.status, 403, "a launch link works once");

    // With the cookie: pages, but not under another Host.
    let r = raw(port, "GET", "/grants", &[("Host", &host), ("Cookie", &cookie)], "");
    assert_eq!(r.status, 200);
    assert!(r.body.contains(&grant_id));
    let r = raw(
        port,
        "GET",
        "/grants",
        &[("Host", &format!("attacker.example:{port}")), ("Cookie", &cookie)],
        "",
    );
    assert_eq!(r.status, 421);
    assert!(!r.body.contains(&grant_id));
    let r = raw(port, "GET", "/grants", &[("Host", &host), ("Cookie", "medrelay-patient-1=forged")], "");
    assert_eq!(r.status, 401);

    // State changes need the CSRF token (and this origin): each forged
    // revocation is refused and the grant stays active.
    let csrf = {
        let r = raw(port, "GET", "/grants", &[("Host", &host), ("Cookie", &cookie)], "");
        let at = r.body.find("csrf=").unwrap() + 5;
        r.body[at..at + 64].to_owned()
    };
    let revoke = format!("/grants/{grant_id}/revoke");
    for (path, extra) in [
        (revoke.clone(), None),
        (format!("{revoke}?csrf={}", "0".repeat(64)), None),
        (format!("{revoke}?csrf={csrf}"), Some(("Origin", "http://evil.example"))),
        (format!("{revoke}?csrf={csrf}"), Some(("Sec-Fetch-Site", "cross-site"))),
    ] {
        let mut headers = vec![("Host", host.as_str()), ("Cookie", cookie.as_str())];
        headers.extend(extra);
        let r = raw(port, "POST", &path, &headers, "");
        assert_eq!(r.status, 403, "{path} {extra:?}: {}", r.body);
        assert_eq!(grants_of(&w.patient)[0]["revoked"], false, "{path} {extra:?} changed nothing");
    }
    // Without a session the token alone is not enough either.
    let r = raw(port, "POST", &format!("{revoke}?csrf={csrf}"), &[("Host", &host)], "");
    assert_eq!(r.status, 401);
    assert_eq!(grants_of(&w.patient)[0]["revoked"], false);

    // The same request with the token, from the page's own origin, works.
    let origin = format!("http://{host}");
    let r = raw(
        port,
        "POST",
        &format!("{revoke}?csrf={csrf}"),
        &[("Host", &host), ("Cookie", &cookie), ("Origin", &origin), ("Sec-Fetch-Site", "same-origin")],
        "",
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(grants_of(&w.patient)[0]["revoked"], true);
}

#[test]
fn downloads_a_patients_record_and_a_doctors_chart_as_a_fhir_bundle() {
    let w = world();
    w.patient.run(&["import", data("fhir-patient-alpha.json").to_str().unwrap()]).ok();
    let pid = id_of(&w.patient);
    w.patient.run(&["grant", &id_of(&w.doctor), "--scope", "Condition,Observation,Patient", "--yes"]).ok();

    // The patient downloads one of their own records, decrypted locally.
    let patient = App::start(&w.patient);
    let ps = Session::sign_in(&patient);
    let records = w.patient.run(&["records", "--json"]).json();
    let rid = records.as_array().unwrap()[0]["record_id"].as_str().unwrap().to_owned();
    let r = ps.get(&format!("/records/{rid}/download"));
    assert_eq!(r.status, 200);
    assert!(r.header("content-disposition").unwrap().starts_with("attachment"), "{:?}", r.headers);
    let resource: Value = serde_json::from_str(&r.body).unwrap();
    assert!(resource["resourceType"].is_string() && resource["id"].is_string(), "{resource}");
    assert_eq!(ps.get("/records/not-an-id/download").status, 404);

    // The doctor fetches the chart and downloads it as one Bundle.
    let doctor = App::start(&w.doctor);
    let ds = Session::sign_in(&doctor);
    assert_eq!(ds.get(&format!("/patients/{pid}/bundle")).status, 404, "nothing fetched yet");
    let r = ds.post(&format!("/patients/{pid}/fetch"), "");
    assert_eq!(r.status, 303, "{}", r.body);
    let chart = ds.finish_job(r.header("location").unwrap());
    assert_eq!(chart, format!("/patients/{pid}"));
    let page = ds.get(&chart);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Type 2 diabetes"), "the chart shows the conditions");
    let r = ds.get(&format!("/patients/{pid}/bundle"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/fhir+json"));
    let bundle: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    let entries = bundle["entry"].as_array().unwrap();
    // 2 conditions (the depression diagnosis is labelled and not granted),
    // 6 observations, the Patient; no medication.
    let mut types: Vec<&str> =
        entries.iter().map(|e| e["resource"]["resourceType"].as_str().unwrap()).collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(entries.len(), 9, "{types:?}");
    assert_eq!(types, ["Condition", "Observation", "Patient"]);
    assert!(!r.body.contains("depressive"));
    assert_eq!(bundle["total"], 9);
}

#[test]
fn the_auditor_app_shows_a_rewritten_log_loudly() {
    let mut w = world();
    w.patient.run(&["import", data("fhir-patient-alpha.json").to_str().unwrap()]).ok();
    let auditor = App::start(&w.auditor);
    let s = Session::sign_in(&auditor);
    let page = s.get("/");
    assert!(page.body.contains("Log verified") && page.body.contains("Full audit passed"), "{}", page.body);
    let grants = s.get("/grants?patient=not-an-id");
    assert!(grants.body.contains("the patient id is not a valid id"), "a bad filter is named");

    // Flip a byte of a stored log entry while the server is down.
    w.server.stop();
    tamper_log_entry(&w.server.data_dir(), 5);
    w.server.start();
    let r = s.post("/verify", "");
    assert_eq!(r.status, 303);
    let page = s.get("/");
    assert!(
        page.body.contains("Verification failed") && page.body.contains("LOG INTEGRITY FAILURE"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Log verified"));
    // The listings refuse to show anything from a log that does not verify.
    assert_eq!(s.get("/accesses").status, 502);
}

#[test]
fn the_import_page_checks_files_before_uploading_and_takes_other_documents() {
    let w = world();
    let app = App::start(&w.patient);
    let s = Session::sign_in(&app);
    let alpha = std::fs::read(data("fhir-patient-alpha.json")).unwrap();

    // A good export and a broken file: the check page names the broken
    // one, and nothing is uploaded until the patient confirms.
    let r = s.post_multipart(
        "/import",
        &[("files", Some("alpha.json"), &alpha), ("files", Some("broken.json"), b"this is not JSON")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("broken.json") && r.body.contains("refused"), "{}", r.body);
    assert!(r.body.contains("mental-health"), "the depression diagnosis is labelled: {}", r.body);
    assert!(records_of(&w.patient).is_empty());
    let at = r.body.find("action=\"/import/").unwrap() + "action=\"".len();
    let upload = r.body[at..].split('?').next().unwrap().to_owned();
    let done = s.finish_job(s.post(&upload, "").header("location").unwrap());
    assert_eq!(done, "/records");
    let imported = records_of(&w.patient).len();
    assert!(imported > 10, "{imported}");
    let page = s.get("/records").body;
    assert!(
        page.contains("records encrypted and uploaded") && page.contains("refused: broken.json"),
        "{page}"
    );
    // A staged import is uploaded once.
    let again = s.post(&upload, "");
    assert_eq!(again.status, 303);
    assert_eq!(again.header("location"), Some("/import"));
    assert_eq!(records_of(&w.patient).len(), imported);

    // An empty form uploads nothing and says why.
    let r = s.post_multipart("/import", &[("files", Some(""), b"")]);
    assert_eq!(r.status, 303);
    assert!(s.get("/import").body.contains("Choose or drop at least one FHIR file"));

    // Another document: encrypted as one record with its category and
    // label; the same file again is recognised.
    let pdf: &[u8] = b"%PDF-1.4 synthetic discharge letter, not a real document";
    let parts: [(&str, Option<&str>, &[u8]); 3] = [
        ("document", Some("letter.pdf"), pdf),
        ("category", None, b"clinical-note"),
        ("label", None, b"genetics"),
    ];
    let r = s.post_multipart("/upload", &parts);
    assert_eq!(r.status, 303, "{}", r.body);
    let records = records_of(&w.patient);
    assert_eq!(records.len(), imported + 1);
    let doc = records
        .iter()
        .find(|r| r["category"].as_str().is_some_and(|c| c.starts_with("DocumentReference")))
        .expect("the document");
    assert_eq!(doc["category"], "DocumentReference?category=clinical-note#genetics");
    assert!(s.get("/records").body.contains("was encrypted and uploaded as record"));
    s.post_multipart("/upload", &parts);
    assert!(s.get("/records").body.contains("letter.pdf was already uploaded"));
    assert_eq!(records_of(&w.patient).len(), imported + 1);
    // An unknown label is refused and uploads nothing.
    let bad: [(&str, Option<&str>, &[u8]); 2] =
        [("document", Some("other.pdf"), b"%PDF other"), ("label", None, b"secret")];
    let r = s.post_multipart("/upload", &bad);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("unknown label"), "{}", r.body);
    assert_eq!(records_of(&w.patient).len(), imported + 1);
}

/// The study's schema: two vital signs Alpha's bundle has.
const VITALS: &str = r#"{
  "name": "vitals",
  "description": "Latest systolic blood pressure and BMI",
  "fields": [
    {"name": "systolic_bp", "type": "float", "min": 80, "max": 180,
     "description": "Latest systolic blood pressure in mm[Hg] (LOINC 8480-6)",
     "derive": {"from": "latest_observation",
                "codes": [{"system": "http://loinc.org", "code": "8480-6"}],
                "component_of": [{"system": "http://loinc.org", "code": "85354-9"}],
                "unit": "mm[Hg]"}},
    {"name": "bmi", "type": "float", "min": 15, "max": 45,
     "description": "Latest body mass index in kg/m2 (LOINC 39156-5)",
     "derive": {"from": "latest_observation",
                "codes": [{"system": "http://loinc.org", "code": "39156-5"}],
                "unit": "kg/m2"}}
  ]
}"#;

fn server_tool(args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new(bin("medrelay-server")).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A private study `bp-bmi` (batches of at least 2) on a leader and a
/// helper aggregator, both running; returns (leader, helper, an analyst's
/// enrollment token on the leader).
fn study_servers(root: &std::path::Path) -> (Server, Server, String) {
    let mut leader = Server::init();
    let mut helper = Server::init();
    let analyst_token = leader.enroll("analyst", "Analyst Ana");
    let schema_file = root.join("vitals.json");
    std::fs::write(&schema_file, VITALS).unwrap();
    let schema_sha = {
        use sha2::Digest as _;
        let parsed = medrelay_dp::Schema::from_json(VITALS.as_bytes()).unwrap();
        hex::encode(sha2::Sha256::digest(serde_json::to_vec(&parsed).unwrap()))
    };
    let key = |s: &Server| -> String {
        let out = server_tool(&[
            "aggregator".as_ref(),
            "key".as_ref(),
            "--data".as_ref(),
            s.data_dir().as_os_str(),
        ]);
        serde_json::from_str::<Value>(&out).unwrap()["hpke_public_key"].as_str().unwrap().to_owned()
    };
    let suite = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM";
    let study = serde_json::json!({
        "name": "bp-bmi",
        "description": "Systolic blood pressure and BMI",
        "schema": "vitals",
        "schema_sha256": schema_sha,
        "numeric": ["systolic_bp", "bmi"],
        "correlations": [["systolic_bp", "bmi"]],
        "histograms": [{"field": "systolic_bp", "edges": [80, 100, 120, 140, 160, 180]}],
        "value_bits": 6,
        "min_batch_size": 2,
        "privacy": {"rho": 20.0},
        "opens_at": 1_577_836_800u64,
        "closes_at": 4_102_444_800u64,
        "aggregators": {
            "leader": {"hpke_suite": suite, "hpke_public_key": key(&leader)},
            "helper": {"hpke_suite": suite, "hpke_public_key": key(&helper)}
        }
    });
    let study_file = root.join("study.json");
    std::fs::write(&study_file, serde_json::to_vec_pretty(&study).unwrap()).unwrap();
    for s in [&leader, &helper] {
        server_tool(&[
            "schema".as_ref(),
            "add".as_ref(),
            "--data".as_ref(),
            s.data_dir().as_os_str(),
            schema_file.as_os_str(),
        ]);
        server_tool(&[
            "study".as_ref(),
            "add".as_ref(),
            "--data".as_ref(),
            s.data_dir().as_os_str(),
            study_file.as_os_str(),
        ]);
    }
    let token_file = root.join("aggregator.token");
    std::fs::write(&token_file, server_tool(&["aggregator".as_ref(), "token".as_ref()])).unwrap();
    let tf = token_file.as_os_str();
    helper.start_with(&["--aggregator".as_ref(), "helper".as_ref(), "--aggregator-token-file".as_ref(), tf]);
    let helper_url = helper.url();
    leader.start_with(&[
        "--aggregator".as_ref(),
        "leader".as_ref(),
        "--helper-url".as_ref(),
        helper_url.as_ref(),
        "--aggregator-token-file".as_ref(),
        tf,
    ]);
    (leader, helper, analyst_token)
}

#[tokio::test(flavor = "current_thread")]
async fn private_studies_in_the_patient_and_analyst_apps() {
    let root = tempfile::tempdir().unwrap();
    let (leader, _helper, analyst_token) = study_servers(root.path());
    let url = leader.url();
    let alpha = User::new("medrelay-patient", root.path(), "alpha");
    alpha.run(&["init", "--server", &url, "--name", "Alpha"]).ok();
    alpha.run(&["import", data("fhir-patient-alpha.json").to_str().unwrap()]).ok();
    let ana = User::new("medrelay-doctor", root.path(), "ana");
    ana.run(&["init", "--analyst", "--server", &url, "--enrollment-token", &analyst_token, "--name", "Ana"])
        .ok();
    let ready =
        || ana.run(&["study", "status", "--study", "bp-bmi", "--json"]).json()["ready"].as_bool().unwrap();

    let app = App::start(&alpha);
    let s = Session::sign_in(&app);
    let research = s.get("/research");
    assert_eq!(research.status, 200);
    assert!(
        research.body.contains("Private studies") && research.body.contains("href=\"/studies/bp-bmi\""),
        "{}",
        research.body
    );

    // The summary derived here, shown before anything is sent.
    let page = s.get("/studies/bp-bmi");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("systolic_bp") && page.body.contains("two secret shares"), "{}", page.body);
    assert!(page.body.contains("action=\"/studies/bp-bmi/contribute?csrf="), "{}", page.body);
    let at = page.body.find("name=\"nonce\" value=\"").unwrap() + "name=\"nonce\" value=\"".len();
    let nonce = page.body[at..at + 32].to_owned();

    // Another summary than the one on screen is refused and sends nothing.
    let r = s.post("/studies/bp-bmi/contribute", &format!("nonce={}", "0".repeat(32)));
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/studies/bp-bmi"));
    // An unknown study is a clear error page.
    let r = s.get("/studies/no-such-study");
    assert!(r.status >= 400, "{}", r.status);

    // The real one: one report, two shares.
    let r = s.post("/studies/bp-bmi/contribute", &format!("nonce={nonce}"));
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/research"));
    assert!(s.get("/research").body.contains("was sent as two encrypted shares"));
    // It reached the leader: Alpha's quota is used, and with one more
    // patient the batch reaches its minimum of 2.
    alpha.run(&["study", "contribute", "--study", "bp-bmi", "--yes"]).fails_with("over_quota");
    assert!(!ready());
    let bravo = User::new("medrelay-patient", root.path(), "bravo");
    bravo.run(&["init", "--server", &url, "--name", "Bravo"]).ok();
    bravo.run(&["import", data("fhir-patient-bravo.json").to_str().unwrap()]).ok();
    bravo.run(&["study", "contribute", "--study", "bp-bmi", "--yes"]).ok();
    // The leader prepares uploaded reports with the helper in the
    // background (every 200 ms): the batch is ready once both are prepared.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "the batch never became ready");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The same nonce twice sends nothing more.
    let r = s.post("/studies/bp-bmi/contribute", &format!("nonce={nonce}"));
    assert_eq!(r.header("location"), Some("/studies/bp-bmi"));

    // The analyst's app: the study, its ready batch, the release, and the
    // statistics computed from the noisy sums.
    let app = App::start(&ana);
    let a = Session::sign_in(&app);
    let list = a.get("/studies");
    assert_eq!(list.status, 200);
    assert!(list.body.contains("bp-bmi") && list.body.contains("badge ok\">ready"), "{}", list.body);
    let page = a.get("/studies/bp-bmi");
    assert!(
        page.body.contains("ready to release") && page.body.contains("No batch is released yet"),
        "{}",
        page.body
    );
    let r = a.post("/studies/bp-bmi/release", "");
    assert_eq!(r.status, 303, "{}", r.body);
    let page = a.get(r.header("location").unwrap());
    assert!(page.body.contains("Released batch 0"), "{}", page.body);
    assert!(page.body.contains("id=\"study-results\"") && page.body.contains("<svg"), "{}", page.body);
    assert!(page.body.contains("systolic_bp, bmi") && page.body.contains("95% confidence"), "{}", page.body);
    let released = ana.run(&["study", "status", "--study", "bp-bmi", "--json"]).json();
    assert_eq!(released["released"], serde_json::json!([0]));
    // The next batch is empty: refused, nothing released.
    let r = a.post("/studies/bp-bmi/release", "");
    assert!(a.get(r.header("location").unwrap()).body.contains("Not released"));
    assert_eq!(
        ana.run(&["study", "status", "--study", "bp-bmi", "--json"]).json()["released"],
        released["released"]
    );
    // Another confidence; a bad one is named.
    assert!(a.get("/studies/bp-bmi?confidence=0.99").body.contains("99% confidence"));
    let r = a.get("/studies/bp-bmi?confidence=2");
    assert!(a.get(r.header("location").unwrap()).body.contains("strictly between 0 and 1"));
    drop(app);

    // The same pages in the browser, for the README.
    let Some((chrome, driver)) = browser_or_skip("private_studies_in_the_patient_and_analyst_apps") else {
        return;
    };
    let chromedriver = Driver::start(&chrome, &driver);
    let c = chromedriver.session().await;
    let analyst_app = App::start(&ana);
    c.goto(&analyst_app.launch).await.unwrap();
    wait_for(&c, "#query-form", WAIT).await;
    c.goto(&analyst_app.url("/studies/bp-bmi")).await.unwrap();
    wait_for(&c, "#study-results svg", WAIT).await;
    assert!(text(&c, "#released").await.contains("batch 0"));
    screenshot(&c, "analyst-study").await;
    let patient_app = App::start(&alpha);
    c.goto(&patient_app.launch).await.unwrap();
    wait_for(&c, "#patient-id", WAIT).await;
    c.goto(&patient_app.url("/studies/bp-bmi")).await.unwrap();
    wait_for(&c, "#study-note", WAIT).await;
    screenshot(&c, "patient-study-summary").await;
    c.close().await.unwrap();
}
