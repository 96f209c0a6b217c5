//! The full-log audit on synthetic logs built with real keys, patient-signed
//! grants and revocations, a Merkle tree and a signed checkpoint: a clean log
//! is clean, and each kind of tampering or policy violation is reported at
//! the entry where it happens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use medrelay_crypto::{
    domain, GrantId, KeyClass, RecordCategory, RecordHeader, RecordId, SensitivityLabel, SigningKey,
    Timestamp,
};
use medrelay_policy::audit::{audit_log, AnomalyKind, AuditReport, LogAudit, MAX_CLOCK_SKEW_SECONDS};
use medrelay_policy::{
    Denial, EventSalt, Grant, LeafOpening, LogEvent, LogSigner, LogVerifier, MemoryNodeStore, MerkleTree,
    PolicyError, Purpose, Revocation, Role, SignedGrant, SignedRevocation,
};
use sha2::{Digest as _, Sha256};

const ORIGIN: &str = "medrelay.example/log";
/// The audit time: after every event of the clean log.
const NOW: Timestamp = Timestamp(4_000);

struct World {
    patient: SigningKey,
    other_patient: SigningKey,
    doctor: SigningKey,
    other_doctor: SigningKey,
    analyst: SigningKey,
    /// The patient's laboratory Observation (class laboratory).
    lab: RecordHeader,
    /// The patient's Condition (class general).
    cond: RecordHeader,
    /// The patient's mental-health-labelled Condition.
    mental: RecordHeader,
    /// The other patient's laboratory Observation.
    other_lab: RecordHeader,
    /// patient → doctor, `Observation?category=laboratory`, [1000, 2000).
    g1: Grant,
    /// patient → other_doctor, `Condition`, [1000, 5000).
    g2: Grant,
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32])
}

fn header(owner: &SigningKey, id: u8, rt: &str, codes: &[&str], labels: &[SensitivityLabel]) -> RecordHeader {
    let cat = RecordCategory::new(rt, codes.iter().map(|s| s.to_string()), labels.iter().copied()).unwrap();
    RecordHeader::new(
        RecordId::from_bytes([id; 16]),
        owner.principal_id(),
        cat,
        "application/fhir+json",
        Timestamp(50),
    )
    .unwrap()
}

fn grant(id: u8, patient: &SigningKey, doctor: &SigningKey, scope: &str, nb: u64, na: u64) -> Grant {
    Grant::new(
        GrantId::from_bytes([id; 16]),
        patient.principal_id(),
        doctor.principal_id(),
        scope.parse().unwrap(),
        Purpose::Treatment,
        Timestamp(nb),
        Timestamp(na),
        Timestamp(900),
    )
    .unwrap()
}

fn world() -> World {
    let (patient, other_patient, doctor, other_doctor, analyst) = (key(1), key(2), key(3), key(4), key(5));
    let lab = header(&patient, 0x10, "Observation", &["laboratory"], &[]);
    let cond = header(&patient, 0x11, "Condition", &[], &[]);
    let mental = header(&patient, 0x12, "Condition", &[], &[SensitivityLabel::MentalHealth]);
    let other_lab = header(&other_patient, 0x13, "Observation", &["laboratory"], &[]);
    let g1 = grant(0x21, &patient, &doctor, "Observation?category=laboratory", 1_000, 2_000);
    let g2 = grant(0x22, &patient, &other_doctor, "Condition", 1_000, 5_000);
    World { patient, other_patient, doctor, other_doctor, analyst, lab, cond, mental, other_lab, g1, g2 }
}

fn register(at: u64, k: &SigningKey, role: Role, pre: u8) -> LogEvent {
    LogEvent::PrincipalRegistered {
        at: Timestamp(at),
        principal: k.principal_id(),
        role,
        signing_key: k.verifying_key(),
        pre_key: role.needs_pre_key().then_some([pre; 32]),
    }
}

fn publish(at: u64, header: &RecordHeader) -> LogEvent {
    LogEvent::RecordPublished {
        at: Timestamp(at),
        header: header.clone(),
        size: 1_000,
        ciphertext_sha256: [7; 32],
    }
}

fn served(at: u64, g: &Grant, record: &RecordHeader, doctor: &SigningKey) -> LogEvent {
    LogEvent::ReencryptionServed {
        at: Timestamp(at),
        grant: g.grant_id(),
        record: record.record_id(),
        doctor: doctor.principal_id(),
        patient: record.owner(),
        key_class: record.key_class(),
    }
}

fn created(at: u64, g: &Grant, signer: &SigningKey) -> LogEvent {
    LogEvent::GrantCreated { at: Timestamp(at), grant: g.sign(signer).unwrap() }
}

fn revoked(at: u64, g: &Grant, patient: &SigningKey) -> LogEvent {
    let r = Revocation::new(g.grant_id(), patient.principal_id(), Timestamp(at));
    LogEvent::GrantRevoked { at: Timestamp(at), revocation: r.sign(patient).unwrap() }
}

/// 18 entries: registrations, records, two grants, served and denied
/// accesses, a revocation, DP events.
fn clean_log(w: &World) -> Vec<LogEvent> {
    vec![
        register(10, &w.patient, Role::Patient, 1),       // 0
        register(11, &w.other_patient, Role::Patient, 2), // 1
        register(12, &w.doctor, Role::Doctor, 3),         // 2
        register(13, &w.other_doctor, Role::Doctor, 4),   // 3
        register(14, &w.analyst, Role::Analyst, 0),       // 4
        publish(100, &w.lab),                             // 5
        publish(101, &w.cond),                            // 6
        publish(102, &w.mental),                          // 7
        publish(103, &w.other_lab),                       // 8
        created(900, &w.g1, &w.patient),                  // 9
        created(901, &w.g2, &w.patient),                  // 10
        served(1_100, &w.g1, &w.lab, &w.doctor),          // 11
        served(1_200, &w.g2, &w.cond, &w.other_doctor),   // 12
        LogEvent::AccessDenied {
            at: Timestamp(1_201),
            doctor: w.doctor.principal_id(),
            record: w.cond.record_id(),
            patient: Some(w.patient.principal_id()),
            reason: Denial::OutOfScope,
            count: 1,
        }, // 13
        revoked(1_300, &w.g1, &w.patient),                // 14
        LogEvent::AccessDenied {
            at: Timestamp(1_400),
            doctor: w.doctor.principal_id(),
            record: w.lab.record_id(),
            patient: Some(w.patient.principal_id()),
            reason: Denial::Revoked,
            count: 4,
        }, // 15
        LogEvent::DpQueryAnswered {
            at: Timestamp(1_500),
            analyst: w.analyst.principal_id(),
            schema: "vitals-v1".into(),
            epsilon: 0.5,
            rho: 0.0,
        }, // 16
        LogEvent::SummarySubmitted {
            at: Timestamp(1_500),
            patient: w.patient.principal_id(),
            schema: "vitals-v1".into(),
        }, // 17
    ]
}

fn encode(events: &[LogEvent]) -> Vec<Vec<u8>> {
    events.iter().map(|e| e.to_bytes().unwrap()).collect()
}

/// The server's entries for these event bytes: each with its salt (here
/// derived from the bytes, so a test can rebuild the same leaf).
fn opened(entries: &[Vec<u8>]) -> Vec<LeafOpening> {
    entries
        .iter()
        .map(|e| LeafOpening::from_parts(EventSalt::from_bytes(Sha256::digest(e).into()), e.clone()).unwrap())
        .collect()
}

fn log_signer() -> LogSigner {
    LogSigner::new(ORIGIN, &key(9)).unwrap()
}

/// What the server does: a tree over the entries and a signed checkpoint.
fn checkpoint(entries: &[Vec<u8>]) -> String {
    let mut tree = MerkleTree::new(MemoryNodeStore::new());
    for e in opened(entries) {
        tree.append_leaf_hash(e.leaf_hash()).unwrap();
    }
    log_signer().sign_checkpoint(tree.size().unwrap(), tree.root().unwrap()).unwrap()
}

/// Audits `entries` against a checkpoint signed over `signed_over`.
fn audit_against(entries: &[Vec<u8>], signed_over: &[Vec<u8>]) -> AuditReport {
    audit_log(opened(entries), &checkpoint(signed_over), &log_signer().verifier(), NOW).unwrap()
}

/// Audits a log whose checkpoint matches it (only replay findings).
fn audit(events: &[LogEvent]) -> AuditReport {
    let entries = encode(events);
    audit_against(&entries, &entries)
}

/// (index, code) of every anomaly, in report order.
fn found(r: &AuditReport) -> Vec<(Option<u64>, &'static str)> {
    r.anomalies().iter().map(|a| (a.index(), a.kind().code())).collect()
}

fn inserted(mut events: Vec<LogEvent>, at: usize, ev: LogEvent) -> Vec<LogEvent> {
    events.insert(at, ev);
    events
}

fn appended(mut events: Vec<LogEvent>, ev: LogEvent) -> Vec<LogEvent> {
    events.push(ev);
    events
}

#[test]
fn a_clean_log_is_clean() {
    let w = world();
    let events = clean_log(&w);
    let r = audit(&events);
    assert!(r.is_clean(), "{:?}", r.anomalies());
    assert!(!r.has_fatal());
    assert_eq!(r.entries(), 18);
    assert_eq!(r.checkpoint().tree_size, 18);
    assert_eq!(r.computed_root(), r.checkpoint().root_hash);
    assert_eq!(r.audited_at(), NOW);
    assert_eq!(r.undecodable(), 0);
    for (kind, n) in [
        ("principal_registered", 5),
        ("record_published", 4),
        ("grant_created", 2),
        ("reencryption_served", 2),
        ("access_denied", 2),
        ("grant_revoked", 1),
        ("dp_query_answered", 1),
        ("summary_submitted", 1),
        ("doctor_enrolled", 0),
    ] {
        assert_eq!(r.count(kind), n, "{kind}");
    }
    assert_eq!(r.counts().values().sum::<u64>(), 18);
    // g1 is revoked; g2 runs until 5000.
    assert_eq!(r.active_grants(), 1);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["clean"], true);
    assert_eq!(json["anomalies"], serde_json::json!([]));
    assert_eq!(json["checkpoint"]["tree_size"], 18);
    assert_eq!(json["counts"]["reencryption_served"], 2);

    // Streaming entry by entry gives the same report.
    let entries = encode(&events);
    let mut a = LogAudit::new(&checkpoint(&entries), &log_signer().verifier(), NOW).unwrap();
    for (i, e) in opened(&entries).iter().enumerate() {
        assert_eq!(a.entries(), i as u64);
        a.push_entry(e);
    }
    assert_eq!(a.finish(), r);
}

#[test]
fn an_empty_log_is_clean_against_an_empty_checkpoint() {
    let r = audit(&[]);
    assert!(r.is_clean());
    assert_eq!(r.entries(), 0);
    assert_eq!(r.active_grants(), 0);
}

#[test]
fn access_without_a_grant() {
    let w = world();
    let unknown = grant(0x77, &w.patient, &w.doctor, "Observation?category=laboratory", 1_000, 2_000);
    let r = audit(&appended(clean_log(&w), served(1_500, &unknown, &w.lab, &w.doctor)));
    assert_eq!(found(&r), [(Some(18), "access_without_grant")]);
    assert!(!r.is_clean() && !r.has_fatal());
    let d = r.anomalies()[0].description();
    assert!(d.starts_with("entry 18: ") && d.contains(&unknown.grant_id().to_string()), "{d}");

    // A grant logged only *after* the access does not count: g2's creation
    // (entry 10) moved to the end, so its access becomes entry 11.
    let mut late = clean_log(&w);
    let g2 = late.remove(10);
    late.push(g2);
    assert_eq!(found(&audit(&late)), [(Some(11), "access_without_grant")]);
}

#[test]
fn access_after_revocation() {
    let w = world();
    // Inside the window, but g1 was revoked at entry 14.
    let r = audit(&appended(clean_log(&w), served(1_500, &w.g1, &w.lab, &w.doctor)));
    assert_eq!(found(&r), [(Some(18), "access_after_revocation")]);
    assert!(matches!(r.anomalies()[0].kind(), AnomalyKind::AccessAfterRevocation { revoked_at: 14, .. }));
}

#[test]
fn access_outside_the_window() {
    let w = world();
    // Before the revocation (entry 14), at not_after (exclusive) and before
    // not_before.
    for at in [2_000, 2_500, 999, 0] {
        let r = audit(&inserted(clean_log(&w), 14, served(at, &w.g1, &w.lab, &w.doctor)));
        assert_eq!(found(&r), [(Some(14), "access_outside_window")], "at {at}");
        let AnomalyKind::AccessOutsideWindow { at: t, not_before, not_after, .. } = r.anomalies()[0].kind()
        else {
            panic!("kind");
        };
        assert_eq!((*t, *not_before, *not_after), (Timestamp(at), Timestamp(1_000), Timestamp(2_000)));
    }
    // The window's edges that are inside it.
    for at in [1_000, 1_999] {
        assert!(audit(&inserted(clean_log(&w), 14, served(at, &w.g1, &w.lab, &w.doctor))).is_clean());
    }
}

#[test]
fn access_out_of_scope() {
    let w = world();
    // g1 covers laboratory Observations, not a Condition.
    let r = audit(&inserted(clean_log(&w), 12, served(1_150, &w.g1, &w.cond, &w.doctor)));
    assert_eq!(found(&r), [(Some(12), "access_out_of_scope")]);
    assert!(matches!(
        r.anomalies()[0].kind(),
        AnomalyKind::AccessOutOfScope { reason: Denial::OutOfScope, .. }
    ));
    // g2 covers Conditions but not the mental-health label.
    let r = audit(&inserted(clean_log(&w), 13, served(1_250, &w.g2, &w.mental, &w.other_doctor)));
    assert_eq!(found(&r), [(Some(13), "access_out_of_scope")]);
    assert!(matches!(
        r.anomalies()[0].kind(),
        AnomalyKind::AccessOutOfScope { reason: Denial::SensitiveExcluded, .. }
    ));
    assert!(r.anomalies()[0].description().contains("sensitivity label"));
}

#[test]
fn access_to_a_record_another_code_puts_in_an_ungranted_class() {
    // An Observation coded both vital-signs and laboratory is a laboratory
    // record: a vital-signs grant carries no laboratory key and does not
    // reach it; a laboratory grant does.
    let w = world();
    let both = header(&w.patient, 0x14, "Observation", &["laboratory", "vital-signs"], &[]);
    let vitals = grant(0x23, &w.patient, &w.doctor, "Observation?category=vital-signs", 1_000, 5_000);
    let lab = grant(0x24, &w.patient, &w.doctor, "Observation?category=laboratory", 1_000, 5_000);
    let mut events = clean_log(&w);
    events.extend([
        publish(2_000, &both),
        created(2_001, &vitals, &w.patient),
        created(2_002, &lab, &w.patient),
    ]);
    let r = audit(&appended(events.clone(), served(2_100, &vitals, &both, &w.doctor)));
    assert_eq!(found(&r), [(Some(21), "access_out_of_scope")]);
    assert!(matches!(
        r.anomalies()[0].kind(),
        AnomalyKind::AccessOutOfScope { reason: Denial::ClassNotGranted, .. }
    ));
    assert!(r.anomalies()[0].description().contains("key class the grant does not cover"));
    assert!(audit(&appended(events, served(2_100, &lab, &both, &w.doctor))).is_clean());
}

#[test]
fn access_for_the_wrong_doctor() {
    let w = world();
    let r = audit(&inserted(clean_log(&w), 12, served(1_150, &w.g1, &w.lab, &w.other_doctor)));
    assert_eq!(found(&r), [(Some(12), "access_wrong_doctor")]);
    let AnomalyKind::AccessWrongDoctor { doctor, grant_doctor, .. } = r.anomalies()[0].kind() else {
        panic!("kind");
    };
    assert_eq!((*doctor, *grant_doctor), (w.other_doctor.principal_id(), w.doctor.principal_id()));
}

#[test]
fn access_to_another_patients_record_under_a_grant() {
    let w = world();
    // g1 is the first patient's; the record is the other patient's.
    let r = audit(&inserted(clean_log(&w), 12, served(1_150, &w.g1, &w.other_lab, &w.doctor)));
    assert_eq!(found(&r), [(Some(12), "access_grant_not_by_owner")]);
}

#[test]
fn event_fields_that_contradict_the_record() {
    let w = world();
    let ev = |patient: &SigningKey, key_class| LogEvent::ReencryptionServed {
        at: Timestamp(1_150),
        grant: w.g1.grant_id(),
        record: w.lab.record_id(),
        doctor: w.doctor.principal_id(),
        patient: patient.principal_id(),
        key_class,
    };
    let r = audit(&inserted(clean_log(&w), 12, ev(&w.other_patient, KeyClass::Laboratory)));
    assert_eq!(found(&r), [(Some(12), "access_patient_mismatch")]);
    let r = audit(&inserted(clean_log(&w), 12, ev(&w.patient, KeyClass::Genetics)));
    assert_eq!(found(&r), [(Some(12), "access_key_class_mismatch")]);
    // A record never published (or published only later).
    let unpublished = header(&w.patient, 0x55, "Observation", &["laboratory"], &[]);
    let r = audit(&inserted(clean_log(&w), 12, served(1_150, &w.g1, &unpublished, &w.doctor)));
    assert_eq!(found(&r), [(Some(12), "access_to_unknown_record")]);
}

#[test]
fn every_violated_rule_of_one_access_is_reported() {
    let w = world();
    // Wrong doctor, after revocation, after the window, out of scope.
    let r = audit(&appended(clean_log(&w), served(3_000, &w.g1, &w.cond, &w.other_doctor)));
    assert_eq!(
        found(&r),
        [
            (Some(18), "access_wrong_doctor"),
            (Some(18), "access_after_revocation"),
            (Some(18), "access_outside_window"),
            (Some(18), "access_out_of_scope"),
        ]
    );
}

#[test]
fn forged_grant_signature() {
    let w = world();
    // The server (or anyone without the patient's key) signs g2's body.
    let body = w.g2.to_bytes();
    let forged =
        SignedGrant::from_parts(body.clone(), w.other_patient.sign(domain::SIG_GRANT, &body)).unwrap();
    let mut events = clean_log(&w);
    events[10] = LogEvent::GrantCreated { at: Timestamp(901), grant: forged };
    let r = audit(&events);
    // The grant is rejected, and the access that relied on it is reported.
    assert_eq!(found(&r), [(Some(10), "forged_grant"), (Some(12), "access_under_invalid_grant")]);
    assert!(matches!(r.anomalies()[1].kind(), AnomalyKind::AccessUnderInvalidGrant { grant_index: 10, .. }));
    assert_eq!(r.active_grants(), 0);

    // A widened body under the patient's genuine signature of the original.
    let wide = grant(0x22, &w.patient, &w.other_doctor, "Condition,sensitive:mental-health", 1_000, 5_000);
    let genuine = w.g2.sign(&w.patient).unwrap();
    let altered = SignedGrant::from_parts(wide.to_bytes(), *genuine.signature()).unwrap();
    events[10] = LogEvent::GrantCreated { at: Timestamp(901), grant: altered };
    let r = audit(&inserted(events, 13, served(1_250, &wide, &w.mental, &w.other_doctor)));
    assert_eq!(
        found(&r),
        [
            (Some(10), "forged_grant"),
            (Some(12), "access_under_invalid_grant"),
            (Some(13), "access_under_invalid_grant")
        ]
    );

    // A signed body that is not a grant at all.
    let mut events = clean_log(&w);
    let junk = SignedGrant::from_parts(vec![1, 2, 3], w.patient.sign(domain::SIG_GRANT, &[1, 2, 3])).unwrap();
    events[10] = LogEvent::GrantCreated { at: Timestamp(901), grant: junk };
    let r = audit(&events);
    assert_eq!(found(&r), [(Some(10), "forged_grant"), (Some(12), "access_without_grant")]);
}

#[test]
fn grants_need_a_registered_patient_and_doctor_before_them() {
    let w = world();
    let late_patient = key(6);
    let g = grant(0x30, &late_patient, &w.doctor, "Condition", 1_000, 5_000);
    // The patient registers only after the grant is logged.
    let events = appended(
        appended(clean_log(&w), created(1_600, &g, &late_patient)),
        register(1_601, &late_patient, Role::Patient, 6),
    );
    let r = audit(&events);
    assert_eq!(found(&r), [(Some(18), "grant_by_non_patient")]);
    assert!(matches!(r.anomalies()[0].kind(), AnomalyKind::GrantByNonPatient { role: None, .. }));
    // A doctor cannot grant.
    let g = grant(0x31, &w.doctor, &w.other_doctor, "Condition", 1_000, 5_000);
    let r = audit(&appended(clean_log(&w), created(1_600, &g, &w.doctor)));
    assert_eq!(found(&r), [(Some(18), "grant_by_non_patient")]);
    assert!(matches!(
        r.anomalies()[0].kind(),
        AnomalyKind::GrantByNonPatient { role: Some(Role::Doctor), .. }
    ));
    // A grant to an analyst, then an access under it.
    let g = grant(0x32, &w.patient, &w.analyst, "Condition", 1_000, 5_000);
    let events = appended(
        appended(clean_log(&w), created(1_600, &g, &w.patient)),
        served(1_700, &g, &w.cond, &w.analyst),
    );
    assert_eq!(
        found(&audit(&events)),
        [(Some(18), "grant_to_non_doctor"), (Some(19), "access_under_invalid_grant")]
    );
    // The same grant id twice.
    let r = audit(&appended(clean_log(&w), created(1_600, &w.g2, &w.patient)));
    assert_eq!(found(&r), [(Some(18), "duplicate_grant")]);
}

#[test]
fn revocation_rules() {
    let w = world();
    // Revoking a grant the log does not hold.
    let unknown = grant(0x40, &w.patient, &w.doctor, "Condition", 1_000, 5_000);
    assert_eq!(
        found(&audit(&appended(clean_log(&w), revoked(1_600, &unknown, &w.patient)))),
        [(Some(18), "revocation_of_unknown_grant")]
    );
    // Another patient revoking the patient's grant.
    let other = Revocation::new(w.g2.grant_id(), w.other_patient.principal_id(), Timestamp(1_600));
    let ev =
        LogEvent::GrantRevoked { at: Timestamp(1_600), revocation: other.sign(&w.other_patient).unwrap() };
    let r = audit(&appended(clean_log(&w), ev));
    assert_eq!(found(&r), [(Some(18), "revocation_by_other_patient")]);
    assert_eq!(r.active_grants(), 1, "a foreign revocation does not revoke");
    // Revoked twice.
    assert_eq!(
        found(&audit(&appended(clean_log(&w), revoked(1_600, &w.g1, &w.patient)))),
        [(Some(18), "duplicate_revocation")]
    );
    // A revocation not signed by the patient's key.
    let body = Revocation::new(w.g2.grant_id(), w.patient.principal_id(), Timestamp(1_600)).to_bytes();
    let forged =
        SignedRevocation::from_parts(body.clone(), w.doctor.sign(domain::SIG_REVOCATION, &body)).unwrap();
    let r =
        audit(&appended(clean_log(&w), LogEvent::GrantRevoked { at: Timestamp(1_600), revocation: forged }));
    assert_eq!(found(&r), [(Some(18), "forged_revocation")]);
    assert_eq!(r.active_grants(), 1, "a forged revocation does not revoke");
    // A revocation by a principal that is not a patient.
    let by_doctor = Revocation::new(w.g2.grant_id(), w.doctor.principal_id(), Timestamp(1_600));
    let ev = LogEvent::GrantRevoked { at: Timestamp(1_600), revocation: by_doctor.sign(&w.doctor).unwrap() };
    assert_eq!(found(&audit(&appended(clean_log(&w), ev))), [(Some(18), "revocation_by_non_patient")]);
}

#[test]
fn key_swap_and_other_re_registrations() {
    let w = world();
    // The doctor's PRE key replaced by another one.
    let r = audit(&appended(clean_log(&w), register(1_600, &w.doctor, Role::Doctor, 0xAB)));
    assert_eq!(found(&r), [(Some(18), "key_swap")]);
    assert!(matches!(r.anomalies()[0].kind(), AnomalyKind::KeySwap { first: 2, .. }));
    assert!(r.anomalies()[0].description().contains("key swap"));
    // A patient re-registered as a doctor keeps its first role for the audit.
    let r = audit(&appended(clean_log(&w), register(1_600, &w.patient, Role::Doctor, 1)));
    assert_eq!(found(&r), [(Some(18), "role_changed")]);
    // Same role and keys again.
    let r = audit(&appended(clean_log(&w), register(1_600, &w.analyst, Role::Analyst, 0)));
    assert_eq!(found(&r), [(Some(18), "duplicate_registration")]);
}

#[test]
fn record_rules() {
    let w = world();
    assert_eq!(
        found(&audit(&appended(clean_log(&w), publish(1_600, &w.lab)))),
        [(Some(18), "duplicate_record")]
    );
    let by_doctor = header(&w.doctor, 0x60, "Condition", &[], &[]);
    assert_eq!(
        found(&audit(&appended(clean_log(&w), publish(1_600, &by_doctor)))),
        [(Some(18), "record_by_non_patient")]
    );
}

#[test]
fn entries_from_the_future() {
    let w = world();
    let late = NOW.unix_seconds() + MAX_CLOCK_SKEW_SECONDS;
    let events = appended(clean_log(&w), served(late, &w.g2, &w.cond, &w.other_doctor));
    assert!(audit(&events).is_clean(), "within the allowed skew");
    let events = appended(clean_log(&w), served(late + 1, &w.g2, &w.cond, &w.other_doctor));
    assert_eq!(found(&audit(&events)), [(Some(18), "future_timestamp")]);
}

#[test]
fn tampered_entry_is_a_root_mismatch_and_is_located_by_replay() {
    let w = world();
    let honest = encode(&clean_log(&w));
    // Entry 11 rewritten after the checkpoint: served to the other doctor.
    let mut tampered = honest.clone();
    tampered[11] = served(1_100, &w.g1, &w.lab, &w.other_doctor).to_bytes().unwrap();
    let r = audit_against(&tampered, &honest);
    assert_eq!(found(&r), [(None, "root_mismatch"), (Some(11), "access_wrong_doctor")]);
    assert!(r.has_fatal() && r.anomalies()[0].kind().is_fatal());
    assert_ne!(r.computed_root(), r.checkpoint().root_hash);
    assert!(r.anomalies()[0].description().starts_with("log: "));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["clean"], false);
    assert_eq!(json["anomalies"][0]["code"], "root_mismatch");
    assert_eq!(json["anomalies"][0]["fatal"], true);
    assert_eq!(json["anomalies"][1]["index"], 11);
    assert_eq!(json["anomalies"][1]["fatal"], false);

    // One flipped bit in g1's signature: the grant no longer verifies.
    let mut flipped = honest.clone();
    let last = flipped[9].len() - 1;
    flipped[9][last] ^= 1;
    let r = audit_against(&flipped, &honest);
    assert_eq!(
        found(&r),
        [(None, "root_mismatch"), (Some(9), "forged_grant"), (Some(11), "access_under_invalid_grant")]
    );

    // A corrupted entry that no longer decodes.
    let mut garbled = honest.clone();
    garbled[5][0] = b'X';
    let r = audit_against(&garbled, &honest);
    assert_eq!(
        found(&r),
        [(None, "root_mismatch"), (Some(5), "undecodable_entry"), (Some(11), "access_to_unknown_record")]
    );
    assert_eq!(r.undecodable(), 1);

    // Two entries swapped: every entry is genuine, the order is not.
    let mut swapped = honest.clone();
    swapped.swap(16, 17);
    assert_eq!(found(&audit_against(&swapped, &honest)), [(None, "root_mismatch")]);
}

#[test]
fn truncated_log() {
    let w = world();
    let honest = encode(&clean_log(&w));
    let r = audit_against(&honest[..15], &honest);
    assert_eq!(found(&r), [(Some(15), "size_mismatch")]);
    assert!(r.has_fatal());
    assert!(matches!(r.anomalies()[0].kind(), AnomalyKind::SizeMismatch { entries: 15, checkpoint: 18 }));
    assert!(r.anomalies()[0].description().contains("truncated from entry 15"));
    // Dropping a middle entry also leaves fewer entries than the checkpoint.
    let mut holed = honest.clone();
    holed.remove(14); // the revocation
    let r = audit_against(&holed, &honest);
    assert_eq!(found(&r), [(Some(17), "size_mismatch")]);
    // Nothing at all.
    assert_eq!(found(&audit_against(&[], &honest)), [(Some(0), "size_mismatch")]);
}

#[test]
fn entries_beyond_the_checkpoint() {
    let w = world();
    let honest = encode(&clean_log(&w));
    let mut longer = honest.clone();
    longer.push(served(1_600, &w.g2, &w.cond, &w.other_doctor).to_bytes().unwrap());
    // The prefix is the checkpoint's log; the extra entry is not covered.
    let r = audit_against(&longer, &honest);
    assert_eq!(found(&r), [(Some(18), "size_mismatch")]);
    assert_eq!(r.computed_root(), r.checkpoint().root_hash);
    // A rewritten prefix is still caught.
    longer[3] = register(13, &w.other_doctor, Role::Doctor, 0xCD).to_bytes().unwrap();
    assert_eq!(
        found(&audit_against(&longer, &honest)),
        [(Some(18), "size_mismatch"), (None, "root_mismatch")]
    );
}

#[test]
fn unknown_event_types_are_reported_and_the_rest_is_still_audited() {
    let w = world();
    let mut entries = encode(&clean_log(&w));
    // An event type this version does not know (e.g. one added later).
    let mut unknown = entries[16].clone();
    unknown[5] = 200;
    entries.insert(16, unknown);
    entries.push(served(1_600, &w.g1, &w.lab, &w.doctor).to_bytes().unwrap());
    let r = audit_against(&entries, &entries);
    assert_eq!(found(&r), [(Some(16), "undecodable_entry"), (Some(19), "access_after_revocation")]);
    assert!(matches!(
        r.anomalies()[0].kind(),
        AnomalyKind::UndecodableEntry { error: PolicyError::Malformed("log event: unknown event type") }
    ));
    assert!(!r.has_fatal());
    assert_eq!(r.undecodable(), 1);
    assert_eq!(r.counts().values().sum::<u64>(), 19);
}

#[test]
fn a_checkpoint_that_does_not_verify_is_an_error() {
    let w = world();
    let entries = encode(&clean_log(&w));
    let note = checkpoint(&entries);
    let verifier = log_signer().verifier();
    // Another log key under the same name.
    let other = LogSigner::new(ORIGIN, &key(10)).unwrap().verifier();
    assert_eq!(audit_log(opened(&entries), &note, &other, NOW).unwrap_err(), PolicyError::VerificationFailed);
    // The size line edited after signing.
    let edited = note.replacen("\n18\n", "\n15\n", 1);
    assert_eq!(
        audit_log(opened(&entries[..15]), &edited, &verifier, NOW).unwrap_err(),
        PolicyError::VerificationFailed
    );
    // Another origin.
    let foreign = LogVerifier::new("other.example/log", &key(9).verifying_key()).unwrap();
    assert!(LogAudit::new(&note, &foreign, NOW).is_err());
    // Not a note at all.
    assert!(matches!(LogAudit::new("garbage", &verifier, NOW), Err(PolicyError::InvalidCheckpoint(_))));
    // The genuine one still audits clean.
    assert!(audit_log(opened(&entries).iter(), &note, &verifier, NOW).unwrap().is_clean());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any change to any byte of any entry is caught (never a clean report),
    /// and arbitrary bytes never panic the audit.
    #[test]
    fn any_altered_byte_is_caught(entry in 0usize..18, pos in 0usize..4096, xor in 1u8..=255) {
        let w = world();
        let honest = encode(&clean_log(&w));
        let mut altered = honest.clone();
        let pos = pos % altered[entry].len();
        altered[entry][pos] ^= xor;
        let r = audit_against(&altered, &honest);
        proptest::prop_assert!(r.has_fatal());
        proptest::prop_assert_eq!(r.anomalies()[0].kind().code(), "root_mismatch");
    }

    #[test]
    fn arbitrary_entries_never_panic(entries in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..8)) {
        let r = audit_against(&entries, &entries);
        proptest::prop_assert!(!r.has_fatal());
        proptest::prop_assert_eq!(r.entries(), entries.len() as u64);
        proptest::prop_assert_eq!(r.undecodable() + r.counts().values().sum::<u64>(), entries.len() as u64);
    }
}
