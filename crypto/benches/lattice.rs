//! Lattice PRE figures:
//! `cargo bench -p medrelay-crypto --features bench-internals --bench lattice`.
//! Prints the median time of each operation (one thread) and the sizes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use medrelay_crypto::lattice::bench_internals::*;
use medrelay_crypto::lattice::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn median<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let share = [7u8; 32];
    let keygen = median(9, || generate_lattice_keypair(&[1; 32]));
    let (sk_a, pk_a) = generate_lattice_keypair(&[1; 32]);
    let (sk_b, pk_b) = generate_lattice_keypair(&[2; 32]);
    let _ = encrypt_lattice_share(&mut rng, &pk_a, &share); // caches pk NTT
    let _ = encrypt_lattice_share(&mut rng, &pk_b, &share);
    let encrypt = median(21, || encrypt_lattice_share(&mut rng, &pk_a, &share));
    let ct = encrypt_lattice_share(&mut rng, &pk_a, &share);
    let decrypt = median(21, || decrypt_lattice_share(&sk_a, &ct));
    let rekey_gen = median(9, || generate_lattice_reencryption_key(&mut rng, &sk_a, &pk_b));
    let mut preps: Vec<Duration> = (0..9)
        .map(|_| {
            let rk = generate_lattice_reencryption_key(&mut rng, &sk_a, &pk_b);
            let t = Instant::now();
            rk.prepare();
            t.elapsed()
        })
        .collect();
    preps.sort();
    let rekey = generate_lattice_reencryption_key(&mut rng, &sk_a, &pk_b);
    rekey.prepare();
    let reencrypt = median(21, || reencrypt_lattice_share(&mut rng, &rekey, &ct));
    let reference = median(3, || reencrypt_lattice_share_tfhe_reference(&mut rng, &rekey, &ct));
    let re = reencrypt_lattice_share(&mut rng, &rekey, &ct);
    let mut r1 = ChaCha20Rng::seed_from_u64(99);
    let mut r2 = ChaCha20Rng::seed_from_u64(99);
    assert_eq!(
        reencrypt_lattice_share(&mut r1, &rekey, &ct).to_bytes(),
        reencrypt_lattice_share_tfhe_reference(&mut r2, &rekey, &ct).to_bytes(),
        "NTT and tfhe reference re-encryptions differ"
    );
    let decrypt_re = median(21, || decrypt_reencrypted_lattice_share(&sk_b, &re));
    let rk_bytes = rekey.to_bytes();
    let rk_decode = median(5, || LatticeReencryptionKey::from_bytes(&rk_bytes).unwrap());

    println!("lattice PRE (N=4096, q=2^128, exact NTT products, one thread, median)");
    println!("  keygen                      {:8.2} ms", ms(keygen));
    println!("  encrypt share               {:8.2} ms", ms(encrypt));
    println!("  decrypt share               {:8.2} ms", ms(decrypt));
    println!("  rekey generation            {:8.2} ms", ms(rekey_gen));
    println!("  rekey NTT preparation       {:8.2} ms (once per key)", ms(preps[preps.len() / 2]));
    println!("  rekey decode                {:8.2} ms", ms(rk_decode));
    println!("  re-encrypt (NTT)            {:8.2} ms", ms(reencrypt));
    println!(
        "  re-encrypt (tfhe reference) {:8.2} ms ({:.1}x the NTT path, same bytes)",
        ms(reference),
        reference.as_secs_f64() / reencrypt.as_secs_f64()
    );
    println!("  decrypt re-encrypted        {:8.2} ms", ms(decrypt_re));
    println!(
        "  sizes: public key {} B, stored capsule {} B, delivered capsule {} B, re-encryption key {} B",
        pk_a.to_bytes().len(),
        ct.to_bytes().len(),
        re.to_bytes().len(),
        rk_bytes.len()
    );
}
