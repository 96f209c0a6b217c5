//! Every hybrid-PRE decoder rejects truncated, oversized, trailing-garbage,
//! wrong-magic and wrong-version input with a typed error, and round-trips
//! its own encoding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{doctor, prefixes, rng, Patient};
use medrelay_crypto::{
    reencrypt_capsule, BatchKey, Capsule, DecodeError, KeyClass, PatientPublicKeys, PrePublicKey,
    RecordEnvelope, ReencryptedCapsule, ReencryptionKey, SignedCapsule, SignedRecordHeader, Threshold,
    BATCH_KEY_LEN, MAX_CAPSULE_LEN, MAX_ENVELOPE_LEN, MAX_PATIENT_PUBLIC_KEYS_LEN, MAX_PRE_PUBLIC_KEY_LEN,
    MAX_REENCRYPTED_CAPSULE_LEN, MAX_REKEY_LEN, MAX_SIGNED_CAPSULE_LEN, MAX_SIGNED_HEADER_LEN,
};

/// Runs the common rejection checks on one decoder.
fn check_decoder<T>(
    name: &str,
    bytes: &[u8],
    limit: usize,
    decode: impl Fn(&[u8]) -> Result<T, DecodeError>,
) {
    decode(bytes).unwrap_or_else(|e| panic!("{name}: own encoding refused: {e}"));
    for n in prefixes(bytes.len()) {
        assert!(decode(&bytes[..n]).is_err(), "{name}: prefix of {n} bytes accepted");
    }
    let mut long = bytes.to_vec();
    long.extend_from_slice(b"garbage");
    assert!(
        matches!(decode(&long), Err(DecodeError::TrailingBytes) | Err(DecodeError::TooLarge { .. })),
        "{name}: trailing bytes"
    );
    let huge = vec![0u8; limit + 1];
    assert!(matches!(decode(&huge), Err(DecodeError::TooLarge { .. })), "{name}: oversize");
    let mut v = bytes.to_vec();
    v[4] = 99;
    assert!(matches!(decode(&v), Err(DecodeError::UnsupportedVersion { found: 99 })), "{name}: version");
    let mut m = bytes.to_vec();
    m[0] ^= 0x20;
    assert!(matches!(decode(&m), Err(DecodeError::WrongMagic)), "{name}: magic");
    // Corrupt inner length prefixes and counts: errors, never panics.
    for i in 5..bytes.len().min(64) {
        let mut c = bytes.to_vec();
        c[i] = 0xff;
        let _ = decode(&c);
    }
}

#[test]
fn public_key_decoders() {
    let mut rng = rng(30);
    let p = Patient::new(&mut rng);
    let d = doctor(&mut rng);
    let pk = d.public_key().to_bytes();
    check_decoder("PrePublicKey", &pk, MAX_PRE_PUBLIC_KEY_LEN, PrePublicKey::from_bytes);
    assert_eq!(PrePublicKey::from_bytes(&pk).unwrap().fingerprint(), d.public_key().fingerprint());
    // An invalid Umbral point is refused.
    let mut bad = pk.clone();
    bad[5] = 0x07;
    assert!(matches!(PrePublicKey::from_bytes(&bad), Err(DecodeError::Invalid(_))));

    let all = p.public.to_bytes();
    check_decoder("PatientPublicKeys", &all, MAX_PATIENT_PUBLIC_KEYS_LEN, PatientPublicKeys::from_bytes);
    assert_eq!(PatientPublicKeys::from_bytes(&all).unwrap().to_bytes(), all);
}

#[test]
fn capsule_and_envelope_decoders() {
    let mut rng = rng(31);
    let p = Patient::new(&mut rng);
    let (batch, env) = p.seal(&mut rng, KeyClass::Genetics, b"variant report");
    let cap = batch.capsule().capsule_bytes().to_vec();
    check_decoder("Capsule", &cap, MAX_CAPSULE_LEN, Capsule::from_bytes);
    assert_eq!(Capsule::from_bytes(&cap).unwrap().to_bytes(), cap);
    assert_eq!(Capsule::from_bytes(&cap).unwrap().key_class(), KeyClass::Genetics);
    assert_eq!(Capsule::from_bytes(&cap).unwrap().owner(), p.signing.principal_id());

    let signed = batch.capsule().to_bytes();
    check_decoder("SignedCapsule", &signed, MAX_SIGNED_CAPSULE_LEN, SignedCapsule::from_bytes);
    let back = SignedCapsule::from_bytes(&signed).unwrap();
    assert_eq!(back.to_bytes(), signed);
    assert_eq!(back.id(), batch.capsule_id());

    let bytes = env.to_bytes();
    check_decoder("RecordEnvelope", &bytes, MAX_ENVELOPE_LEN, |b| {
        RecordEnvelope::from_bytes(b, MAX_ENVELOPE_LEN)
    });
    let back = RecordEnvelope::from_bytes(&bytes, MAX_ENVELOPE_LEN).unwrap();
    assert_eq!(back.to_bytes(), bytes);
    assert_eq!(back.header(), env.header());
    assert_eq!(back.ciphertext_hash(), env.ciphertext_hash());
    assert_eq!(back.capsule_id(), batch.capsule_id());
    // A caller's tighter limit is honoured before parsing.
    assert!(matches!(RecordEnvelope::from_bytes(&bytes, bytes.len() - 1), Err(DecodeError::TooLarge { .. })));
    // The per-record capsule format (version 1) is gone.
    let mut v1 = bytes.clone();
    v1[4] = 1;
    assert!(matches!(
        RecordEnvelope::from_bytes(&v1, MAX_ENVELOPE_LEN),
        Err(DecodeError::UnsupportedVersion { found: 1 })
    ));

    let header = env.signed_header().to_bytes();
    check_decoder("SignedRecordHeader", &header, MAX_SIGNED_HEADER_LEN, SignedRecordHeader::from_bytes);
    assert_eq!(SignedRecordHeader::from_bytes(&header).unwrap().to_bytes(), header);

    let key = batch.key().to_bytes();
    check_decoder("BatchKey", &key, BATCH_KEY_LEN, BatchKey::from_bytes);
    assert_eq!(*BatchKey::from_bytes(&key).unwrap().to_bytes(), *key);
}

#[test]
fn rekey_and_reencrypted_capsule_decoders() {
    let mut rng = rng(32);
    let p = Patient::new(&mut rng);
    let d = doctor(&mut rng);
    let rk = p.rekey(&mut rng, KeyClass::General, &d, Threshold::new(2, 3).unwrap());
    let rk_bytes = rk.to_bytes();
    check_decoder("ReencryptionKey", &rk_bytes, MAX_REKEY_LEN, ReencryptionKey::from_bytes);
    let back = ReencryptionKey::from_bytes(&rk_bytes).unwrap();
    assert_eq!(back.to_bytes(), rk_bytes);
    assert_eq!(back.digest(), rk.digest());
    assert_eq!(back.delegator_principal(), p.signing.principal_id());
    // Threshold above shares is refused.
    let mut bad = rk_bytes.clone();
    bad[6] = 4;
    assert!(matches!(ReencryptionKey::from_bytes(&bad), Err(DecodeError::Invalid(_))));

    let (batch, _) = p.seal(&mut rng, KeyClass::General, b"x");
    let vrk = back.verify(&p.signing.verifying_key(), &p.public, d.public_key()).map_err(|(e, _)| e).unwrap();
    let rc = reencrypt_capsule(&mut rng, &vrk, &p.signing.verifying_key(), batch.capsule()).unwrap();
    let rc_bytes = rc.to_bytes();
    check_decoder(
        "ReencryptedCapsule",
        &rc_bytes,
        MAX_REENCRYPTED_CAPSULE_LEN,
        ReencryptedCapsule::from_bytes,
    );
    assert_eq!(ReencryptedCapsule::from_bytes(&rc_bytes).unwrap().to_bytes(), rc_bytes);
    // No fragment at all is refused (count byte after class and capsule id).
    let mut none = rc_bytes;
    none[4 + 1 + 1 + 32] = 0;
    assert!(matches!(ReencryptedCapsule::from_bytes(&none), Err(DecodeError::Invalid(_))));
}

#[test]
fn threshold_parameters_are_validated() {
    assert!(Threshold::new(0, 1).is_err());
    assert!(Threshold::new(3, 2).is_err());
    assert!(Threshold::new(1, 17).is_err());
    assert_eq!(Threshold::new(2, 3).unwrap().threshold(), 2);
}
