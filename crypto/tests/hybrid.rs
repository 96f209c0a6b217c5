//! Hybrid PRE end to end: batches (one capsule, many records), owner and
//! delegate round trips, class separation, signed capsules and the owner
//! binding of re-encryption (review finding F1), re-encryption key checks
//! (F2, F7), the grant's threshold (F7), tampering, compression.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{doctor, rng, Delegated, Patient};
use medrelay_crypto::encoding::Encoder;
use medrelay_crypto::{
    decrypt_batch_key_as_delegate, decrypt_batch_key_as_owner, decrypt_record, decrypt_record_as_owner,
    domain, encrypt_record, generate_batch, generate_reencryption_key, reencrypt_capsule, BatchKey,
    CapsuleId, CryptoError, KeyClass, PatientSecretKeys, PreKeyPair, PreSecretKey, RecordEnvelope,
    ReencryptedCapsule, ReencryptionKey, SignedCapsule, SignedRecordHeader, Threshold,
    VerifiedReencryptionKey, MAX_ENVELOPE_LEN,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn reparse(env: &RecordEnvelope) -> RecordEnvelope {
    RecordEnvelope::from_bytes(&env.to_bytes(), MAX_ENVELOPE_LEN).unwrap()
}

fn reparse_capsule(c: &SignedCapsule) -> SignedCapsule {
    SignedCapsule::from_bytes(&c.to_bytes()).unwrap()
}

/// Rebuilds envelope bytes from parts (the documented layout).
fn assemble(header: &[u8], capsule: &CapsuleId, ciphertext: &[u8], signature: [u8; 64]) -> Vec<u8> {
    let mut e = Encoder::new(b"MREV", 2);
    e.bytes(header).fixed(capsule.as_bytes()).bytes(ciphertext).fixed(&signature);
    e.finish()
}

fn owner_signature(p: &Patient, header: &[u8], capsule: &CapsuleId, ciphertext: &[u8]) -> [u8; 64] {
    let hash: [u8; 32] = Sha256::digest(ciphertext).into();
    let mut e = Encoder::new(b"MRRS", 2);
    e.bytes(header).fixed(capsule.as_bytes()).fixed(&hash);
    p.signing.sign(domain::SIG_RECORD, &e.finish()).to_bytes()
}

/// Rebuilds signed-capsule bytes around `capsule_bytes` with `signature`.
fn signed_capsule_bytes(capsule_bytes: &[u8], signature: [u8; 64]) -> Vec<u8> {
    let mut e = Encoder::new(b"MRSC", 1);
    e.bytes(capsule_bytes).fixed(&signature);
    e.finish()
}

#[test]
fn a_batch_holds_many_records_under_one_capsule_in_every_class() {
    let mut rng = rng(10);
    let p = Patient::new(&mut rng);
    let vk = p.signing.verifying_key();
    for class in KeyClass::ALL {
        let batch = p.batch(&mut rng, class);
        let capsule = reparse_capsule(batch.capsule());
        assert_eq!(capsule.id(), batch.capsule_id());
        assert_eq!((capsule.owner(), capsule.key_class()), (p.signing.principal_id(), class));
        capsule.verify_owner(&vk).unwrap();
        let key = decrypt_batch_key_as_owner(&p.keys, &vk, &capsule).unwrap();
        assert_eq!(
            (key.capsule_id(), key.key_class(), key.owner()),
            (capsule.id(), class, p.signing.principal_id())
        );
        for i in 0..5 {
            let body = format!("record {i} of class {class}");
            let env = reparse(&p.seal_in(&mut rng, &batch, body.as_bytes()));
            assert_eq!(env.capsule_id(), capsule.id());
            env.verify_owner(&vk).unwrap();
            assert_eq!(decrypt_record(&key, &vk, &env).unwrap().as_slice(), body.as_bytes());
            assert_eq!(decrypt_record(batch.key(), &vk, &env).unwrap().as_slice(), body.as_bytes());
            assert_eq!(
                decrypt_record_as_owner(&p.keys, &vk, &capsule, &env).unwrap().as_slice(),
                body.as_bytes()
            );
        }
    }
}

#[test]
fn delegate_round_trip_one_of_one() {
    let mut rng = rng(11);
    let p = Patient::new(&mut rng);
    let d = doctor(&mut rng);
    let vk = p.signing.verifying_key();
    let batch = p.batch(&mut rng, KeyClass::Laboratory);
    let envs: Vec<RecordEnvelope> =
        (0..3).map(|i| reparse(&p.seal_in(&mut rng, &batch, format!("HbA1c 5.{i}%").as_bytes()))).collect();
    let rk = p.verified_rekey(&mut rng, KeyClass::Laboratory, &d, Threshold::ONE_OF_ONE);
    let capsule = reparse_capsule(batch.capsule());
    let rc = reencrypt_capsule(&mut rng, &rk, &vk, &capsule).unwrap();
    let rc = ReencryptedCapsule::from_bytes(&rc.to_bytes()).unwrap();
    assert_eq!(rc.capsule_id(), capsule.id());
    let key =
        decrypt_batch_key_as_delegate(d.secret_key(), &vk, &p.public, &capsule, &rc, Threshold::ONE_OF_ONE)
            .unwrap();
    for (i, env) in envs.iter().enumerate() {
        assert_eq!(decrypt_record(&key, &vk, env).unwrap().as_slice(), format!("HbA1c 5.{i}%").as_bytes());
    }
    // Stored and read back, as the doctor's keystore does.
    let again = BatchKey::from_bytes(&key.to_bytes()).unwrap();
    assert_eq!(decrypt_record(&again, &vk, &envs[0]).unwrap().as_slice(), b"HbA1c 5.0%");
    assert!(!format!("{key:?}").contains(&hex::encode(&key.to_bytes()[70..])));
}

#[test]
fn the_threshold_comes_from_the_grant_not_the_proxy() {
    let mut rng = rng(12);
    let p = Patient::new(&mut rng);
    let d = doctor(&mut rng);
    let vk = p.signing.verifying_key();
    let two_of_three = Threshold::new(2, 3).unwrap();
    let Delegated { batch, env, rc, .. } =
        p.seal_for(&mut rng, KeyClass::MentalHealth, b"session notes", &d, two_of_three);
    assert_eq!(rc.fragment_count(), 3);
    let open = |rc: &ReencryptedCapsule, t: Threshold| {
        decrypt_batch_key_as_delegate(d.secret_key(), &vk, &p.public, batch.capsule(), rc, t)
            .and_then(|k| decrypt_record(&k, &vk, &env))
    };
    assert_eq!(open(&rc, two_of_three).unwrap().as_slice(), b"session notes");
    let mut two = ReencryptedCapsule::from_bytes(&rc.to_bytes()).unwrap();
    two.truncate_fragments(2);
    assert_eq!(open(&two, two_of_three).unwrap().as_slice(), b"session notes");
    // A proxy that forwards one fragment cannot talk the delegate into a
    // lower threshold: the encoding carries none, the grant's is used.
    let mut one = two;
    one.truncate_fragments(1);
    assert!(matches!(open(&one, two_of_three), Err(CryptoError::Decryption)));
}

#[test]
fn a_repeated_fragment_does_not_count_twice() {
    let mut rng = rng(22);
    let p = Patient::new(&mut rng);
    let d = doctor(&mut rng);
    let vk = p.signing.verifying_key();
    let (batch, _) = p.seal(&mut rng, KeyClass::SexualHealth, b"result");
    let t = Threshold::new(2, 3).unwrap();
    let rk = p.verified_rekey(&mut rng, KeyClass::SexualHealth, &d, t);
    let bytes = reencrypt_capsule(&mut rng, &rk, &vk, batch.capsule()).unwrap().to_bytes();
    // Layout: magic, version, class, capsule id (32), count, then
    // length-prefixed fragments, then the length-prefixed lattice share.
    let head = 4 + 1 + 1 + 32;
    let mut frags = Vec::new();
    let mut at = head + 1;
    for _ in 0..3 {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        frags.push(&bytes[at..at + 4 + len]);
        at += 4 + len;
    }
    let mut dup = bytes[..head].to_vec();
    dup.push(2);
    dup.extend_from_slice(frags[0]);
    dup.extend_from_slice(frags[0]);
    dup.extend_from_slice(&bytes[at..]);
    let dup = ReencryptedCapsule::from_bytes(&dup).unwrap();
    assert_eq!(dup.fragment_count(), 2);
    assert!(matches!(
        decrypt_batch_key_as_delegate(d.secret_key(), &vk, &p.public, batch.capsule(), &dup, t),
        Err(CryptoError::Decryption)
    ));
}

#[test]
fn a_rekey_with_a_repeated_fragment_id_is_refused() {
    let mut rng = rng(23);
    let p = Patient::new(&mut rng);
    let d = doctor(&mut rng);
    let rk = p.rekey(&mut rng, KeyClass::General, &d, Threshold::new(2, 3).unwrap());
    let bytes = rk.to_bytes();
    // Layout: magic, version, class, threshold, shares, principal (32),
    // two fingerprints (64), then `shares` length-prefixed fragments.
    let head = 4 + 1 + 3 + 32 + 64;
    let mut frags = Vec::new();
    let mut at = head;
    for _ in 0..3 {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        frags.push(bytes[at..at + 4 + len].to_vec());
        at += 4 + len;
    }
    // The second fragment replaced by a copy of the first: each fragment is
    // validly signed, but a proxy holding it would hand out two fragments
    // worth one.
    let mut dup = bytes[..head].to_vec();
    dup.extend_from_slice(&frags[0]);
    dup.extend_from_slice(&frags[0]);
    dup.extend_from_slice(&frags[2]);
    dup.extend_from_slice(&bytes[at..]);
    let dup = ReencryptionKey::from_bytes(&dup).unwrap();
    let (err, _) = dup.verify(&p.signing.verifying_key(), &p.public, d.public_key()).err().unwrap();
    assert!(matches!(err, CryptoError::InvalidParameter("repeated key fragment id")), "{err:?}");
    // The original verifies.
    rk.verify(&p.signing.verifying_key(), &p.public, d.public_key()).map_err(|(e, _)| e).unwrap();
}

#[test]
fn a_rekey_for_one_class_cannot_open_another_class() {
    let mut rng = rng(13);
    let p = Patient::new(&mut rng);
    let d = doctor(&mut rng);
    let vk = p.signing.verifying_key();
    let (lab, _) = p.seal(&mut rng, KeyClass::Laboratory, b"lab");
    let (genetics, _) = p.seal(&mut rng, KeyClass::Genetics, b"BRCA1");
    let rk = p.verified_rekey(&mut rng, KeyClass::Laboratory, &d, Threshold::ONE_OF_ONE);
    assert!(matches!(
        reencrypt_capsule(&mut rng, &rk, &vk, genetics.capsule()),
        Err(CryptoError::KeyClassMismatch)
    ));
    // A re-encrypted lab capsule does not open the genetics capsule either.
    let rc = reencrypt_capsule(&mut rng, &rk, &vk, lab.capsule()).unwrap();
    assert!(matches!(
        decrypt_batch_key_as_delegate(
            d.secret_key(),
            &vk,
            &p.public,
            genetics.capsule(),
            &rc,
            Threshold::ONE_OF_ONE
        ),
        Err(CryptoError::Decryption)
    ));
}

#[test]
fn a_capsule_altered_after_signing_is_refused_before_reencryption() {
    let mut rng = rng(14);
    let p = Patient::new(&mut rng);
    let d = doctor(&mut rng);
    let vk = p.signing.verifying_key();
    let (batch, _) = p.seal(&mut rng, KeyClass::General, b"x");
    let rk = p.verified_rekey(&mut rng, KeyClass::General, &d, Threshold::ONE_OF_ONE);
    let cap = batch.capsule().capsule_bytes().to_vec();
    let sig = batch.capsule().signature().to_bytes();

    // Perturb one word of the lattice ciphertext (a chosen mask change, the
    // key-oracle attack): the capsule still parses, the signature does not.
    let mut bad_cap = cap.clone();
    let i = cap.len() - 1000;
    bad_cap[i] ^= 0x10;
    let forged = SignedCapsule::from_bytes(&signed_capsule_bytes(&bad_cap, sig)).unwrap();
    assert_ne!(forged.id(), batch.capsule_id());
    assert!(matches!(reencrypt_capsule(&mut rng, &rk, &vk, &forged), Err(CryptoError::BadSignature)));
    assert!(matches!(decrypt_batch_key_as_owner(&p.keys, &vk, &forged), Err(CryptoError::Decryption)));

    // A validly signed capsule's signature on another capsule does not pass.
    let (other, _) = p.seal(&mut rng, KeyClass::General, b"y");
    let swapped =
        SignedCapsule::from_bytes(&signed_capsule_bytes(&cap, other.capsule().signature().to_bytes()))
            .unwrap();
    assert!(matches!(reencrypt_capsule(&mut rng, &rk, &vk, &swapped), Err(CryptoError::BadSignature)));

    // Another principal's key is not the owner's.
    let stranger = Patient::new(&mut rng);
    assert!(matches!(
        reencrypt_capsule(&mut rng, &rk, &stranger.signing.verifying_key(), batch.capsule()),
        Err(CryptoError::WrongOwner)
    ));
}

/// Review finding F1 with well-formed capsules: another principal's
/// capsule, encrypted under the victim's class key and signed by its own
/// author, is never re-encrypted with the victim's key. (The crafted-mask
/// version, with the key it would otherwise leak, is the crate's own test
/// `pre::tests::the_crafted_capsule_attack_fails_through_the_library`.)
#[test]
fn another_principals_capsule_is_never_reencrypted_with_a_patients_key() {
    let mut rng = rng(24);
    let victim = Patient::new(&mut rng);
    let attacker = Patient::new(&mut rng);
    let d = doctor(&mut rng);
    let rk = victim.verified_rekey(&mut rng, KeyClass::Laboratory, &d, Threshold::ONE_OF_ONE);
    // The attacker's batch under the *victim's* public keys, signed by the
    // attacker: a capsule the victim's key can transform.
    let planted = generate_batch(&mut rng, &attacker.signing, &victim.public, KeyClass::Laboratory).unwrap();
    let planted = reparse_capsule(planted.capsule());
    for vk in [attacker.signing.verifying_key(), victim.signing.verifying_key()] {
        assert!(matches!(reencrypt_capsule(&mut rng, &rk, &vk, &planted), Err(CryptoError::WrongOwner)));
    }
    // The key names its delegator and verifies only as that patient's.
    assert_eq!(rk.delegator_principal(), victim.signing.principal_id());
    let key = victim.rekey(&mut rng, KeyClass::Laboratory, &d, Threshold::ONE_OF_ONE);
    let (err, _) =
        key.verify(&attacker.signing.verifying_key(), &victim.public, d.public_key()).err().unwrap();
    assert!(matches!(err, CryptoError::WrongOwner));
}

#[test]
fn delegates_without_the_right_rekey_fail() {
    let mut rng = rng(15);
    let alice = Patient::new(&mut rng);
    let bob = Patient::new(&mut rng);
    let d1 = doctor(&mut rng);
    let d2 = doctor(&mut rng);
    let vk = alice.signing.verifying_key();
    let t = Threshold::ONE_OF_ONE;
    let Delegated { batch, env, rc, .. } = alice.seal_for(&mut rng, KeyClass::Imaging, b"MRI", &d1, t);

    // d2 holds no rekey: the capsule re-encrypted for d1 is useless to it.
    assert!(matches!(
        decrypt_batch_key_as_delegate(d2.secret_key(), &vk, &alice.public, batch.capsule(), &rc, t),
        Err(CryptoError::Decryption)
    ));
    // Bob's key toward d1 does not re-encrypt Alice's capsule.
    let bob_rk = bob.verified_rekey(&mut rng, KeyClass::Imaging, &d1, t);
    assert!(matches!(
        reencrypt_capsule(&mut rng, &bob_rk, &vk, batch.capsule()),
        Err(CryptoError::WrongOwner)
    ));
    // Nor does it pass verification as Alice's key.
    let unverified = generate_reencryption_key(
        &mut rng,
        &bob.keys,
        alice.signing.principal_id(),
        KeyClass::Imaging,
        d1.public_key(),
        t,
    );
    assert!(unverified.verify(&vk, &alice.public, d1.public_key()).is_err());
    // The owner's secret keys of another patient do not open it.
    assert!(matches!(
        decrypt_batch_key_as_owner(&bob.keys, &vk, batch.capsule()),
        Err(CryptoError::Decryption)
    ));
    // A batch key of another batch does not open the record.
    let (other, _) = alice.seal(&mut rng, KeyClass::Imaging, b"CT");
    assert!(matches!(decrypt_record(other.key(), &vk, &env), Err(CryptoError::Decryption)));
}

#[test]
fn rekey_verification_binds_the_patient_both_public_keys_and_the_lattice_key() {
    let mut rng = rng(16);
    let p = Patient::new(&mut rng);
    let vk = p.signing.verifying_key();
    let d1 = doctor(&mut rng);
    let d2 = doctor(&mut rng);
    let t = Threshold::new(2, 3).unwrap();
    let rk = p.rekey(&mut rng, KeyClass::General, &d1, t);
    let (err, rk) = rk.verify(&vk, &p.public, d2.public_key()).err().unwrap();
    assert!(matches!(err, CryptoError::BadSignature));
    assert_eq!(rk.delegatee(), d1.public_key().fingerprint());
    assert_eq!(rk.delegator(), p.public.class(KeyClass::General).fingerprint());
    assert_eq!(rk.delegator_principal(), p.signing.principal_id());

    // F2: the lattice public key the proxy floods under must be the
    // doctor's registered one. Swap d2's lattice key into the encoding (the
    // fingerprints still name d1): refused.
    let bytes = rk.to_bytes();
    let lattice_of = |k: &PreKeyPair| k.public_key().to_bytes()[42..].to_vec();
    let (l1, l2) = (lattice_of(&d1), lattice_of(&d2));
    let at = bytes.windows(l1.len()).position(|w| w == l1.as_slice()).unwrap();
    let mut swapped = bytes.clone();
    swapped[at..at + l1.len()].copy_from_slice(&l2);
    let swapped = ReencryptionKey::from_bytes(&swapped).unwrap();
    assert_eq!(swapped.delegatee(), d1.public_key().fingerprint());
    let (err, _) = swapped.verify(&vk, &p.public, d1.public_key()).err().unwrap();
    assert!(matches!(err, CryptoError::BadSignature));

    let verified = rk.verify(&vk, &p.public, d1.public_key()).map_err(|(e, _)| e).unwrap();
    assert_eq!(verified.threshold(), t);
    assert_eq!(verified.key_class(), KeyClass::General);
    assert_eq!(verified.digest(), ReencryptionKey::from_bytes(&bytes).unwrap().digest());
}

#[test]
fn tampering_anywhere_is_one_opaque_error() {
    let mut rng = rng(17);
    let p = Patient::new(&mut rng);
    let d = doctor(&mut rng);
    let vk = p.signing.verifying_key();
    let t = Threshold::new(2, 3).unwrap();
    let body = b"metformin 500mg, twice a day, with meals";
    let Delegated { batch, env, rk, rc } = p.seal_for(&mut rng, KeyClass::Medications, body, &d, t);
    let key = decrypt_batch_key_as_delegate(d.secret_key(), &vk, &p.public, batch.capsule(), &rc, t).unwrap();
    assert!(decrypt_record(&key, &vk, &env).is_ok());

    let (h, c, ct, sig) =
        (env.header_bytes(), env.capsule_id(), env.ciphertext(), env.signature().to_bytes());
    // Header: change created-at (bytes 5+16+32+1 .. +8), still a valid header.
    let mut h2 = h.to_vec();
    h2[5 + 16 + 32 + 1 + 7] ^= 1;
    // Capsule id: another batch's.
    let (other_batch, _) = p.seal(&mut rng, KeyClass::Medications, b"x");
    let c2 = other_batch.capsule_id();
    // Ciphertext: one byte of the body, one of the tag, one of the nonce.
    let mut ct_body = ct.to_vec();
    ct_body[14] ^= 0x80;
    let mut ct_tag = ct.to_vec();
    *ct_tag.last_mut().unwrap() ^= 1;
    let mut ct_nonce = ct.to_vec();
    ct_nonce[0] ^= 1;
    // Signature.
    let mut sig2 = sig;
    sig2[10] ^= 1;
    let variants = [
        assemble(&h2, &c, ct, sig),
        assemble(h, &c2, ct, sig),
        assemble(h, &c, &ct_body, sig),
        assemble(h, &c, &ct_tag, sig),
        assemble(h, &c, &ct_nonce, sig),
        assemble(h, &c, ct, sig2),
    ];
    for (i, bytes) in variants.iter().enumerate() {
        let bad = RecordEnvelope::from_bytes(bytes, MAX_ENVELOPE_LEN).unwrap();
        assert!(matches!(decrypt_record(&key, &vk, &bad), Err(CryptoError::Decryption)), "variant {i}");
        assert!(
            matches!(
                decrypt_record_as_owner(&p.keys, &vk, batch.capsule(), &bad),
                Err(CryptoError::Decryption)
            ),
            "owner {i}"
        );
        assert!(bad.verify_owner(&vk).is_err(), "variant {i}");
    }
    // Re-signed by the owner under the other capsule's id: the data key
    // binds the capsule id, so neither batch key opens it.
    let resigned = assemble(h, &c2, ct, owner_signature(&p, h, &c2, ct));
    let resigned = RecordEnvelope::from_bytes(&resigned, MAX_ENVELOPE_LEN).unwrap();
    resigned.verify_owner(&vk).unwrap();
    assert!(matches!(decrypt_record(&key, &vk, &resigned), Err(CryptoError::Decryption)));
    assert!(matches!(decrypt_record(other_batch.key(), &vk, &resigned), Err(CryptoError::Decryption)));

    // Capsule fragments: a re-encryption of another capsule, and byte flips
    // inside two fragments, are refused.
    let rc_other = reencrypt_capsule(&mut rng, &rk, &vk, other_batch.capsule()).unwrap();
    assert!(matches!(
        decrypt_batch_key_as_delegate(d.secret_key(), &vk, &p.public, batch.capsule(), &rc_other, t),
        Err(CryptoError::Decryption)
    ));
    let mut two = ReencryptedCapsule::from_bytes(&rc.to_bytes()).unwrap();
    two.truncate_fragments(2);
    let two_bytes = two.to_bytes();
    let mut tried = 0;
    for i in (40..400).step_by(5) {
        let mut b = two_bytes.clone();
        b[i] ^= 0x01;
        if let Ok(bad_rc) = ReencryptedCapsule::from_bytes(&b) {
            tried += 1;
            assert!(
                decrypt_batch_key_as_delegate(d.secret_key(), &vk, &p.public, batch.capsule(), &bad_rc, t)
                    .is_err(),
                "byte {i}"
            );
        }
    }
    assert!(tried > 0);
}

#[test]
fn a_ciphertext_moved_under_another_header_fails() {
    let mut rng = rng(18);
    let p = Patient::new(&mut rng);
    let vk = p.signing.verifying_key();
    let batch = p.batch(&mut rng, KeyClass::General);
    let a = p.seal_in(&mut rng, &batch, b"record A");
    let b = p.seal_in(&mut rng, &batch, b"record B");
    let c = batch.capsule_id();
    // Moved without re-signing: the signature fails.
    let moved = assemble(b.header_bytes(), &c, a.ciphertext(), a.signature().to_bytes());
    let moved = RecordEnvelope::from_bytes(&moved, MAX_ENVELOPE_LEN).unwrap();
    assert!(matches!(decrypt_record(batch.key(), &vk, &moved), Err(CryptoError::Decryption)));
    // Even re-signed by the owner, the data key (bound to the record id and
    // the header's hash) and AES-GCM's associated data refuse it.
    let sig = owner_signature(&p, b.header_bytes(), &c, a.ciphertext());
    let resigned = assemble(b.header_bytes(), &c, a.ciphertext(), sig);
    let resigned = RecordEnvelope::from_bytes(&resigned, MAX_ENVELOPE_LEN).unwrap();
    resigned.verify_owner(&vk).unwrap();
    assert!(matches!(decrypt_record(batch.key(), &vk, &resigned), Err(CryptoError::Decryption)));
}

#[test]
fn encrypt_refuses_a_header_of_another_owner_or_class() {
    let mut rng = rng(19);
    let p = Patient::new(&mut rng);
    let q = Patient::new(&mut rng);
    let batch = p.batch(&mut rng, KeyClass::General);
    let header = q.header(&mut rng, KeyClass::General);
    assert!(matches!(
        encrypt_record(&mut rng, &p.signing, &batch, header, b"x"),
        Err(CryptoError::InvalidParameter(_))
    ));
    let lab = p.header(&mut rng, KeyClass::Laboratory);
    assert!(matches!(
        encrypt_record(&mut rng, &p.signing, &batch, lab, b"x"),
        Err(CryptoError::InvalidParameter(_))
    ));
    // Another principal's batch, even for one's own header.
    let own = p.header(&mut rng, KeyClass::General);
    let foreign = q.batch(&mut rng, KeyClass::General);
    assert!(matches!(
        encrypt_record(&mut rng, &p.signing, &foreign, own, b"x"),
        Err(CryptoError::InvalidParameter(_))
    ));
}

#[test]
fn a_record_costs_its_body_not_a_capsule_and_json_is_compressed() {
    let mut rng = rng(20);
    let p = Patient::new(&mut rng);
    let vk = p.signing.verifying_key();
    let batch = p.batch(&mut rng, KeyClass::General);
    // Random bytes do not compress: stored as is, 12 + 1 + n + 16 bytes.
    let mut noise = vec![0u8; 1 << 20];
    rand_chacha::rand_core::RngCore::fill_bytes(&mut rng, &mut noise);
    let big = p.seal_in(&mut rng, &batch, &noise);
    assert_eq!(big.ciphertext().len(), (1 << 20) + 29);
    assert!(big.to_bytes().len() < (1 << 20) + 512);
    // FHIR-like JSON shrinks, and comes back exactly.
    let json: String = (0..40)
        .map(|i| format!(r#"{{"resourceType":"Observation","status":"final","valueQuantity":{{"value":{i},"unit":"mg/dL"}}}},"#))
        .collect();
    let small = p.seal_in(&mut rng, &batch, json.as_bytes());
    assert!(small.body_len() * 3 < json.len(), "{} of {}", small.body_len(), json.len());
    assert_eq!(decrypt_record(batch.key(), &vk, &small).unwrap().as_slice(), json.as_bytes());
    let empty = p.seal_in(&mut rng, &batch, b"");
    assert_eq!(decrypt_record(batch.key(), &vk, &empty).unwrap().len(), 0);
}

#[test]
fn a_signed_header_checks_a_listing_without_the_body() {
    let mut rng = rng(25);
    let p = Patient::new(&mut rng);
    let vk = p.signing.verifying_key();
    let (_, env) = p.seal(&mut rng, KeyClass::Laboratory, b"glucose 5.4");
    let signed = SignedRecordHeader::from_bytes(&env.signed_header().to_bytes()).unwrap();
    signed.verify_owner(&vk).unwrap();
    assert_eq!(signed.header(), env.header());
    assert_eq!(signed.capsule_id(), env.capsule_id());
    // Rebuilt from a store's parts: the same envelope; another ciphertext
    // is refused.
    let back = RecordEnvelope::from_signed_header(signed.clone(), env.ciphertext().to_vec()).unwrap();
    assert_eq!(back.to_bytes(), env.to_bytes());
    let mut other = env.ciphertext().to_vec();
    other[20] ^= 1;
    assert!(RecordEnvelope::from_signed_header(signed.clone(), other).is_err());
    let stranger = Patient::new(&mut rng);
    assert!(signed.verify_owner(&stranger.signing.verifying_key()).is_err());
}

#[test]
fn keys_are_deterministic_per_master_and_distinct_per_class() {
    let mut rng = rng(21);
    let keys = PatientSecretKeys::generate(&mut rng);
    let again =
        PatientSecretKeys::from_master(medrelay_crypto::MasterSecret::from_bytes(&keys.master().to_bytes()));
    let (a, b) = (keys.public_keys(), again.public_keys());
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.to_bytes(), b.to_bytes());
    let fps: std::collections::HashSet<_> = KeyClass::ALL.iter().map(|c| a.class(*c).fingerprint()).collect();
    assert_eq!(fps.len(), 8);
    let seed = [9u8; 32];
    assert_eq!(
        PreSecretKey::from_seed(&seed).public_key().fingerprint(),
        PreKeyPair::from_seed(&seed).public_key().fingerprint()
    );
    let sk = PreSecretKey::from_seed(&seed);
    assert_eq!(format!("{sk:?}"), "PreSecretKey(..)");
    assert!(!format!("{:?}", PreKeyPair::from_seed(&seed)).contains(&hex::encode(seed)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn round_trips_over_random_bodies(body in proptest::collection::vec(any::<u8>(), 0..65536), seed in any::<u64>()) {
        let mut rng = rng(seed);
        let p = Patient::new(&mut rng);
        let d = doctor(&mut rng);
        let vk = p.signing.verifying_key();
        let (batch, env) = p.seal(&mut rng, KeyClass::Laboratory, &body);
        let env = reparse(&env);
        let owner = decrypt_record_as_owner(&p.keys, &vk, batch.capsule(), &env).unwrap();
        prop_assert_eq!(owner.as_slice(), body.as_slice());
        let rk = p.verified_rekey(&mut rng, KeyClass::Laboratory, &d, Threshold::ONE_OF_ONE);
        let rc = reencrypt_capsule(&mut rng, &rk, &vk, batch.capsule()).unwrap();
        let key = decrypt_batch_key_as_delegate(d.secret_key(), &vk, &p.public, batch.capsule(), &rc, Threshold::ONE_OF_ONE).unwrap();
        let out = decrypt_record(&key, &vk, &env).unwrap();
        prop_assert_eq!(out.as_slice(), body.as_slice());
    }
}

#[test]
fn server_side_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<RecordEnvelope>();
    check::<SignedCapsule>();
    check::<VerifiedReencryptionKey>();
    check::<medrelay_crypto::ReencryptionKey>();
    check::<ReencryptedCapsule>();
    check::<BatchKey>();
    check::<medrelay_crypto::PatientPublicKeys>();
    check::<medrelay_crypto::PrePublicKey>();
}
