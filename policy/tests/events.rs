//! Log event encodings: round trips, bad input, and the log as a whole.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use medrelay_crypto::{
    DecodeError, GrantId, KeyClass, RecordCategory, RecordHeader, RecordId, SensitivityLabel, SigningKey,
    Timestamp,
};
use medrelay_policy::{
    verify_inclusion, Audience, Denial, EventSalt, Grant, LeafOpening, LogEvent, MemoryNodeStore, MerkleTree,
    Operation, PolicyError, PrePublicKey, Purpose, RefusalReason, RefusedObject, Revocation, Role,
    SignedGrant, MAX_EVENT_LEN,
};
use rand_chacha::rand_core::SeedableRng;

fn events() -> Vec<LogEvent> {
    let patient = SigningKey::from_seed(&[1; 32]);
    let doctor = SigningKey::from_seed(&[2; 32]);
    let operator = SigningKey::from_seed(&[3; 32]);
    let grant = Grant::new(
        GrantId::from_bytes([4; 16]),
        patient.principal_id(),
        doctor.principal_id(),
        "Observation?category=laboratory,sensitive:genetics".parse().unwrap(),
        Purpose::Treatment,
        Timestamp(10),
        Timestamp(20),
        Timestamp(5),
    )
    .unwrap();
    let cat =
        RecordCategory::new("Observation", ["laboratory".to_string()], [SensitivityLabel::Genetics]).unwrap();
    let header = RecordHeader::new(
        RecordId::from_bytes([5; 16]),
        patient.principal_id(),
        cat,
        "application/fhir+json",
        Timestamp(6),
    )
    .unwrap();
    vec![
        LogEvent::PrincipalRegistered {
            at: Timestamp(1),
            principal: patient.principal_id(),
            role: Role::Patient,
            signing_key: patient.verifying_key(),
            pre_key: Some(*PrePublicKey::from_bytes(vec![8; 40]).unwrap().fingerprint().as_bytes()),
        },
        LogEvent::PrincipalRegistered {
            at: Timestamp(1),
            principal: operator.principal_id(),
            role: Role::Operator,
            signing_key: operator.verifying_key(),
            pre_key: None,
        },
        LogEvent::DoctorEnrolled {
            at: Timestamp(2),
            doctor: doctor.principal_id(),
            operator: operator.principal_id(),
        },
        LogEvent::RecordPublished { at: Timestamp(7), header, size: 1234, ciphertext_sha256: [9; 32] },
        LogEvent::GrantCreated { at: Timestamp(8), grant: grant.sign(&patient).unwrap() },
        LogEvent::GrantRevoked {
            at: Timestamp(15),
            revocation: Revocation::new(grant.grant_id(), patient.principal_id(), Timestamp(15))
                .sign(&patient)
                .unwrap(),
        },
        LogEvent::ReencryptionServed {
            at: Timestamp(12),
            grant: grant.grant_id(),
            record: RecordId::from_bytes([5; 16]),
            doctor: doctor.principal_id(),
            patient: patient.principal_id(),
            key_class: KeyClass::Genetics,
        },
        LogEvent::AccessDenied {
            at: Timestamp(16),
            doctor: doctor.principal_id(),
            record: RecordId::from_bytes([5; 16]),
            patient: Some(patient.principal_id()),
            reason: Denial::Revoked,
            count: 1,
        },
        LogEvent::AccessDenied {
            at: Timestamp(16),
            doctor: doctor.principal_id(),
            record: RecordId::from_bytes([6; 16]),
            patient: None,
            reason: Denial::NoGrant,
            count: 63,
        },
        LogEvent::DpQueryAnswered {
            at: Timestamp(17),
            analyst: doctor.principal_id(),
            schema: "vitals-v1".into(),
            epsilon: 0.5,
            rho: 0.0,
        },
        LogEvent::SummarySubmitted {
            at: Timestamp(18),
            patient: patient.principal_id(),
            schema: "vitals-v1".into(),
        },
        LogEvent::RequestRefused {
            at: Timestamp(19),
            principal: patient.principal_id(),
            what: RefusedObject::Grant(GrantId::from_bytes([4; 16])),
            reason: RefusalReason::BadSignature,
            count: 1,
        },
        LogEvent::RequestRefused {
            at: Timestamp(19),
            principal: patient.principal_id(),
            what: RefusedObject::ReencryptionKeys(GrantId::from_bytes([4; 16])),
            reason: RefusalReason::BadSignature,
            count: 1,
        },
        LogEvent::RequestRefused {
            at: Timestamp(20),
            principal: doctor.principal_id(),
            what: RefusedObject::Revocation(GrantId::from_bytes([4; 16])),
            reason: RefusalReason::NotOwner,
            count: 1,
        },
        LogEvent::RequestRefused {
            at: Timestamp(21),
            principal: patient.principal_id(),
            what: RefusedObject::Record(RecordId::from_bytes([5; 16])),
            reason: RefusalReason::BadSignature,
            count: 1,
        },
        LogEvent::RequestRefused {
            at: Timestamp(22),
            principal: doctor.principal_id(),
            what: RefusedObject::RecordList(patient.principal_id()),
            reason: RefusalReason::Denied(Denial::Expired),
            count: 7,
        },
        LogEvent::RequestRefused {
            at: Timestamp(22),
            principal: doctor.principal_id(),
            what: RefusedObject::Operation(Operation::new("POST /v1/grants").unwrap()),
            reason: RefusalReason::WrongRole,
            count: 1,
        },
        LogEvent::RequestRefused {
            at: Timestamp(23),
            principal: patient.principal_id(),
            what: RefusedObject::Principal(operator.principal_id()),
            reason: RefusalReason::NotEntitled,
            count: 2,
        },
        LogEvent::SummaryWithdrawn {
            at: Timestamp(19),
            patient: patient.principal_id(),
            schema: "vitals-v1".into(),
        },
        LogEvent::SchemaAdded { at: Timestamp(3), schema: "health-basics".into(), schema_sha256: [7; 32] },
        LogEvent::BudgetSet {
            at: Timestamp(4),
            analyst: doctor.principal_id(),
            schema: "health-basics".into(),
            epsilon: 2.5,
            delta: 1e-6,
        },
        LogEvent::PrincipalSuspended { at: Timestamp(22), principal: doctor.principal_id() },
        LogEvent::SuspendedPrincipalRefused { at: Timestamp(23), principal: doctor.principal_id() },
        LogEvent::PrincipalReinstated { at: Timestamp(24), principal: doctor.principal_id() },
    ]
}

#[test]
fn every_event_round_trips_and_rejects_truncation_and_trailing_bytes() {
    for ev in events() {
        let bytes = ev.to_bytes().unwrap();
        assert_eq!(LogEvent::from_bytes(&bytes).unwrap(), ev, "{}", ev.kind());
        for n in 0..bytes.len() {
            assert!(LogEvent::from_bytes(&bytes[..n]).is_err(), "{} prefix {n}", ev.kind());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(LogEvent::from_bytes(&long), Err(PolicyError::Decode(DecodeError::TrailingBytes)));
        // Version 1 (before refusal counts) and unknown versions are refused.
        for version in [1, 3] {
            let mut other = bytes.clone();
            other[4] = version;
            assert_eq!(
                LogEvent::from_bytes(&other),
                Err(PolicyError::Decode(DecodeError::UnsupportedVersion { found: version }))
            );
        }
    }
}

#[test]
fn bad_events_are_typed_errors() {
    let evs = events();
    let mut unknown = evs[0].to_bytes().unwrap();
    unknown[5] = 99;
    assert_eq!(LogEvent::from_bytes(&unknown), Err(PolicyError::Malformed("log event: unknown event type")));
    assert!(matches!(
        LogEvent::from_bytes(&vec![0; MAX_EVENT_LEN + 1]),
        Err(PolicyError::Decode(DecodeError::TooLarge { .. }))
    ));
    // A principal id that is not derived from the key.
    let mut wrong_id = evs[0].to_bytes().unwrap();
    wrong_id[14] ^= 1;
    assert!(matches!(LogEvent::from_bytes(&wrong_id), Err(PolicyError::Malformed(_))));
    // NaN, negative and infinite privacy costs, bad schema names.
    let analyst = SigningKey::from_seed(&[2; 32]).principal_id();
    for (eps, schema) in
        [(f64::NAN, "s"), (-1.0, "s"), (f64::INFINITY, "s"), (-0.0, "s"), (1.0, ""), (1.0, "a b")]
    {
        let ev = LogEvent::DpQueryAnswered {
            at: Timestamp(1),
            analyst,
            schema: schema.into(),
            epsilon: eps,
            rho: 0.0,
        };
        assert!(matches!(ev.to_bytes(), Err(PolicyError::Malformed(_))), "{eps} {schema:?}");
    }
    // Budgets must be positive and finite; withdrawals and schema events
    // need valid schema names.
    for (eps, delta) in [(0.0, 1e-6), (1.0, 0.0), (f64::NAN, 1e-6), (1.0, f64::INFINITY), (-1.0, 1e-6)] {
        let ev = LogEvent::BudgetSet { at: Timestamp(1), analyst, schema: "s".into(), epsilon: eps, delta };
        assert_eq!(ev.to_bytes(), Err(PolicyError::Malformed("log event: budget")), "{eps} {delta}");
    }
    let bad = [
        LogEvent::SummaryWithdrawn { at: Timestamp(1), patient: analyst, schema: "a b".into() },
        LogEvent::SchemaAdded { at: Timestamp(1), schema: String::new(), schema_sha256: [0; 32] },
    ];
    for ev in bad {
        assert_eq!(ev.to_bytes(), Err(PolicyError::Malformed("log event: schema name")), "{}", ev.kind());
    }
    // A valid budget event with a corrupted ε (NaN bits) is refused on decode.
    let ok = LogEvent::BudgetSet { at: Timestamp(1), analyst, schema: "s".into(), epsilon: 1.0, delta: 1e-6 };
    let mut bytes = ok.to_bytes().unwrap();
    let eps_at = bytes.len() - 16;
    bytes[eps_at..eps_at + 8].copy_from_slice(&f64::NAN.to_bits().to_be_bytes());
    assert_eq!(LogEvent::from_bytes(&bytes), Err(PolicyError::Malformed("log event: budget")));
}

#[test]
fn an_auditor_can_reverify_grants_from_the_log() {
    let patient = SigningKey::from_seed(&[1; 32]);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
    let mut tree = MerkleTree::new(MemoryNodeStore::new());
    let evs = events();
    let openings: Vec<LeafOpening> = evs.iter().map(|e| LeafOpening::seal(e, &mut rng).unwrap()).collect();
    for o in &openings {
        tree.append(&o.leaf_data()).unwrap();
    }
    let root = tree.root().unwrap();
    for (i, o) in openings.iter().enumerate() {
        let proof = tree.inclusion_proof(i as u64, evs.len() as u64).unwrap();
        verify_inclusion(&o.leaf_hash(), &proof, &root).unwrap();
        // The bare event bytes, or the event under another salt, are not the leaf.
        let unsalted = medrelay_policy::hash_leaf(o.event_bytes());
        assert!(verify_inclusion(&unsalted, &proof, &root).is_err());
        let resalted = LeafOpening::from_parts(EventSalt::from_bytes([0; 32]), o.event_bytes().to_vec());
        assert!(verify_inclusion(&resalted.unwrap().leaf_hash(), &proof, &root).is_err());
    }
    let leaf = tree.leaf_hash(4).unwrap();
    let LogEvent::GrantCreated { grant, .. } = openings[4].event().unwrap() else {
        panic!("not a grant event");
    };
    assert_eq!(leaf, openings[4].leaf_hash());
    let grant: SignedGrant = grant;
    let verified = grant.verify(&patient.verifying_key()).unwrap();
    assert_eq!(verified.scope().to_string(), "Observation?category=laboratory,sensitive:genetics");
}

#[test]
fn events_have_a_json_view_without_content() {
    let evs = events();
    let json = serde_json::to_value(&evs[3]).unwrap();
    assert_eq!(json["type"], "record_published");
    assert_eq!(json["header"]["category"], "Observation?category=laboratory#genetics");
    assert_eq!(json["header"]["key_class"], "genetics");
    assert_eq!(json["size"], 1234);
    let denied = serde_json::to_value(&evs[7]).unwrap();
    assert_eq!(denied["type"], "access_denied");
    assert_eq!(denied["reason"], "revoked");
    let grant = serde_json::to_value(&evs[4]).unwrap();
    assert!(grant["grant"]["body"].is_string() && grant["grant"]["signature"].is_string());
    for ev in &evs {
        assert_eq!(serde_json::to_value(ev).unwrap()["type"], ev.kind());
    }
    let refused = evs.iter().find(|e| e.kind() == "request_refused").unwrap();
    let json = serde_json::to_value(refused).unwrap();
    assert_eq!(json["what"], "grant");
    assert_eq!(json["object"], "04".repeat(16));
    assert_eq!(json["reason"], "bad_signature");
    assert_eq!(json["principal"], SigningKey::from_seed(&[1; 32]).principal_id().to_string());
    assert_eq!(json["count"], 1);
    assert_eq!(json.as_object().unwrap().len(), 7, "{json}");
    let coalesced = serde_json::to_value(&evs[8]).unwrap();
    assert_eq!((coalesced["reason"].as_str(), coalesced["count"].as_u64()), (Some("no_grant"), Some(63)));
    let op = evs.iter().find_map(|e| match e {
        LogEvent::RequestRefused { what: RefusedObject::Operation(_), .. } => Some(serde_json::to_value(e)),
        _ => None,
    });
    let op = op.unwrap().unwrap();
    assert_eq!((op["what"].as_str(), op["object"].as_str()), (Some("operation"), Some("POST /v1/grants")));
}

#[test]
fn refusal_events_reject_unknown_kinds_and_reasons() {
    let ev = LogEvent::RequestRefused {
        at: Timestamp(1),
        principal: SigningKey::from_seed(&[1; 32]).principal_id(),
        what: RefusedObject::Record(RecordId::from_bytes([5; 16])),
        reason: RefusalReason::NotOwner,
        count: 1,
    };
    let good = ev.to_bytes().unwrap();
    // Layout: magic(4) version(1) tag(1) at(8) principal(32) kind(1) id(16) reason(1) count(4).
    assert_eq!(good.len(), 4 + 1 + 1 + 8 + 32 + 1 + 16 + 1 + 4);
    assert_eq!(good[5], 9);
    let kind_at = 4 + 1 + 1 + 8 + 32;
    let reason_at = kind_at + 17;
    let mut bad_kind = good.clone();
    bad_kind[kind_at] = 11;
    assert_eq!(LogEvent::from_bytes(&bad_kind), Err(PolicyError::Malformed("refused object kind")));
    for code in [4, 0x89] {
        let mut bad_reason = good.clone();
        bad_reason[reason_at] = code;
        assert!(LogEvent::from_bytes(&bad_reason).is_err(), "{code:#x}");
    }
    // A count of 0 is neither written nor read.
    let mut zero = good.clone();
    zero[reason_at + 1..].copy_from_slice(&[0; 4]);
    assert_eq!(LogEvent::from_bytes(&zero), Err(PolicyError::Malformed("log event: refusal count 0")));
    let LogEvent::RequestRefused { at, principal, what, reason, .. } = ev.clone() else { unreachable!() };
    let zero = LogEvent::RequestRefused { at, principal, what, reason, count: 0 };
    assert_eq!(zero.to_bytes(), Err(PolicyError::Malformed("log event: refusal count 0")));
    // A record kind (16-byte id) re-labelled as a principal kind (32-byte id)
    // no longer fits the bytes.
    let mut relabelled = good.clone();
    relabelled[kind_at] = 8;
    assert!(LogEvent::from_bytes(&relabelled).is_err());
    // Every kind and reason decodes to itself.
    let mut other_kind = good.clone();
    other_kind[kind_at] = 0;
    assert!(matches!(
        LogEvent::from_bytes(&other_kind).unwrap(),
        LogEvent::RequestRefused { what: RefusedObject::Grant(g), .. } if g == GrantId::from_bytes([5; 16])
    ));
}

#[test]
fn each_event_goes_to_the_people_it_is_about() {
    let patient = SigningKey::from_seed(&[1; 32]).principal_id();
    let doctor = SigningKey::from_seed(&[2; 32]).principal_id();
    let operator = SigningKey::from_seed(&[3; 32]).principal_id();
    let stranger = SigningKey::from_seed(&[4; 32]).principal_id();
    let sorted = |mut v: Vec<_>| {
        v.sort();
        Audience::Principals(v)
    };
    let want: Vec<(&str, Audience)> = vec![
        ("principal_registered", sorted(vec![patient])),
        ("principal_registered", sorted(vec![operator])),
        ("doctor_enrolled", sorted(vec![doctor])),
        ("record_published", sorted(vec![patient])),
        ("grant_created", sorted(vec![patient, doctor])),
        ("grant_revoked", sorted(vec![patient])),
        ("reencryption_served", sorted(vec![patient, doctor])),
        ("access_denied", sorted(vec![patient, doctor])),
        // A denial on an unknown record: the doctor only.
        ("access_denied", sorted(vec![doctor])),
        ("dp_query_answered", sorted(vec![doctor])),
        ("summary_submitted", sorted(vec![patient])),
        ("request_refused", sorted(vec![patient])),
        ("request_refused", sorted(vec![patient])),
        ("request_refused", sorted(vec![doctor])),
        ("request_refused", sorted(vec![patient])),
        // The doctor's grant from the patient expired: the patient sees the
        // refused listing too.
        ("request_refused", sorted(vec![patient, doctor])),
        ("request_refused", sorted(vec![doctor])),
        // A patient refused another principal's directory entry: the
        // principal looked up is not told.
        ("request_refused", sorted(vec![patient])),
        ("summary_withdrawn", sorted(vec![patient])),
        ("schema_added", Audience::AllPrincipals),
        ("budget_set", sorted(vec![doctor])),
        // Suspension: the suspended principal, and auditors.
        ("principal_suspended", sorted(vec![doctor])),
        ("suspended_principal_refused", sorted(vec![doctor])),
        ("principal_reinstated", sorted(vec![doctor])),
    ];
    let evs = events();
    assert_eq!(evs.len(), want.len());
    for (ev, (kind, audience)) in evs.iter().zip(want) {
        assert_eq!(ev.kind(), kind);
        let got = ev.audience().unwrap();
        assert_eq!(got, audience, "{kind}");
        assert_eq!(got.includes(&stranger), got == Audience::AllPrincipals, "{kind}");
    }
    assert!(Audience::AllPrincipals.includes(&stranger));
    assert!(Audience::AllPrincipals.principals().is_empty());
    // A doctor refused a listing without any grant: the patient is not told.
    for (reason, told) in [
        (Denial::NoGrant, false),
        (Denial::Expired, true),
        (Denial::Revoked, true),
        (Denial::NotYetValid, true),
    ] {
        let ev = LogEvent::RequestRefused {
            at: Timestamp(1),
            principal: doctor,
            what: RefusedObject::RecordList(patient),
            reason: RefusalReason::Denied(reason),
            count: 1,
        };
        assert_eq!(ev.audience().unwrap().includes(&patient), told, "{reason:?}");
    }
}
