//! Lattice key pairs: a binary GLWE secret key and a seeded public key.

use std::sync::OnceLock;

use hkdf::Hkdf;
use sha2::Sha256;
use tfhe::core_crypto::commons::generators::DeterministicSeeder;
use tfhe::core_crypto::commons::math::random::{CompressionSeed, DefaultRandomGenerator, Seed};
use tfhe::core_crypto::prelude::{
    allocate_and_generate_new_binary_glwe_secret_key, encrypt_seeded_glwe_ciphertext, GlweCiphertextOwned,
    GlweSecretKey, PlaintextCount, PlaintextList, SecretRandomGenerator, SeededGlweCiphertext,
};
use zeroize::{Zeroize, Zeroizing};

use super::ntt::NttPoly;
use super::params::{self, POLYNOMIAL_SIZE};
use crate::domain::HKDF_LATTICE_KEYGEN;

/// A lattice secret key: a binary GLWE secret (N = 4096, k = 1).
///
/// tfhe's `GlweSecretKey` derives `Debug` and `Serialize` and zeroizes
/// nothing, so the coefficients live here in a boxed, zeroize-on-drop buffer
/// and a tfhe view is built only for the duration of an operation. `Debug`
/// prints `LatticeSecretKey(..)`.
pub struct LatticeSecretKey {
    coeffs: Box<Zeroizing<Vec<u128>>>,
}

impl std::fmt::Debug for LatticeSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LatticeSecretKey(..)")
    }
}

impl zeroize::ZeroizeOnDrop for LatticeSecretKey {}

impl LatticeSecretKey {
    /// The binary coefficients of the secret polynomial.
    pub(crate) fn coeffs(&self) -> &[u128] {
        &self.coeffs
    }

    /// A tfhe view of the key, for tfhe algorithms (reference paths, tests).
    pub(crate) fn as_tfhe(&self) -> GlweSecretKey<&[u128]> {
        GlweSecretKey::from_container(&self.coeffs[..], params::polynomial_size())
    }
}

/// A lattice public key: a seeded GLWE encryption of zero `(a, b = a·s + e)`
/// under the secret key; only the body and the 128-bit mask seed are stored.
///
/// The expanded mask is regenerated on construction and the NTT form of
/// `(a, b)` is computed once, on first use.
pub struct LatticePublicKey(Box<PublicKeyInner>);

struct PublicKeyInner {
    mask_seed: u128,
    /// The expanded GLWE ciphertext `(a, b)`.
    glwe: GlweCiphertextOwned<u128>,
    /// NTT forms of `a` and `b`, computed once.
    ntt: OnceLock<(NttPoly, NttPoly)>,
}

impl std::fmt::Debug for LatticePublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LatticePublicKey(..)")
    }
}

impl Clone for LatticePublicKey {
    fn clone(&self) -> Self {
        Self(Box::new(PublicKeyInner {
            mask_seed: self.0.mask_seed,
            glwe: self.0.glwe.clone(),
            ntt: self.0.ntt.clone(),
        }))
    }
}

impl PartialEq for LatticePublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.mask_seed == other.0.mask_seed && self.body() == other.body()
    }
}
impl Eq for LatticePublicKey {}

impl LatticePublicKey {
    /// Rebuilds a public key from its stored form (mask seed and body).
    pub(crate) fn from_seeded_parts(mask_seed: u128, body: Vec<u128>) -> Self {
        debug_assert_eq!(body.len(), POLYNOMIAL_SIZE);
        let seeded = SeededGlweCiphertext::from_container(
            body,
            params::glwe_size(),
            CompressionSeed::from(Seed(mask_seed)),
            params::ciphertext_modulus(),
        );
        let glwe = seeded.decompress_into_glwe_ciphertext();
        Self(Box::new(PublicKeyInner { mask_seed, glwe, ntt: OnceLock::new() }))
    }

    pub(crate) fn mask_seed(&self) -> u128 {
        self.0.mask_seed
    }

    /// The mask polynomial `a`.
    pub(crate) fn mask(&self) -> &[u128] {
        &self.0.glwe.as_ref()[..POLYNOMIAL_SIZE]
    }

    /// The body polynomial `b = a·s + e`.
    pub(crate) fn body(&self) -> &[u128] {
        &self.0.glwe.as_ref()[POLYNOMIAL_SIZE..]
    }

    /// NTT forms of `(a, b)`, computed on first use.
    pub(crate) fn ntt(&self) -> &(NttPoly, NttPoly) {
        self.0.ntt.get_or_init(|| (NttPoly::forward(self.mask()), NttPoly::forward(self.body())))
    }
}

/// Derives a lattice key pair deterministically from a 32-byte seed.
///
/// HKDF-SHA256 (info `medrelay/v1/hkdf/lattice-keygen`) expands the seed into
/// three tfhe seeds: the secret-key generator, the public-key mask seed and
/// the public-key noise seeder.
pub fn generate_lattice_keypair(seed: &[u8; 32]) -> (LatticeSecretKey, LatticePublicKey) {
    let mut okm = Zeroizing::new([0u8; 48]);
    let hk = Hkdf::<Sha256>::new(None, seed);
    // 48 bytes is far below HKDF-SHA256's 255 * 32 byte limit, so this cannot fail.
    if hk.expand(HKDF_LATTICE_KEYGEN, &mut okm[..]).is_err() {
        unreachable!("HKDF-SHA256 output of 48 bytes is always valid");
    }
    let word = |i: usize| {
        let mut b = [0u8; 16];
        b.copy_from_slice(&okm[16 * i..16 * (i + 1)]);
        let v = u128::from_le_bytes(b);
        b.zeroize();
        v
    };
    let (sk_seed, mask_seed, noise_seed) = (word(0), word(1), word(2));

    let mut secret_generator = SecretRandomGenerator::<DefaultRandomGenerator>::new(Seed(sk_seed));
    let tfhe_sk: tfhe::core_crypto::prelude::GlweSecretKeyOwned<u128> =
        allocate_and_generate_new_binary_glwe_secret_key(
            params::glwe_dimension(),
            params::polynomial_size(),
            &mut secret_generator,
        );
    let sk = LatticeSecretKey { coeffs: Box::new(Zeroizing::new(tfhe_sk.into_container())) };

    let mut seeded = SeededGlweCiphertext::new(
        0u128,
        params::glwe_size(),
        params::polynomial_size(),
        CompressionSeed::from(Seed(mask_seed)),
        params::ciphertext_modulus(),
    );
    let zeros = PlaintextList::new(0u128, PlaintextCount(POLYNOMIAL_SIZE));
    let mut noise_seeder = DeterministicSeeder::<DefaultRandomGenerator>::new(Seed(noise_seed));
    encrypt_seeded_glwe_ciphertext(&sk.as_tfhe(), &mut seeded, &zeros, params::noise(), &mut noise_seeder);
    let pk = LatticePublicKey::from_seeded_parts(mask_seed, seeded.into_container());
    (sk, pk)
}
