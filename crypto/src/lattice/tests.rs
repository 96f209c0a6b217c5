//! Internal tests: NTT vs tfhe reference bit-exactness, the re-encryption
//! key layout against tfhe's own key-switching key, noise measurements and
//! the decryption-failure trials.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tfhe::core_crypto::commons::generators::DeterministicSeeder;
use tfhe::core_crypto::commons::math::random::{DefaultRandomGenerator, Seed};
use tfhe::core_crypto::prelude::{
    decrypt_glwe_ciphertext, generate_glwe_keyswitch_key, keyswitch_glwe_ciphertext,
    polynomial_algorithms::polynomial_wrapping_mul, EncryptionRandomGenerator, GlweCiphertextOwned,
    LweDimension, PlaintextCount, PlaintextList, Polynomial,
};

use super::encrypt::{encode_share, encrypt_share_glwe, phase, Backend};
use super::keys::{generate_lattice_keypair, LatticeSecretKey};
use super::ntt::{polynomial_mul, NttPoly};
use super::params::{self, DECRYPTION_THRESHOLD_LOG2, MESSAGE_COEFFS, POLYNOMIAL_SIZE};
use super::reencrypt::{compress_delivered, keyswitch, reencrypt_glwe, reencrypt_lattice_share};
use super::rekey::{generate_reencryption_key_with_backend, new_ksk};
use super::*;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn random_poly(rng: &mut ChaCha20Rng) -> Vec<u128> {
    (0..POLYNOMIAL_SIZE).map(|_| (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64())).collect()
}

fn random_share(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut s = [0u8; 32];
    rng.fill_bytes(&mut s);
    s
}

fn reference_mul(lhs: &[u128], rhs: &[u128]) -> Vec<u128> {
    let mut out = vec![0u128; POLYNOMIAL_SIZE];
    polynomial_wrapping_mul(
        &mut Polynomial::from_container(&mut out[..]),
        &Polynomial::from_container(lhs),
        &Polynomial::from_container(rhs),
    );
    out
}

/// The full phase (all N coefficients) computed by tfhe's own decryption,
/// independent of this module's NTT code.
fn tfhe_phase(sk: &LatticeSecretKey, ct: &GlweCiphertextOwned<u128>) -> Vec<u128> {
    let mut out = PlaintextList::new(0u128, PlaintextCount(POLYNOMIAL_SIZE));
    decrypt_glwe_ciphertext(&sk.as_tfhe(), ct, &mut out);
    out.into_container()
}

/// |noise| of a phase coefficient against the expected plaintext, as f64 log2.
fn noise_abs(phase: u128, expected: u128) -> u128 {
    (phase.wrapping_sub(expected) as i128).unsigned_abs()
}

fn log2(x: u128) -> f64 {
    (x as f64).log2()
}

/// Tracks the worst |noise| and the second moment over many coefficients.
#[derive(Default)]
struct NoiseStats {
    max: u128,
    sum_sq: f64,
    count: u64,
}

impl NoiseStats {
    fn add(&mut self, phase: &[u128], expected: &[u128]) {
        for (p, e) in phase.iter().zip(expected) {
            let n = noise_abs(*p, *e);
            self.max = self.max.max(n);
            let f = n as f64;
            self.sum_sq += f * f;
            self.count += 1;
        }
    }
    fn log2_sigma(&self) -> f64 {
        (self.sum_sq / self.count as f64).sqrt().log2()
    }
    fn log2_max(&self) -> f64 {
        log2(self.max)
    }
}

#[test]
fn security_formula_gives_the_noise_bound_we_use() {
    use tfhe::core_crypto::commons::noise_formulas::secure_noise::minimal_lwe_bound_for_132_bits_security_tuniform;
    let bound = minimal_lwe_bound_for_132_bits_security_tuniform(
        LweDimension(params::GLWE_DIMENSION * POLYNOMIAL_SIZE),
        2f64.powi(128),
    );
    println!("minimal_lwe_bound_for_132_bits_security_tuniform(4096, 2^128) = {bound}");
    assert_eq!(bound, 30);
    assert!(params::NOISE_BOUND_LOG2 >= bound);
}

#[test]
fn ntt_products_are_bit_exact_with_tfhe() {
    let mut rng = rng(1);
    let a = random_poly(&mut rng);
    assert_eq!(NttPoly::forward(&a).residues(), NttPoly::forward_plan32(&a).residues());
    let extremes: Vec<u128> = (0..POLYNOMIAL_SIZE as u128).map(|i| u128::MAX - i).collect();
    assert_eq!(NttPoly::forward(&extremes).residues(), NttPoly::forward_plan32(&extremes).residues());
    for _ in 0..3 {
        let a = random_poly(&mut rng);
        let b = random_poly(&mut rng);
        let mut out = vec![0u128; POLYNOMIAL_SIZE];
        polynomial_mul(&mut out, &NttPoly::forward(&a), &NttPoly::forward(&b));
        assert_eq!(out, reference_mul(&a, &b));
    }
    // Small signed operands (gadget digits, binary secrets) take the fast
    // residue path; extreme values included.
    let a = random_poly(&mut rng);
    let mut small: Vec<u128> =
        (0..POLYNOMIAL_SIZE).map(|_| ((rng.next_u32() % 257) as i128 - 128) as u128).collect();
    small[0] = (-(1i128 << 31)) as u128;
    small[1] = ((1i128 << 31) - 1) as u128;
    let mut out = vec![0u128; POLYNOMIAL_SIZE];
    polynomial_mul(&mut out, &NttPoly::forward(&a), &NttPoly::forward_small(&small));
    assert_eq!(out, reference_mul(&a, &small));
    // Out of the small range: falls back to the general transform.
    small[2] = 1u128 << 40;
    polynomial_mul(&mut out, &NttPoly::forward(&a), &NttPoly::forward_small(&small));
    assert_eq!(out, reference_mul(&a, &small));
}

#[test]
fn encryption_rekey_and_reencryption_are_bit_exact_across_backends() {
    let (sk_a, pk_a) = generate_lattice_keypair(&[1; 32]);
    let (sk_b, pk_b) = generate_lattice_keypair(&[2; 32]);
    let share = random_share(&mut rng(3));

    let ct_ntt = encrypt_share_glwe(&mut rng(4), &pk_a, &share, Backend::Ntt);
    let ct_ref = encrypt_share_glwe(&mut rng(4), &pk_a, &share, Backend::Reference);
    assert_eq!(ct_ntt.as_ref(), ct_ref.as_ref());

    let rk_ntt =
        generate_reencryption_key_with_backend(&mut rng(5), &sk_a, &pk_b, params::noise(), Backend::Ntt);
    let rk_ref = generate_reencryption_key_with_backend(
        &mut rng(5),
        &sk_a,
        &pk_b,
        params::noise(),
        Backend::Reference,
    );
    assert!(rk_ntt == rk_ref);

    let ks_ntt = keyswitch(&rk_ntt, &ct_ntt, Backend::Ntt);
    let ks_ref = keyswitch(&rk_ntt, &ct_ntt, Backend::Reference);
    assert_eq!(ks_ntt.as_ref(), ks_ref.as_ref());

    let re_ntt = reencrypt_glwe(&mut rng(6), &rk_ntt, &ct_ntt, Backend::Ntt);
    let re_ref = reencrypt_glwe(&mut rng(6), &rk_ntt, &ct_ntt, Backend::Reference);
    assert_eq!(re_ntt.as_ref(), re_ref.as_ref());
    assert_eq!(*super::encrypt::decode_share(&phase(&sk_b, &re_ntt)), share);
    // Body coefficients beyond 255 are zeroed after flooding.
    assert!(re_ntt.as_ref()[POLYNOMIAL_SIZE + MESSAGE_COEFFS..].iter().all(|&c| c == 0));
    // Our phase agrees with tfhe's own decryption.
    assert_eq!(&phase(&sk_a, &ct_ntt)[..], &tfhe_phase(&sk_a, &ct_ntt)[..MESSAGE_COEFFS]);
}

#[test]
fn rekey_layout_matches_tfhe_secret_key_ksk() {
    let (sk_a, _pk_a) = generate_lattice_keypair(&[11; 32]);
    let (sk_b, pk_b) = generate_lattice_keypair(&[12; 32]);
    let ours = generate_lattice_reencryption_key(&mut rng(13), &sk_a, &pk_b);

    let mut theirs = new_ksk();
    let mut seeder = DeterministicSeeder::<DefaultRandomGenerator>::new(Seed(14));
    let mut generator = EncryptionRandomGenerator::<DefaultRandomGenerator>::new(Seed(15), &mut seeder);
    generate_glwe_keyswitch_key(
        &sk_a.as_tfhe(),
        &sk_b.as_tfhe(),
        &mut theirs,
        params::noise(),
        &mut generator,
    );

    // Same shape, entry by entry: each of our entries decrypts under s_B to
    // the same plaintext as tfhe's entry at the same index, up to small noise.
    assert_eq!(ours.ksk().as_ref().len(), theirs.as_ref().len());
    assert_eq!(ours.ksk().decomposition_base_log(), theirs.decomposition_base_log());
    assert_eq!(ours.ksk().decomposition_level_count(), theirs.decomposition_level_count());
    for (j, (a, b)) in ours
        .ksk()
        .as_ref()
        .chunks_exact(2 * POLYNOMIAL_SIZE)
        .zip(theirs.as_ref().chunks_exact(2 * POLYNOMIAL_SIZE))
        .enumerate()
    {
        let pa = tfhe_phase(
            &sk_b,
            &GlweCiphertextOwned::from_container(
                a.to_vec(),
                params::polynomial_size(),
                params::ciphertext_modulus(),
            ),
        );
        let pb = tfhe_phase(
            &sk_b,
            &GlweCiphertextOwned::from_container(
                b.to_vec(),
                params::polynomial_size(),
                params::ciphertext_modulus(),
            ),
        );
        let worst = pa.iter().zip(&pb).map(|(x, y)| noise_abs(*x, *y)).max().unwrap();
        assert!(worst < 1u128 << 45, "entry {j}: phases differ by 2^{:.1}", log2(worst));
        // And that plaintext is s_A · 2^(128 − 8·l) with l = L − j.
        let shift = 128 - 8 * (params::DECOMP_LEVEL_COUNT - j);
        let expected: Vec<u128> = sk_a.coeffs().iter().map(|s| s << shift).collect();
        let worst = pa.iter().zip(&expected).map(|(x, y)| noise_abs(*x, *y)).max().unwrap();
        assert!(worst < 1u128 << 44, "entry {j}: plaintext off by 2^{:.1}", log2(worst));
    }

    // Key switching a real capsule with either key gives the same share.
    let share = random_share(&mut rng(16));
    let ct = LatticeCiphertext::from_bytes(&encrypt_lattice_share(&mut rng(17), &_pk_a, &share).to_bytes())
        .unwrap();
    let input = ct.0.extract();
    let ks_ours = keyswitch(&ours, &input, Backend::Ntt);
    let mut ks_theirs = GlweCiphertextOwned::new(
        0u128,
        params::glwe_size(),
        params::polynomial_size(),
        params::ciphertext_modulus(),
    );
    keyswitch_glwe_ciphertext(&theirs, &input, &mut ks_theirs);
    assert_eq!(*super::encrypt::decode_share(&phase(&sk_b, &ks_ours)), share);
    assert_eq!(*super::encrypt::decode_share(&phase(&sk_b, &ks_theirs)), share);
}

/// Noise measurement backing the analysis in `crypto/docs/lattice-pre.md`:
/// fresh, stored (86-bit), after key switch, flooded, delivered (12-bit).
#[test]
fn noise_measurements_stay_within_the_analytic_bounds() {
    let (sk_a, pk_a) = generate_lattice_keypair(&[21; 32]);
    let (sk_b, pk_b) = generate_lattice_keypair(&[22; 32]);
    let mut rng = rng(23);
    let (mut fresh, mut stored, mut switched, mut flooded, mut delivered) = (
        NoiseStats::default(),
        NoiseStats::default(),
        NoiseStats::default(),
        NoiseStats::default(),
        NoiseStats::default(),
    );
    let rekeys = 4;
    let per_rekey = 10;
    for _ in 0..rekeys {
        let rekey = generate_lattice_reencryption_key(&mut rng, &sk_a, &pk_b);
        for _ in 0..per_rekey {
            let share = random_share(&mut rng);
            let expected = encode_share(&share);
            let glwe = encrypt_share_glwe(&mut rng, &pk_a, &share, Backend::Ntt);
            // Fresh noise over all N coefficients (tfhe decryption).
            fresh.add(&tfhe_phase(&sk_a, &glwe), &expected);
            let ct = super::encrypt::LatticeCiphertext(Box::new(
                tfhe::core_crypto::entities::compressed_modulus_switched_glwe_ciphertext::CompressedModulusSwitchedGlweCiphertext::compress(
                    &glwe,
                    params::stored_modulus_log(),
                    params::message_bodies(),
                ),
            ));
            let input = ct.0.extract();
            stored.add(&phase(&sk_a, &input), &expected);
            let ks = keyswitch(&rekey, &input, Backend::Ntt);
            switched.add(&phase(&sk_b, &ks), &expected);
            let re = reencrypt_glwe(&mut rng, &rekey, &input, Backend::Ntt);
            flooded.add(&phase(&sk_b, &re), &expected);
            delivered.add(&phase(&sk_b, &compress_delivered(&re).0.extract()), &expected);
        }
    }
    for (name, s) in [
        ("fresh", &fresh),
        ("stored (86-bit)", &stored),
        ("after key switch", &switched),
        ("flooded", &flooded),
        ("delivered (12-bit)", &delivered),
    ] {
        println!(
            "noise {name:>20}: log2 sigma {:6.2}, worst log2 |e| {:6.2} over {} coefficients (threshold {DECRYPTION_THRESHOLD_LOG2})",
            s.log2_sigma(),
            s.log2_max(),
            s.count
        );
    }
    // Worst-case bounds (see the doc): fresh <= 2*4096*2^30 + 2^30 < 2^43.1;
    // stored adds the 86-bit rounding <= 2^41 + 4096*2^41 < 2^53.1; the key
    // switch adds <= 12*4096*128*2^43.1 < 2^66.7; the flood adds <= 2^125
    // plus a fresh mask term <= 2^43.1.
    assert!(fresh.max < (1u128 << 43) + (1u128 << 40));
    assert!(stored.max < 1u128 << 54);
    assert!(switched.max < 1u128 << 67);
    assert!(flooded.max < (1u128 << 125) + (1u128 << 68));
    assert!(delivered.max < 1u128 << DECRYPTION_THRESHOLD_LOG2);
    // The measured standard deviations match the analysis to within a bit.
    assert!((fresh.log2_sigma() - 35.2).abs() < 1.0, "fresh sigma {}", fresh.log2_sigma());
    assert!((switched.log2_sigma() - 49.2).abs() < 1.0, "switched sigma {}", switched.log2_sigma());
    assert!((flooded.log2_sigma() - 124.2).abs() < 0.5, "flooded sigma {}", flooded.log2_sigma());
}

/// 100 re-encryption keys x 100 capsules = 10,000 encrypt → re-encrypt →
/// decrypt trials through the public API and the wire encodings, with zero
/// failures allowed; prints the worst delivered noise against the threshold.
/// Runs on two threads (about a minute in `cargo test --release` on 2 cores).
#[test]
fn ten_thousand_reencryptions_never_fail() {
    const REKEYS: u64 = 100;
    const PER_REKEY: u64 = 100;
    let (sk_a, pk_a) = generate_lattice_keypair(&[31; 32]);
    let (sk_b, pk_b) = generate_lattice_keypair(&[32; 32]);
    let run = |thread: u64| {
        let mut failures = 0u64;
        let mut worst = 0u128;
        let mut trials = 0u64;
        for k in (thread..REKEYS).step_by(2) {
            let mut rng = rng(1000 + k);
            let rekey = generate_lattice_reencryption_key(&mut rng, &sk_a, &pk_b);
            for _ in 0..PER_REKEY {
                let share = random_share(&mut rng);
                let ct = encrypt_lattice_share(&mut rng, &pk_a, &share);
                let ct = LatticeCiphertext::from_bytes(&ct.to_bytes()).unwrap();
                let re = reencrypt_lattice_share(&mut rng, &rekey, &ct);
                let re = LatticeReencryptedCiphertext::from_bytes(&re.to_bytes()).unwrap();
                // decrypt_reencrypted_lattice_share is decode_share(phase(..));
                // compute the phase once to measure the noise as well.
                let ph = phase(&sk_b, &re.0.extract());
                let expected = encode_share(&share);
                for (p, e) in ph.iter().zip(expected.iter()) {
                    worst = worst.max(noise_abs(*p, *e));
                }
                let decrypted = super::encrypt::decode_share(&ph);
                if trials.is_multiple_of(PER_REKEY) {
                    assert_eq!(*decrypted, *decrypt_reencrypted_lattice_share(&sk_b, &re));
                }
                if *decrypted != share {
                    failures += 1;
                }
                trials += 1;
            }
        }
        (failures, worst, trials)
    };
    let ((f0, w0, t0), (f1, w1, t1)) = std::thread::scope(|s| {
        let h = s.spawn(|| run(1));
        let r0 = run(0);
        (r0, h.join().unwrap())
    });
    let (failures, worst, trials) = (f0 + f1, w0.max(w1), t0 + t1);
    println!(
        "{trials} re-encryptions: {failures} decryption failures; worst delivered noise log2 |e| = {:.3} (threshold {DECRYPTION_THRESHOLD_LOG2}, flood bound 125)",
        log2(worst)
    );
    assert_eq!(trials, REKEYS * PER_REKEY);
    assert_eq!(failures, 0);
    assert!(worst < 1u128 << DECRYPTION_THRESHOLD_LOG2);
}

#[test]
fn secret_key_debug_is_redacted() {
    let (sk, pk) = generate_lattice_keypair(&[9; 32]);
    assert_eq!(format!("{sk:?}"), "LatticeSecretKey(..)");
    assert_eq!(format!("{pk:?}"), "LatticePublicKey(..)");
    // Binary secret with roughly half the coefficients set.
    let ones = sk.coeffs().iter().filter(|&&c| c == 1).count();
    assert!(sk.coeffs().iter().all(|&c| c <= 1));
    assert!((1800..2300).contains(&ones), "{ones} ones");
}

/// A stored capsule crafted by an attacker: body 0, mask `q/2 · X^shift`.
/// Its phase under a key `s` is `q/2 · X^shift · s`, so its re-encryption
/// carries 256 coefficients of `s` as the delivered "share" bits.
pub(crate) fn crafted_ciphertext(shift: usize) -> LatticeCiphertext {
    let mut glwe = GlweCiphertextOwned::new(
        0u128,
        params::glwe_size(),
        params::polynomial_size(),
        params::ciphertext_modulus(),
    );
    glwe.as_mut()[shift % POLYNOMIAL_SIZE] = 1u128 << 127;
    LatticeCiphertext(Box::new(
        tfhe::core_crypto::entities::compressed_modulus_switched_glwe_ciphertext::CompressedModulusSwitchedGlweCiphertext::compress(
            &glwe,
            params::stored_modulus_log(),
            params::message_bodies(),
        ),
    ))
}

/// The 16 shifts whose crafted capsules reveal coefficients `256·m ..
/// 256·m + 255` of the delegator's key, `m = 0..16`.
pub(crate) fn attack_shifts() -> impl Iterator<Item = usize> {
    (0..POLYNOMIAL_SIZE / MESSAGE_COEFFS).map(|m| (POLYNOMIAL_SIZE - m * MESSAGE_COEFFS) % POLYNOMIAL_SIZE)
}

/// The delegator's binary secret read back from the 16 delivered shares.
pub(crate) fn recover_secret(shares: &[[u8; 32]]) -> Vec<u128> {
    let mut s = vec![0u128; POLYNOMIAL_SIZE];
    for (m, share) in shares.iter().enumerate() {
        for i in 0..MESSAGE_COEFFS {
            s[m * MESSAGE_COEFFS + i] = u128::from((share[i / 8] >> (i % 8)) & 1);
        }
    }
    s
}

/// Why re-encryption is crate-private and the hybrid API re-encrypts only
/// capsules signed by the key's own delegator (review finding F1): whoever
/// gets 16 crafted capsules re-encrypted under a victim's key and can read
/// the results (the delegate, or anyone colluding with it) recovers the
/// victim's whole lattice secret key. `crate::pre`'s tests show the same
/// capsules refused by `reencrypt_capsule`.
#[test]
fn sixteen_crafted_capsules_recover_the_whole_lattice_key_from_the_raw_oracle() {
    let mut rng = rng(77);
    let (victim_sk, _) = generate_lattice_keypair(&[41; 32]);
    let (doctor_sk, doctor_pk) = generate_lattice_keypair(&[42; 32]);
    let rekey = generate_lattice_reencryption_key(&mut rng, &victim_sk, &doctor_pk);
    let shares: Vec<[u8; 32]> = attack_shifts()
        .map(|shift| {
            let delivered = reencrypt_lattice_share(&mut rng, &rekey, &crafted_ciphertext(shift));
            *decrypt_reencrypted_lattice_share(&doctor_sk, &delivered)
        })
        .collect();
    assert_eq!(shares.len(), 16);
    assert_eq!(recover_secret(&shares), victim_sk.coeffs());
}
