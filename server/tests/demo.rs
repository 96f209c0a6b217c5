//! The narrated demo, as `medrelay-server demo --data DIR` runs it (with a
//! small cohort): every step behaves as told, the story names what a
//! newcomer should see, and the kept directory holds a server that starts
//! again with the whole log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use medrelay_server::demo::{run, DemoOptions};
use medrelay_server::LocalServer;

#[test]
fn the_demo_tells_the_whole_story_and_keeps_its_data_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let opts = DemoOptions { data: Some(keep.clone()), cohort: 3, seed: 7 };
    let mut out = Vec::new();
    let outcome = run(&opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(outcome.steps, 12, "{text}");
    assert_eq!(outcome.kept.as_deref(), Some(keep.as_path()));
    for told in [
        "a dry run shows 17 records and what would be labelled, and why",
        "Condition/alpha-depression: mental-health: SNOMED CT 370143000 is in C2S Mental Health Disorders - SNOMEDCT",
        "Encounter/alpha-visit-2: mental-health: Condition/alpha-depression refers to it as its encounter",
        "Claim/alpha-claim-2: mental-health: its diagnosisReference refers to Condition/alpha-depression",
        "encrypted and uploaded 17 records",
        "fetch-all → one FHIR R4 Bundle",
        "of 3 resources, each as Alpha published it; the server listed nothing else, so Dr Grey learns nothing of Alpha's other 14 records",
        "Dr Grey sees 3 records shared by Alpha",
        "refused: out_of_scope",
        "refused: sensitive_excluded",
        "refused: revoked",
        "no anomaly",
        "6 patients contributed",
        "How many contributors have diabetes?",
        "Median systolic blood pressure",
        "refused: budget_exceeded; nothing spent",
        "6 patients checked the study against the signed log",
        "refused: already_released",
        "correlation of systolic_bp and bmi",
        "without changing a byte of history",
        "(raw and base64) and the passphrase: 0 hits",
        "The story behaved as told: 12 steps",
    ] {
        assert!(text.contains(told), "the story does not say {told:?}:\n{text}");
    }
    // Three lab results fetched, each logged.
    assert_eq!(text.matches("decrypted on Dr Grey's machine").count(), 3, "{text}");

    // The kept server data opens again with the whole log.
    let server = LocalServer::start(&keep.join("server"), "medrelay.demo/log", 1).unwrap();
    assert_eq!(server.state().store().log_size().unwrap(), outcome.log_entries);
    server.stop().unwrap();
    // A second run into the same directory is refused, and changes nothing.
    let before = std::fs::read_dir(&keep).unwrap().count();
    let err = run(&opts, &mut Vec::new()).unwrap_err();
    assert!(err.message.contains("is not empty"), "{err}");
    assert_eq!(std::fs::read_dir(&keep).unwrap().count(), before);
}
