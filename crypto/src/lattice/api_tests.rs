//! The lattice PRE through its API (and the crate-private re-encryption):
//! round trips, wrong keys, determinism and every decoder's handling of
//! malformed input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::reencrypt::reencrypt_lattice_share;
use super::*;
use crate::DecodeError;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

struct Fixture {
    sk_a: LatticeSecretKey,
    pk_a: LatticePublicKey,
    sk_b: LatticeSecretKey,
    share: [u8; 32],
    ct: LatticeCiphertext,
    rekey: LatticeReencryptionKey,
    re: LatticeReencryptedCiphertext,
}

fn fixture() -> Fixture {
    let mut rng = rng(1);
    let (sk_a, pk_a) = generate_lattice_keypair(&[1; 32]);
    let (sk_b, pk_b) = generate_lattice_keypair(&[2; 32]);
    let mut share = [0u8; 32];
    rng.fill_bytes(&mut share);
    let ct = encrypt_lattice_share(&mut rng, &pk_a, &share);
    let rekey = generate_lattice_reencryption_key(&mut rng, &sk_a, &pk_b);
    let re = reencrypt_lattice_share(&mut rng, &rekey, &ct);
    Fixture { sk_a, pk_a, sk_b, share, ct, rekey, re }
}

fn hamming(a: &[u8; 32], b: &[u8; 32]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

#[test]
fn round_trips_direct_and_reencrypted() {
    let f = fixture();
    assert_eq!(*decrypt_lattice_share(&f.sk_a, &f.ct), f.share);
    assert_eq!(*decrypt_reencrypted_lattice_share(&f.sk_b, &f.re), f.share);
    // Edge shares.
    let mut rng = rng(2);
    for share in [[0u8; 32], [0xff; 32]] {
        let ct = encrypt_lattice_share(&mut rng, &f.pk_a, &share);
        assert_eq!(*decrypt_lattice_share(&f.sk_a, &ct), share);
        let re = reencrypt_lattice_share(&mut rng, &f.rekey, &ct);
        assert_eq!(*decrypt_reencrypted_lattice_share(&f.sk_b, &re), share);
    }
}

#[test]
fn wrong_key_gives_garbage_not_the_share() {
    let f = fixture();
    let (sk_c, _) = generate_lattice_keypair(&[3; 32]);
    for wrong in [decrypt_lattice_share(&sk_c, &f.ct), decrypt_lattice_share(&f.sk_b, &f.ct)] {
        let d = hamming(&wrong, &f.share);
        assert!((64..=192).contains(&d), "wrong-key output is {d} bits from the share");
    }
    for wrong in
        [decrypt_reencrypted_lattice_share(&sk_c, &f.re), decrypt_reencrypted_lattice_share(&f.sk_a, &f.re)]
    {
        let d = hamming(&wrong, &f.share);
        assert!((64..=192).contains(&d), "wrong-key output is {d} bits from the share");
    }
}

#[test]
fn keys_are_deterministic_and_randomness_comes_from_rng() {
    let (_, pk1) = generate_lattice_keypair(&[7; 32]);
    let (_, pk2) = generate_lattice_keypair(&[7; 32]);
    let (_, pk3) = generate_lattice_keypair(&[8; 32]);
    assert_eq!(pk1.to_bytes(), pk2.to_bytes());
    assert_ne!(pk1.to_bytes(), pk3.to_bytes());

    let share = [5u8; 32];
    let c1 = encrypt_lattice_share(&mut rng(9), &pk1, &share);
    let c2 = encrypt_lattice_share(&mut rng(9), &pk1, &share);
    let c3 = encrypt_lattice_share(&mut rng(10), &pk1, &share);
    assert_eq!(c1.to_bytes(), c2.to_bytes());
    assert_ne!(c1.to_bytes(), c3.to_bytes());

    let f = fixture();
    let r1 = reencrypt_lattice_share(&mut rng(11), &f.rekey, &f.ct);
    let r2 = reencrypt_lattice_share(&mut rng(11), &f.rekey, &f.ct);
    let r3 = reencrypt_lattice_share(&mut rng(12), &f.rekey, &f.ct);
    assert_eq!(r1.to_bytes(), r2.to_bytes());
    assert_ne!(r1.to_bytes(), r3.to_bytes());
}

#[test]
fn encodings_round_trip_with_the_documented_sizes() {
    let f = fixture();
    let pk = f.pk_a.to_bytes();
    let ct = f.ct.to_bytes();
    let rk = f.rekey.to_bytes();
    let re = f.re.to_bytes();
    println!(
        "sizes: public key {} B, stored capsule {} B, re-encryption key {} B, delivered capsule {} B",
        pk.len(),
        ct.len(),
        rk.len(),
        re.len()
    );
    assert_eq!(pk.len(), LATTICE_PUBLIC_KEY_LEN);
    assert_eq!(ct.len(), LATTICE_CIPHERTEXT_LEN);
    assert_eq!(rk.len(), LATTICE_REENCRYPTION_KEY_LEN);
    assert_eq!(re.len(), LATTICE_REENCRYPTED_LEN);
    // 64 KiB seeded key, 45.7 KiB / 6.4 KiB capsules (+ headers).
    assert_eq!(pk.len(), 65_536 + 28);
    assert_eq!(ct.len(), (4096 + 256) * 86 / 8 + 18);
    assert_eq!(re.len(), (4096 + 256) * 12 / 8 + 18);

    assert_eq!(LatticePublicKey::from_bytes(&pk).unwrap(), f.pk_a);
    assert_eq!(LatticeCiphertext::from_bytes(&ct).unwrap(), f.ct);
    assert!(LatticeReencryptionKey::from_bytes(&rk).unwrap() == f.rekey);
    assert_eq!(LatticeReencryptedCiphertext::from_bytes(&re).unwrap(), f.re);

    // A decoded key and capsule work end to end.
    let rekey = LatticeReencryptionKey::from_bytes(&rk).unwrap();
    let ct2 = LatticeCiphertext::from_bytes(&ct).unwrap();
    let re2 = reencrypt_lattice_share(&mut rng(20), &rekey, &ct2);
    assert_eq!(*decrypt_reencrypted_lattice_share(&f.sk_b, &re2), f.share);
    let pk2 = LatticePublicKey::from_bytes(&pk).unwrap();
    let ct3 = encrypt_lattice_share(&mut rng(21), &pk2, &f.share);
    assert_eq!(*decrypt_lattice_share(&f.sk_a, &ct3), f.share);
}

/// Runs every malformed-input check against one decoder.
fn check_decoder(name: &str, good: &[u8], decode: &dyn Fn(&[u8]) -> Result<(), DecodeError>) {
    assert!(decode(good).is_ok(), "{name}: good blob rejected");
    // Truncations: every short prefix, every prefix around the header and a
    // stride through the body, and one byte short.
    let mut cuts: Vec<usize> = (0..64.min(good.len())).collect();
    cuts.extend((64..good.len()).step_by(good.len() / 50 + 1));
    cuts.push(good.len() - 1);
    for n in cuts {
        let r = decode(&good[..n]);
        assert!(matches!(r, Err(DecodeError::Truncated)), "{name}: prefix of {n} bytes gave {r:?}");
    }
    // Oversized / trailing garbage: the limit is the exact length, so it is
    // caught before parsing.
    let mut long = good.to_vec();
    long.push(0);
    assert!(
        matches!(decode(&long), Err(DecodeError::TooLarge { limit, actual }) if limit == good.len() && actual == good.len() + 1),
        "{name}: trailing byte accepted"
    );
    // Wrong version.
    let mut bad = good.to_vec();
    bad[4] = 2;
    assert_eq!(decode(&bad), Err(DecodeError::UnsupportedVersion { found: 2 }), "{name}");
    bad[4] = 0;
    assert_eq!(decode(&bad), Err(DecodeError::UnsupportedVersion { found: 0 }), "{name}");
    // Wrong magic.
    let mut bad = good.to_vec();
    bad[0] ^= 0x20;
    assert_eq!(decode(&bad), Err(DecodeError::WrongMagic), "{name}");
    // Wrong parameters: ring dimension, GLWE dimension, modulus.
    for (offset, field) in
        [(8, "lattice polynomial size"), (9, "lattice GLWE dimension"), (10, "lattice ciphertext modulus")]
    {
        let mut bad = good.to_vec();
        bad[offset] ^= 1;
        assert_eq!(decode(&bad), Err(DecodeError::Invalid(field)), "{name}: {field}");
    }
}

#[test]
fn public_key_decoder_rejects_malformed_input() {
    let f = fixture();
    let good = f.pk_a.to_bytes();
    check_decoder("public key", &good, &|b| LatticePublicKey::from_bytes(b).map(|_| ()));
    let mut bad = good.clone();
    bad[11] = 31;
    assert_eq!(LatticePublicKey::from_bytes(&bad).unwrap_err(), DecodeError::Invalid("lattice noise bound"));
    // Another type's blob is refused by its magic.
    assert_eq!(LatticePublicKey::from_bytes(&f.re.to_bytes()).unwrap_err(), DecodeError::WrongMagic);
}

fn check_compressed(name: &str, good: &[u8], decode: &dyn Fn(&[u8]) -> Result<(), DecodeError>) {
    check_decoder(name, good, decode);
    let mut bad = good.to_vec();
    bad[11] ^= 1;
    assert_eq!(decode(&bad), Err(DecodeError::Invalid("lattice compressed modulus")), "{name}");
    let mut bad = good.to_vec();
    bad[13] ^= 1;
    assert_eq!(decode(&bad), Err(DecodeError::Invalid("lattice body count")), "{name}");
    let mut bad = good.to_vec();
    bad[17] ^= 1;
    assert_eq!(decode(&bad), Err(DecodeError::Invalid("lattice packed word count")), "{name}");
    let mut bad = good.to_vec();
    bad[14] = 0xff;
    assert_eq!(decode(&bad), Err(DecodeError::Invalid("lattice packed word count")), "{name}");
}

#[test]
fn ciphertext_decoders_reject_malformed_input() {
    let f = fixture();
    check_compressed("stored capsule", &f.ct.to_bytes(), &|b| LatticeCiphertext::from_bytes(b).map(|_| ()));
    check_compressed("delivered capsule", &f.re.to_bytes(), &|b| {
        LatticeReencryptedCiphertext::from_bytes(b).map(|_| ())
    });
    // A stored capsule is not a delivered one, and vice versa.
    assert_eq!(LatticeCiphertext::from_bytes(&f.re.to_bytes()).unwrap_err(), DecodeError::WrongMagic);
    assert!(matches!(
        LatticeReencryptedCiphertext::from_bytes(&f.ct.to_bytes()),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn rekey_decoder_rejects_malformed_input() {
    let f = fixture();
    let good = f.rekey.to_bytes();
    check_decoder("re-encryption key", &good, &|b| LatticeReencryptionKey::from_bytes(b).map(|_| ()));
    let mut bad = good.clone();
    bad[11] = 9;
    assert_eq!(
        LatticeReencryptionKey::from_bytes(&bad).unwrap_err(),
        DecodeError::Invalid("lattice decomposition base")
    );
    let mut bad = good.clone();
    bad[12] = 16;
    assert_eq!(
        LatticeReencryptionKey::from_bytes(&bad).unwrap_err(),
        DecodeError::Invalid("lattice decomposition levels")
    );
    // The embedded public key is checked too.
    let mut bad = good.clone();
    bad[13 + 4] = 9;
    assert_eq!(
        LatticeReencryptionKey::from_bytes(&bad).unwrap_err(),
        DecodeError::UnsupportedVersion { found: 9 }
    );
    // Random bytes of the exact length never panic.
    let mut noise = vec![0u8; good.len()];
    rng(30).fill_bytes(&mut noise);
    assert!(LatticeReencryptionKey::from_bytes(&noise).is_err());
}

#[test]
fn random_bytes_never_panic_any_decoder() {
    let mut rng = rng(40);
    for len in
        [0usize, 1, 4, 5, 17, 100, LATTICE_REENCRYPTED_LEN, LATTICE_CIPHERTEXT_LEN, LATTICE_PUBLIC_KEY_LEN]
    {
        let mut b = vec![0u8; len];
        rng.fill_bytes(&mut b);
        assert!(LatticePublicKey::from_bytes(&b).is_err());
        assert!(LatticeCiphertext::from_bytes(&b).is_err());
        assert!(LatticeReencryptedCiphertext::from_bytes(&b).is_err());
        assert!(LatticeReencryptionKey::from_bytes(&b).is_err());
    }
}

#[test]
fn secret_types_print_redacted() {
    let f = fixture();
    assert_eq!(format!("{:?}", f.sk_a), "LatticeSecretKey(..)");
    assert_eq!(format!("{:?}", f.rekey), "LatticeReencryptionKey(..)");
    assert_eq!(format!("{:?}", f.ct), "LatticeCiphertext(..)");
}

#[test]
fn tfhe_reference_reencryption_gives_the_same_bytes() {
    let f = fixture();
    let a = reencrypt_lattice_share(&mut rng(50), &f.rekey, &f.ct);
    let b = reencrypt_lattice_share_with(&mut rng(50), &f.rekey, &f.ct, Backend::Reference);
    assert_eq!(a.to_bytes(), b.to_bytes());
    assert_eq!(*decrypt_reencrypted_lattice_share(&f.sk_b, &b), f.share);
}
