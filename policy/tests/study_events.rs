//! Private-study audit events: each round-trips through the canonical
//! encoding, refuses truncation and bad values, and shows as JSON with its
//! own type name and no report content.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use medrelay_crypto::{DecodeError, SigningKey, Timestamp};
use medrelay_policy::{LogEvent, PolicyError, StudyAggregator, StudyEvent};

fn events() -> Vec<LogEvent> {
    let patient = SigningKey::from_seed(&[1; 32]).principal_id();
    let analyst = SigningKey::from_seed(&[2; 32]).principal_id();
    let study = |event| LogEvent::Study { at: Timestamp(1_800_000_000), event };
    vec![
        study(StudyEvent::Added {
            study: "bp-study".into(),
            schema: "health-basics".into(),
            study_sha256: [7; 32],
            aggregator: StudyAggregator::Leader,
        }),
        study(StudyEvent::Added {
            study: "bp-study".into(),
            schema: "health-basics".into(),
            study_sha256: [7; 32],
            aggregator: StudyAggregator::Helper,
        }),
        study(StudyEvent::ReportsUploaded { patient, study: "bp-study".into(), accepted: 3, refused: 1 }),
        study(StudyEvent::ReportsAggregated {
            study: "bp-study".into(),
            batch: 4,
            job: [9; 16],
            aggregated: 997,
            rejected: [1, 0, 2, 0, 0],
        }),
        study(StudyEvent::BatchReleased {
            study: "bp-study".into(),
            batch: 4,
            reports: 997,
            epsilon: 1.0,
            rho: 0.0,
            analyst: Some(analyst),
        }),
        study(StudyEvent::BatchReleased {
            study: "bp-study".into(),
            batch: 4,
            reports: 997,
            epsilon: 0.0,
            rho: 0.5,
            analyst: None,
        }),
    ]
}

#[test]
fn study_events_round_trip_and_refuse_truncation() {
    for ev in events() {
        let bytes = ev.to_bytes().unwrap();
        assert_eq!(LogEvent::from_bytes(&bytes).unwrap(), ev, "{}", ev.kind());
        for n in 0..bytes.len() {
            assert!(LogEvent::from_bytes(&bytes[..n]).is_err(), "{} prefix {n}", ev.kind());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(LogEvent::from_bytes(&long), Err(PolicyError::Decode(DecodeError::TrailingBytes)));
    }
    let kinds: Vec<&str> = events().iter().map(LogEvent::kind).collect();
    assert_eq!(
        kinds,
        [
            "study_added",
            "study_added",
            "study_reports_uploaded",
            "study_reports_aggregated",
            "study_batch_released",
            "study_batch_released"
        ]
    );
}

#[test]
fn bad_study_events_are_typed_errors() {
    let at = Timestamp(1);
    for (eps, rho) in [(f64::NAN, 0.0), (-1.0, 0.0), (0.0, f64::INFINITY), (-0.0, 0.0)] {
        let ev = LogEvent::Study {
            at,
            event: StudyEvent::BatchReleased {
                study: "s".into(),
                batch: 0,
                reports: 1,
                epsilon: eps,
                rho,
                analyst: None,
            },
        };
        assert_eq!(ev.to_bytes(), Err(PolicyError::Malformed("log event: privacy cost")), "{eps} {rho}");
    }
    for name in ["", "Upper", "a b", &"x".repeat(65)] {
        let ev = LogEvent::Study {
            at,
            event: StudyEvent::ReportsUploaded {
                patient: SigningKey::from_seed(&[1; 32]).principal_id(),
                study: name.into(),
                accepted: 1,
                refused: 0,
            },
        };
        assert_eq!(ev.to_bytes(), Err(PolicyError::Malformed("log event: study name")), "{name:?}");
    }
    // An unknown study sub-event and an unknown aggregator byte.
    let good = events()[0].to_bytes().unwrap();
    let mut unknown = good.clone();
    unknown[14] = 9;
    assert_eq!(LogEvent::from_bytes(&unknown), Err(PolicyError::Malformed("log event: unknown study event")));
    let mut role = good.clone();
    let last = role.len() - 1;
    role[last] = 7;
    assert_eq!(LogEvent::from_bytes(&role), Err(PolicyError::Malformed("log event: study aggregator")));
}

#[test]
fn study_events_show_as_json_with_counts_and_costs() {
    let evs = events();
    let v = serde_json::to_value(&evs[3]).unwrap();
    assert_eq!(v["type"], "study_reports_aggregated");
    assert_eq!(v["rejected"]["invalid_proof"], 2);
    assert_eq!(v["rejected"]["decrypt_failed"], 1);
    assert_eq!(v["job"], "09".repeat(16));
    let v = serde_json::to_value(&evs[4]).unwrap();
    assert_eq!(v["type"], "study_batch_released");
    assert_eq!((v["epsilon"].as_f64(), v["reports"].as_u64()), (Some(1.0), Some(997)));
    let v = serde_json::to_value(&evs[0]).unwrap();
    assert_eq!((v["type"].as_str(), v["aggregator"].as_str()), (Some("study_added"), Some("leader")));
}
