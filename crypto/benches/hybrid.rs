//! Hybrid PRE figures, printed in one run next to the raw primitives.
//!
//! Run: `cargo bench -p medrelay-crypto --bench hybrid`
//! (set `BENCH_SECONDS` to change the time spent per operation; default 1).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use medrelay_crypto::lattice;
use medrelay_crypto::{
    decrypt_batch_key_as_delegate, decrypt_record, encrypt_record, generate_batch, generate_reencryption_key,
    reencrypt_capsule, KeyClass, PatientSecretKeys, PreKeyPair, RecordCategory, RecordHeader, RecordId,
    SigningKey, Threshold, Timestamp,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

struct Timing {
    median: Duration,
    iterations: usize,
}

fn budget() -> Duration {
    let secs = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(1.0);
    Duration::from_secs_f64(secs)
}

/// Runs `f` once to warm up, then repeatedly for about `budget()` (at least
/// 5, at most 2000 runs) and reports the median.
fn measure(name: &str, mut f: impl FnMut()) -> Duration {
    f();
    let budget = budget();
    let mut samples = Vec::new();
    let start = Instant::now();
    while (start.elapsed() < budget || samples.len() < 5) && samples.len() < 2000 {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort();
    let t = Timing { median: samples[samples.len() / 2], iterations: samples.len() };
    println!("{name:<58} {:>12} (median of {})", fmt(t.median), t.iterations);
    t.median
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

fn size(name: &str, bytes: usize) {
    let human = if bytes >= 1 << 20 {
        format!("{:.2} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else if bytes >= 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    };
    println!("{name:<58} {human:>12} ({bytes} bytes)");
}

fn main() {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    println!("medrelay-crypto hybrid PRE benchmark (single thread)\n");
    println!("== hybrid (medrelay-crypto) ==");

    let signing = SigningKey::generate(&mut rng);
    measure("key generation: patient (master -> 8 class public keys)", || {
        let keys = PatientSecretKeys::generate(&mut rng.clone());
        black_box(keys.public_keys());
    });
    measure("key generation: one hybrid PRE key pair (doctor)", || {
        black_box(PreKeyPair::generate(&mut rng.clone()));
    });
    let patient = PatientSecretKeys::generate(&mut rng);
    let public = patient.public_keys();
    let doctor = PreKeyPair::generate(&mut rng);
    let vk = signing.verifying_key();

    let header = |rng: &mut ChaCha20Rng| {
        RecordHeader::new(
            RecordId::random(rng),
            signing.principal_id(),
            RecordCategory::new("Observation", ["laboratory".to_string()], []).unwrap(),
            "application/fhir+json",
            Timestamp(1_700_000_000),
        )
        .unwrap()
    };
    let kib = vec![0x5au8; 1024];
    let mib = vec![0xa5u8; 1 << 20];
    let mut r = rng.clone();
    measure("generate_batch (one signed hybrid capsule)", || {
        black_box(generate_batch(&mut r, &signing, &public, KeyClass::Laboratory).unwrap());
    });
    let batch = generate_batch(&mut rng, &signing, &public, KeyClass::Laboratory).unwrap();
    measure("encrypt_record 1 KiB (under a batch)", || {
        let h = header(&mut r);
        black_box(encrypt_record(&mut r, &signing, &batch, h, &kib).unwrap());
    });
    measure("encrypt_record 1 MiB (under a batch)", || {
        let h = header(&mut r);
        black_box(encrypt_record(&mut r, &signing, &batch, h, &mib).unwrap());
    });
    let h = header(&mut rng);
    let env_kib = encrypt_record(&mut rng, &signing, &batch, h, &kib).unwrap();
    let h = header(&mut rng);
    let env_mib = encrypt_record(&mut rng, &signing, &batch, h, &mib).unwrap();
    let batch_capsule = batch.capsule();

    measure("generate_reencryption_key (1-of-1)", || {
        black_box(generate_reencryption_key(
            &mut r,
            &patient,
            signing.principal_id(),
            KeyClass::Laboratory,
            doctor.public_key(),
            Threshold::ONE_OF_ONE,
        ));
    });
    let rekey_unverified = generate_reencryption_key(
        &mut rng,
        &patient,
        signing.principal_id(),
        KeyClass::Laboratory,
        doctor.public_key(),
        Threshold::ONE_OF_ONE,
    );
    let rekey_bytes = rekey_unverified.to_bytes();
    let t = Instant::now();
    let rekey = rekey_unverified.verify(&vk, &public, doctor.public_key()).map_err(|(e, _)| e).unwrap();
    println!("{:<58} {:>12} (once)", "ReencryptionKey::verify (server, on upload)", fmt(t.elapsed()));
    let t = Instant::now();
    black_box(reencrypt_capsule(&mut r, &rekey, &vk, batch_capsule).unwrap());
    println!("{:<58} {:>12} (once)", "reencrypt_capsule, first use of a key (NTT cache)", fmt(t.elapsed()));
    let hybrid_reenc = measure("reencrypt_capsule (one batch capsule, incl. owner signature)", || {
        black_box(reencrypt_capsule(&mut r, &rekey, &vk, batch_capsule).unwrap());
    });
    let rc = reencrypt_capsule(&mut rng, &rekey, &vk, batch_capsule).unwrap();
    measure("decrypt_batch_key_as_delegate (once per batch and grant)", || {
        black_box(
            decrypt_batch_key_as_delegate(
                doctor.secret_key(),
                &vk,
                &public,
                batch_capsule,
                &rc,
                Threshold::ONE_OF_ONE,
            )
            .unwrap(),
        );
    });
    let key = decrypt_batch_key_as_delegate(
        doctor.secret_key(),
        &vk,
        &public,
        batch_capsule,
        &rc,
        Threshold::ONE_OF_ONE,
    )
    .unwrap();
    let delegate_kib = measure("decrypt_record 1 KiB (batch key open)", || {
        black_box(decrypt_record(&key, &vk, &env_kib).unwrap());
    });
    let delegate_mib = measure("decrypt_record 1 MiB (batch key open)", || {
        black_box(decrypt_record(&key, &vk, &env_mib).unwrap());
    });

    println!("\n== halves alone ==");
    // Umbral half alone (raw umbral-pre, same curve operations as inside the hybrid).
    let a_sk = umbral_pre::SecretKey::random_with_rng(&mut rng);
    let b_sk = umbral_pre::SecretKey::random_with_rng(&mut rng);
    let signer = umbral_pre::Signer::new(umbral_pre::SecretKey::random_with_rng(&mut rng));
    let mut share = [0u8; 32];
    rng.fill_bytes(&mut share);
    measure("raw umbral-pre: encrypt 32-byte share", || {
        black_box(umbral_pre::encrypt_with_rng(&mut r, &a_sk.public_key(), &share).unwrap());
    });
    let (capsule, ct) = umbral_pre::encrypt_with_rng(&mut rng, &a_sk.public_key(), &share).unwrap();
    measure("raw umbral-pre: generate_kfrags 1-of-1", || {
        black_box(umbral_pre::generate_kfrags_with_rng(
            &mut r,
            &a_sk,
            &b_sk.public_key(),
            &signer,
            1,
            1,
            true,
            true,
        ));
    });
    let kfrags =
        umbral_pre::generate_kfrags_with_rng(&mut rng, &a_sk, &b_sk.public_key(), &signer, 1, 1, true, true);
    let raw_umbral = measure("raw umbral-pre: reencrypt (one cfrag)", || {
        black_box(umbral_pre::reencrypt_with_rng(&mut r, &capsule, kfrags[0].clone()));
    });
    let cfrag = umbral_pre::reencrypt_with_rng(&mut rng, &capsule, kfrags[0].clone()).unverify();
    measure("raw umbral-pre: verify cfrag + decrypt_reencrypted", || {
        let v = cfrag
            .clone()
            .verify(&capsule, &signer.verifying_key(), &a_sk.public_key(), &b_sk.public_key())
            .unwrap();
        black_box(umbral_pre::decrypt_reencrypted(&b_sk, &a_sk.public_key(), &capsule, [v], &ct).unwrap());
    });

    // Lattice half alone.
    let (la_sk, la_pk) = lattice::generate_lattice_keypair(&[1u8; 32]);
    let (lb_sk, lb_pk) = lattice::generate_lattice_keypair(&[2u8; 32]);
    measure("raw lattice: key pair from seed", || {
        black_box(lattice::generate_lattice_keypair(&[3u8; 32]));
    });
    measure("raw lattice: encrypt share", || {
        black_box(lattice::encrypt_lattice_share(&mut r, &la_pk, &share));
    });
    let lct = lattice::encrypt_lattice_share(&mut rng, &la_pk, &share);
    measure("raw lattice: decrypt share", || {
        black_box(lattice::decrypt_lattice_share(&la_sk, &lct));
    });
    measure("raw lattice: rekey generation", || {
        black_box(lattice::generate_lattice_reencryption_key(&mut r, &la_sk, &lb_pk));
    });
    let lrk = lattice::generate_lattice_reencryption_key(&mut rng, &la_sk, &lb_pk);
    // The raw key switch is crate-private (review finding F9); the hybrid
    // figure above includes it.
    black_box((&lrk, &lb_sk));

    println!("\n== raw symmetric baseline ==");
    let key = [7u8; 32];
    let cipher = Aes256Gcm::new(&key.into());
    let nonce = [9u8; 12];
    let mut buf = mib.clone();
    let tag = cipher.encrypt_in_place_detached(Nonce::from_slice(&nonce), b"aad", &mut buf).unwrap();
    let raw_sym = measure("raw AES-256-GCM decrypt + SHA-256, 1 MiB", || {
        let mut b = buf.clone();
        black_box(Sha256::digest(&buf));
        cipher.decrypt_in_place_detached(Nonce::from_slice(&nonce), b"aad", &mut b, &tag).unwrap();
        black_box(b);
    });

    println!("\n== ratios ==");
    let ratio = hybrid_reenc.as_secs_f64() / raw_umbral.as_secs_f64();
    println!("{:<58} {ratio:>12.2}", "hybrid capsule re-encrypt / raw Umbral re-encrypt");
    let ratio = hybrid_reenc.as_secs_f64() / delegate_kib.as_secs_f64();
    println!("{:<58} {ratio:>12.2}", "capsule re-encrypt / decrypt_record 1 KiB (records per capsule cost)");
    let ratio = delegate_mib.as_secs_f64() / raw_sym.as_secs_f64();
    println!("{:<58} {ratio:>12.2}", "delegate decrypt 1 MiB / raw AES-GCM+SHA-256 1 MiB");

    println!("\n== sizes ==");
    size("PRE public key (one class, or a doctor)", doctor.public_key().to_bytes().len());
    size("patient public keys (8 classes + verifying key)", public.to_bytes().len());
    size("signed batch capsule (stored, per batch and class)", batch_capsule.to_bytes().len());
    size("envelope overhead beyond the body", env_kib.to_bytes().len() - 1024);
    size("re-encryption key (1-of-1)", rekey_bytes.len());
    size("re-encrypted capsule (1-of-1, delivered once per grant)", rc.to_bytes().len());
}
