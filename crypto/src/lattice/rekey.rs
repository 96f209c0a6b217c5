//! Non-interactive re-encryption key generation: a tfhe `GlweKeyswitchKey`
//! whose entries are *public-key* encryptions under the delegatee's key.

use std::sync::OnceLock;

use rand_core::{CryptoRng, RngCore};
use tfhe::core_crypto::prelude::{GlweKeyswitchKeyOwned, TUniform};
use zeroize::Zeroizing;

use super::encrypt::{encrypt_glwe_with_public_key, operation_generator, Backend};
use super::keys::{LatticePublicKey, LatticeSecretKey};
use super::ntt::NttPoly;
use super::params::{self, DECOMP_BASE_LOG, DECOMP_LEVEL_COUNT, POLYNOMIAL_SIZE};

/// A lattice re-encryption key from A's secret toward B's public key: a
/// key-switching key of public-key encryptions under B, plus B's public key
/// (the proxy adds a flooded encryption of zero under it at re-encryption).
///
/// Layout as tfhe's `generate_glwe_keyswitch_key`: for the (single) mask
/// polynomial of A's key, `L = 12` GLWE ciphertexts stored for levels
/// `L, L−1, …, 1`, the one at level `l` encrypting `s_A · q / B^l` with
/// `B = 2^8`. The NTT form of every entry is computed once, on first use, and
/// cached (about 12 ms), so repeated re-encryptions are fast.
pub struct LatticeReencryptionKey(Box<RekeyInner>);

struct RekeyInner {
    ksk: GlweKeyswitchKeyOwned<u128>,
    delegatee: LatticePublicKey,
    /// Per stored level: NTT forms of the entry's mask and body.
    ntt: OnceLock<Vec<(NttPoly, NttPoly)>>,
}

impl std::fmt::Debug for LatticeReencryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LatticeReencryptionKey(..)")
    }
}

impl Clone for LatticeReencryptionKey {
    fn clone(&self) -> Self {
        Self(Box::new(RekeyInner {
            ksk: self.0.ksk.clone(),
            delegatee: self.0.delegatee.clone(),
            ntt: self.0.ntt.clone(),
        }))
    }
}

impl PartialEq for LatticeReencryptionKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.delegatee == other.0.delegatee && self.0.ksk.as_ref() == other.0.ksk.as_ref()
    }
}
impl Eq for LatticeReencryptionKey {}

/// An empty key-switching key with the fixed parameters.
pub(crate) fn new_ksk() -> GlweKeyswitchKeyOwned<u128> {
    GlweKeyswitchKeyOwned::new(
        0u128,
        params::decomp_base_log(),
        params::decomp_level_count(),
        params::glwe_dimension(),
        params::glwe_dimension(),
        params::polynomial_size(),
        params::ciphertext_modulus(),
    )
}

impl LatticeReencryptionKey {
    pub(crate) fn from_parts(ksk: GlweKeyswitchKeyOwned<u128>, delegatee: LatticePublicKey) -> Self {
        Self(Box::new(RekeyInner { ksk, delegatee, ntt: OnceLock::new() }))
    }

    pub(crate) fn ksk(&self) -> &GlweKeyswitchKeyOwned<u128> {
        &self.0.ksk
    }

    pub(crate) fn delegatee(&self) -> &LatticePublicKey {
        &self.0.delegatee
    }

    /// NTT forms of every entry, stored level order (L..1).
    pub(crate) fn ntt(&self) -> &[(NttPoly, NttPoly)] {
        self.0.ntt.get_or_init(|| {
            self.0
                .ksk
                .as_ref()
                .chunks_exact(2 * POLYNOMIAL_SIZE)
                .map(|entry| {
                    let (mask, body) = entry.split_at(POLYNOMIAL_SIZE);
                    (NttPoly::forward(mask), NttPoly::forward(body))
                })
                .collect()
        })
    }

    /// Computes and caches the NTT form now (otherwise done on the first
    /// re-encryption). Idempotent.
    pub fn prepare(&self) {
        let _ = self.ntt();
    }
}

/// The plaintexts of the key-switching key in stored order: entry `j` is at
/// level `l = L − j` and holds `s_A · 2^(128 − 8·l)` (that is `s_A · q/B^l`).
fn ksk_plaintexts(delegator: &LatticeSecretKey) -> Vec<Zeroizing<Vec<u128>>> {
    (1..=DECOMP_LEVEL_COUNT)
        .rev()
        .map(|level| {
            let shift = 128 - DECOMP_BASE_LOG * level;
            Zeroizing::new(delegator.coeffs().iter().map(|&s| s << shift).collect())
        })
        .collect()
}

pub(crate) fn generate_reencryption_key_with_backend<R: RngCore + CryptoRng>(
    rng: &mut R,
    delegator: &LatticeSecretKey,
    delegatee: &LatticePublicKey,
    noise: TUniform<u128>,
    backend: Backend,
) -> LatticeReencryptionKey {
    let mut generator = operation_generator(rng);
    let mut ksk = new_ksk();
    for (entry, plaintext) in
        ksk.as_mut().chunks_exact_mut(2 * POLYNOMIAL_SIZE).zip(ksk_plaintexts(delegator))
    {
        let ct = encrypt_glwe_with_public_key(&mut generator, delegatee, &plaintext, noise, backend);
        entry.copy_from_slice(ct.as_ref());
    }
    LatticeReencryptionKey::from_parts(ksk, delegatee.clone())
}

/// Generates a re-encryption key from the delegator's secret key toward the
/// delegatee's public key, without the delegatee's participation.
///
/// # Warning
/// The delegatee together with the proxy holding this key can recover the
/// delegator's lattice secret key (a property of BV-PRE): medrelay splits
/// keys by key class so that a grant exposes only the classes it covers.
pub fn generate_lattice_reencryption_key<R: RngCore + CryptoRng>(
    rng: &mut R,
    delegator: &LatticeSecretKey,
    delegatee: &LatticePublicKey,
) -> LatticeReencryptionKey {
    generate_reencryption_key_with_backend(rng, delegator, delegatee, params::noise(), Backend::Ntt)
}
