//! Key files: round trips, wrong passphrase, corruption, bounds, Debug.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use medrelay_crypto::{Argon2Params, CryptoError, DecodeError, KeyFile, KeyFileKind, MAX_KEY_FILE_LEN};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Small Argon2 cost so the tests run fast; the default is 64 MiB, t = 3.
fn fast() -> Argon2Params {
    Argon2Params::new(64, 1, 1).unwrap()
}

#[test]
fn default_params_are_real() {
    let p = Argon2Params::default();
    assert_eq!((p.memory_kib(), p.iterations(), p.parallelism()), (64 * 1024, 3, 1));
}

#[test]
fn patient_round_trip_keeps_identity_and_master() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let kf = KeyFile::new_patient(&mut rng);
    let sealed = kf.seal(&mut rng, b"correct horse", fast()).unwrap();
    let opened = KeyFile::open(&sealed, b"correct horse").unwrap();
    assert_eq!(opened.kind(), KeyFileKind::Patient);
    assert_eq!(opened.signing_key().principal_id(), kf.signing_key().principal_id());
    let a = kf.patient_keys().unwrap();
    let b = opened.patient_keys().unwrap();
    assert_eq!(*a.master().to_bytes(), *b.master().to_bytes());
    assert_eq!(a.umbral_verifying_key(), b.umbral_verifying_key());
    assert!(opened.doctor_key().is_none());
}

#[test]
fn doctor_and_signing_only_round_trip() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    for kf in [KeyFile::new_doctor(&mut rng), KeyFile::new_signing_only(&mut rng)] {
        let sealed = kf.seal(&mut rng, b"pw", fast()).unwrap();
        let opened = KeyFile::open(&sealed, b"pw").unwrap();
        assert_eq!(opened.kind(), kf.kind());
        assert_eq!(opened.signing_key().principal_id(), kf.signing_key().principal_id());
        assert!(opened.patient_keys().is_none());
        assert!(sealed.len() <= MAX_KEY_FILE_LEN);
    }
}

#[test]
fn wrong_passphrase_is_a_key_file_error() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let sealed = KeyFile::new_patient(&mut rng).seal(&mut rng, b"right", fast()).unwrap();
    assert!(matches!(KeyFile::open(&sealed, b"wrong"), Err(CryptoError::KeyFile)));
    assert!(matches!(KeyFile::open(&sealed, b""), Err(CryptoError::KeyFile)));
}

#[test]
fn every_corrupted_byte_is_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let sealed = KeyFile::new_doctor(&mut rng).seal(&mut rng, b"pw", fast()).unwrap();
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        assert!(KeyFile::open(&bad, b"pw").is_err(), "flipped byte {i} accepted");
    }
}

#[test]
fn truncated_trailing_oversized_and_wrong_version_are_typed_errors() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let sealed = KeyFile::new_patient(&mut rng).seal(&mut rng, b"pw", fast()).unwrap();
    for n in 0..sealed.len() {
        assert!(matches!(KeyFile::open(&sealed[..n], b"pw"), Err(CryptoError::Decode(_))), "prefix {n}");
    }
    let mut long = sealed.clone();
    long.push(0);
    assert!(matches!(KeyFile::open(&long, b"pw"), Err(CryptoError::Decode(DecodeError::TrailingBytes))));
    let huge = vec![0u8; MAX_KEY_FILE_LEN + 1];
    assert!(matches!(KeyFile::open(&huge, b"pw"), Err(CryptoError::Decode(DecodeError::TooLarge { .. }))));
    let mut v2 = sealed.clone();
    v2[4] = 2;
    assert!(matches!(
        KeyFile::open(&v2, b"pw"),
        Err(CryptoError::Decode(DecodeError::UnsupportedVersion { found: 2 }))
    ));
    let mut magic = sealed;
    magic[0] = b'X';
    assert!(matches!(KeyFile::open(&magic, b"pw"), Err(CryptoError::Decode(DecodeError::WrongMagic))));
}

#[test]
fn hostile_argon2_parameters_are_refused_before_hashing() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let sealed = KeyFile::new_patient(&mut rng).seal(&mut rng, b"pw", fast()).unwrap();
    // Memory cost sits at bytes 6..10 (after magic, version, kind).
    let mut bad = sealed.clone();
    bad[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(KeyFile::open(&bad, b"pw"), Err(CryptoError::Decode(DecodeError::Invalid(_)))));
    let mut bad = sealed;
    bad[10..14].copy_from_slice(&0u32.to_be_bytes());
    assert!(matches!(KeyFile::open(&bad, b"pw"), Err(CryptoError::Decode(DecodeError::Invalid(_)))));
    assert!(Argon2Params::new(1024, 0, 1).is_err());
    assert!(Argon2Params::new(4, 1, 1).is_err());
    assert!(Argon2Params::new(2 * 1024 * 1024, 1, 1).is_err());
    assert!(Argon2Params::new(1024, 1, 17).is_err());
}

#[test]
fn debug_prints_nothing_secret() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let kf = KeyFile::new_patient(&mut rng);
    let seed_hex = hex::encode(*kf.signing_key().to_seed());
    let master_hex = hex::encode(*kf.patient_keys().unwrap().master().to_bytes());
    let printed = format!(
        "{kf:?} {:?} {:?} {:?}",
        kf.signing_key(),
        kf.patient_keys().unwrap(),
        kf.patient_keys().unwrap().master()
    );
    assert!(!printed.contains(&seed_hex[..16]) && !printed.contains(&master_hex[..16]), "{printed}");
    assert_eq!(format!("{kf:?}"), "KeyFile(Patient, ..)");
    assert_eq!(format!("{:?}", kf.patient_keys().unwrap()), "PatientSecretKeys(..)");
    assert_eq!(format!("{:?}", kf.patient_keys().unwrap().master()), "MasterSecret(..)");
}
