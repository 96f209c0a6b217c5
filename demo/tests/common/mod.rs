//! What every run of the demo must say, whatever its store.

use medrelay_demo::DemoOutcome;

/// Asserts that the narration `text` of a finished run tells the whole
/// story (with a cohort of 3 generated patients).
pub(crate) fn assert_the_whole_story(text: &str, outcome: &DemoOutcome) {
    assert_eq!(outcome.steps, 12, "{text}");
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
}
