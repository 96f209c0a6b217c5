//! The authorization truth table, end to end from signed grants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use medrelay_crypto::{
    GrantId, KeyClass, PrincipalId, RecordCategory, RecordHeader, RecordId, SensitivityLabel, SigningKey,
    Timestamp,
};
use medrelay_policy::{
    authorize, grant_in_force, Denial, Grant, Purpose, Revocation, Scope, SignedGrant, VerifiedGrant,
    VerifiedRevocation,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

struct World {
    patient: SigningKey,
    other_patient: SigningKey,
    doctor: SigningKey,
    other_doctor: SigningKey,
    grant: VerifiedGrant,
    revocation: VerifiedRevocation,
}

const NOT_BEFORE: u64 = 1_000;
const NOT_AFTER: u64 = 2_000;

fn world(scope: &str) -> World {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let patient = SigningKey::generate(&mut rng);
    let other_patient = SigningKey::generate(&mut rng);
    let doctor = SigningKey::generate(&mut rng);
    let other_doctor = SigningKey::generate(&mut rng);
    let grant = Grant::new(
        GrantId::random(&mut rng),
        patient.principal_id(),
        doctor.principal_id(),
        scope.parse().unwrap(),
        Purpose::Treatment,
        Timestamp(NOT_BEFORE),
        Timestamp(NOT_AFTER),
        Timestamp(900),
    )
    .unwrap();
    // Through the wire form, as the server receives it.
    let wire = grant.sign(&patient).unwrap().to_bytes();
    let grant = SignedGrant::from_bytes(&wire).unwrap().verify(&patient.verifying_key()).unwrap();
    let revocation = Revocation::new(grant.grant_id(), patient.principal_id(), Timestamp(1_500))
        .sign(&patient)
        .unwrap()
        .verify(&patient.verifying_key())
        .unwrap();
    World { patient, other_patient, doctor, other_doctor, grant, revocation }
}

fn header(owner: &SigningKey, rt: &str, codes: &[&str], labels: &[SensitivityLabel]) -> RecordHeader {
    let cat = RecordCategory::new(rt, codes.iter().map(|s| s.to_string()), labels.iter().copied()).unwrap();
    RecordHeader::new(
        RecordId::from_bytes([7; 16]),
        owner.principal_id(),
        cat,
        "application/fhir+json",
        Timestamp(10),
    )
    .unwrap()
}

/// (description, doctor, record header, revoked, now, expected key class or denial)
type Case = (&'static str, PrincipalId, RecordHeader, bool, Timestamp, Result<KeyClass, Denial>);

#[test]
fn truth_table() {
    use SensitivityLabel::*;
    let w = world("Condition,Observation?category=laboratory,sensitive:genetics");
    let lab = header(&w.patient, "Observation", &["laboratory"], &[]);
    let d = w.doctor.principal_id();
    let mid = Timestamp(1_500);

    // (description, doctor, header, revoked, now, expected)
    let cases: Vec<Case> = vec![
        ("allowed", d, lab.clone(), false, mid, Ok(KeyClass::Laboratory)),
        ("at not_before (inclusive)", d, lab.clone(), false, Timestamp(NOT_BEFORE), Ok(KeyClass::Laboratory)),
        ("last second", d, lab.clone(), false, Timestamp(NOT_AFTER - 1), Ok(KeyClass::Laboratory)),
        ("wrong doctor", w.other_doctor.principal_id(), lab.clone(), false, mid, Err(Denial::WrongDoctor)),
        (
            "patient is not the doctor",
            w.patient.principal_id(),
            lab.clone(),
            false,
            mid,
            Err(Denial::WrongDoctor),
        ),
        (
            "another patient's record",
            d,
            header(&w.other_patient, "Observation", &["laboratory"], &[]),
            false,
            mid,
            Err(Denial::WrongPatient),
        ),
        ("before window", d, lab.clone(), false, Timestamp(NOT_BEFORE - 1), Err(Denial::NotYetValid)),
        ("at not_after (exclusive)", d, lab.clone(), false, Timestamp(NOT_AFTER), Err(Denial::Expired)),
        ("after window", d, lab.clone(), false, Timestamp(u64::MAX), Err(Denial::Expired)),
        ("revoked", d, lab.clone(), true, mid, Err(Denial::Revoked)),
        ("revoked and expired", d, lab.clone(), true, Timestamp(NOT_AFTER), Err(Denial::Revoked)),
        ("type in scope", d, header(&w.patient, "Condition", &[], &[]), false, mid, Ok(KeyClass::General)),
        (
            "type out of scope",
            d,
            header(&w.patient, "MedicationRequest", &[], &[]),
            false,
            mid,
            Err(Denial::OutOfScope),
        ),
        (
            "category out of scope",
            d,
            header(&w.patient, "Observation", &["vital-signs"], &[]),
            false,
            mid,
            Err(Denial::OutOfScope),
        ),
        ("no category", d, header(&w.patient, "Observation", &[], &[]), false, mid, Err(Denial::OutOfScope)),
        (
            "one of several codes matches",
            d,
            header(&w.patient, "Observation", &["laboratory", "vital-signs"], &[]),
            false,
            mid,
            Ok(KeyClass::Laboratory),
        ),
        (
            "sensitive label included",
            d,
            header(&w.patient, "Condition", &[], &[Genetics]),
            false,
            mid,
            Ok(KeyClass::Genetics),
        ),
        (
            "sensitive label not included",
            d,
            header(&w.patient, "Condition", &[], &[MentalHealth]),
            false,
            mid,
            Err(Denial::SensitiveExcluded),
        ),
        (
            "one of two labels not included",
            d,
            header(&w.patient, "Condition", &[], &[Genetics, SubstanceUse]),
            false,
            mid,
            Err(Denial::SensitiveExcluded),
        ),
        (
            "sensitive and out of scope",
            d,
            header(&w.patient, "MedicationRequest", &[], &[Genetics]),
            false,
            mid,
            Err(Denial::OutOfScope),
        ),
    ];
    for (what, doctor, h, revoked, now, want) in cases {
        let rev = revoked.then_some(&w.revocation);
        let got = authorize(&w.grant, &doctor, &h, rev, now);
        match (got, want) {
            (Ok(cap), Ok(class)) => {
                assert_eq!(cap.key_class(), class, "{what}");
                assert_eq!(cap.grant_id(), w.grant.grant_id(), "{what}");
                assert_eq!(cap.record_id(), h.record_id(), "{what}");
                assert_eq!(cap.doctor(), doctor, "{what}");
                assert_eq!(cap.patient(), w.patient.principal_id(), "{what}");
                assert!(w.grant.scope().key_classes().contains(&class), "{what}");
            }
            (Err(got), Err(want)) => assert_eq!(got, want, "{what}"),
            (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
        }
        // Whether the grant is in force agrees with the decision on every
        // case whose outcome is decided by revocation or window alone.
        let in_force = grant_in_force(&w.grant, rev, now);
        match &want {
            Err(d @ (Denial::Revoked | Denial::NotYetValid | Denial::Expired)) => {
                assert_eq!(in_force, Err(*d), "{what}");
            }
            _ => assert_eq!(in_force, Ok(()), "{what}"),
        }
    }
}

#[test]
fn without_explicit_inclusion_sensitive_records_are_excluded() {
    let w = world("Condition");
    let h = header(&w.patient, "Condition", &[], &[SensitivityLabel::MentalHealth]);
    let got = authorize(&w.grant, &w.doctor.principal_id(), &h, None, Timestamp(1_500));
    assert_eq!(got.unwrap_err(), Denial::SensitiveExcluded);
    // Explicit exclusion is the same as the default.
    let w = world("Condition,-sensitive:mental-health");
    let got = authorize(&w.grant, &w.doctor.principal_id(), &h, None, Timestamp(1_500));
    assert_eq!(got.unwrap_err(), Denial::SensitiveExcluded);
    let w = world("Condition,sensitive:mental-health");
    let got = authorize(&w.grant, &w.doctor.principal_id(), &h, None, Timestamp(1_500));
    assert_eq!(got.unwrap().key_class(), KeyClass::MentalHealth);
}

#[test]
fn a_scope_reaches_only_the_key_classes_its_codes_name() {
    // Coded both vital-signs and laboratory: a laboratory record.
    let d_at = Timestamp(1_500);
    let w = world("Observation?category=vital-signs");
    let both = header(&w.patient, "Observation", &["laboratory", "vital-signs"], &[]);
    assert_eq!(both.key_class(), KeyClass::Laboratory);
    assert_eq!(w.grant.scope().key_classes().into_iter().collect::<Vec<_>>(), [KeyClass::General]);
    let got = authorize(&w.grant, &w.doctor.principal_id(), &both, None, d_at);
    let denial = got.unwrap_err();
    assert_eq!(denial, Denial::ClassNotGranted);
    assert_eq!(denial.code(), "class_not_granted");
    assert_eq!(denial.to_string(), "the record is in a key class the grant does not cover");
    let vitals = header(&w.patient, "Observation", &["vital-signs"], &[]);
    let got = authorize(&w.grant, &w.doctor.principal_id(), &vitals, None, d_at);
    assert_eq!(got.unwrap().key_class(), KeyClass::General);
    // A laboratory grant serves it, under the laboratory key.
    let w = world("Observation?category=laboratory");
    let both = header(&w.patient, "Observation", &["laboratory", "vital-signs"], &[]);
    let got = authorize(&w.grant, &w.doctor.principal_id(), &both, None, d_at);
    assert_eq!(got.unwrap().key_class(), KeyClass::Laboratory);
    // A whole-type grant serves both, as before.
    let w = world("Observation");
    assert_eq!(
        w.grant.scope().key_classes().into_iter().collect::<Vec<_>>(),
        [KeyClass::General, KeyClass::Laboratory, KeyClass::Imaging]
    );
    for codes in [&["laboratory", "vital-signs"][..], &["vital-signs"]] {
        let h = header(&w.patient, "Observation", codes, &[]);
        assert!(authorize(&w.grant, &w.doctor.principal_id(), &h, None, d_at).is_ok(), "{codes:?}");
    }
}

#[test]
fn an_empty_scope_cannot_be_granted() {
    // Fail closed: there is no empty scope to sign.
    assert!(Scope::parse("").is_err());
    assert!(Scope::parse("sensitive:genetics").is_err());
    assert!(Scope::parse("-sensitive:genetics").is_err());
}

#[test]
fn unverified_grants_cannot_be_used() {
    // A grant signed by the doctor for themself, claiming to be the patient's,
    // does not verify with the patient's key.
    let w = world("Condition");
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let forged = Grant::new(
        GrantId::random(&mut rng),
        w.patient.principal_id(),
        w.doctor.principal_id(),
        "Condition".parse().unwrap(),
        Purpose::Emergency,
        Timestamp(0),
        Timestamp(u64::MAX),
        Timestamp(0),
    )
    .unwrap();
    assert!(forged.sign(&w.doctor).is_err());
    let body = forged.to_bytes();
    let sig = w.doctor.sign(medrelay_crypto::domain::SIG_GRANT, &body);
    let signed = SignedGrant::from_parts(body, sig).unwrap();
    assert!(signed.clone().verify(&w.patient.verifying_key()).is_err());
    assert!(signed.verify(&w.doctor.verifying_key()).is_err());
}
