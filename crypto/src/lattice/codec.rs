//! Versioned, size-limited encodings of the lattice types.
//!
//! Every blob: 4-byte magic, format version 1, then the parameter set (ring
//! dimension, GLWE dimension, log2 q, and the type's own parameters), then
//! the data as little-endian `u128` words. All sizes are fixed by the
//! parameters, so each decoder's size limit is the exact encoded length; it
//! is checked before anything else, then the magic, the version, every
//! parameter, the inner counts, and that nothing trails the value.
//! Compressed ciphertexts must also be canonical (padding bits zero).

use tfhe::core_crypto::entities::compressed_modulus_switched_glwe_ciphertext::CompressedModulusSwitchedGlweCiphertext;
use tfhe::core_crypto::prelude::GlweCiphertextOwned;

use crate::encoding::{Decoder, Encoder};
use crate::error::DecodeError;

use super::encrypt::LatticeCiphertext;
use super::keys::LatticePublicKey;
use super::params::{
    self, CIPHERTEXT_MODULUS_LOG, DECOMP_BASE_LOG, DECOMP_LEVEL_COUNT, DELIVERED_MODULUS_LOG, GLWE_DIMENSION,
    MESSAGE_COEFFS, NOISE_BOUND_LOG2, POLYNOMIAL_SIZE, STORED_MODULUS_LOG,
};
use super::reencrypt::LatticeReencryptedCiphertext;
use super::rekey::{new_ksk, LatticeReencryptionKey};

/// Format version of every lattice blob.
const VERSION: u8 = 1;
const MAGIC_PUBLIC_KEY: &[u8; 4] = b"MRLP";
const MAGIC_CIPHERTEXT: &[u8; 4] = b"MRLC";
const MAGIC_REKEY: &[u8; 4] = b"MRLK";
const MAGIC_REENCRYPTED: &[u8; 4] = b"MRLR";

/// Magic + version.
const PREFIX_LEN: usize = 5;
/// Ring dimension (u32), GLWE dimension (u8), log2 q (u8).
const PARAMS_LEN: usize = 6;
const WORD: usize = 16;

/// Encoded length of a public key: prefix, params, noise bound, mask seed, body.
pub(crate) const PUBLIC_KEY_LEN: usize = PREFIX_LEN + PARAMS_LEN + 1 + WORD + POLYNOMIAL_SIZE * WORD;
/// Number of u128 words packing `N + 256` values of `log_modulus` bits.
const fn packed_words(log_modulus: usize) -> usize {
    ((GLWE_DIMENSION * POLYNOMIAL_SIZE + MESSAGE_COEFFS) * log_modulus).div_ceil(128)
}
const fn compressed_len(log_modulus: usize) -> usize {
    PREFIX_LEN + PARAMS_LEN + 1 + 2 + 4 + packed_words(log_modulus) * WORD
}
/// Encoded length of a stored capsule (86-bit modulus, 256 bodies).
pub(crate) const CIPHERTEXT_LEN: usize = compressed_len(STORED_MODULUS_LOG);
/// Encoded length of a delivered capsule (12-bit modulus, 256 bodies).
pub(crate) const REENCRYPTED_LEN: usize = compressed_len(DELIVERED_MODULUS_LOG);
/// Encoded length of a re-encryption key: prefix, params, gadget, the
/// delegatee's public key, then L GLWE ciphertexts of 2N words.
pub(crate) const REKEY_LEN: usize = PREFIX_LEN
    + PARAMS_LEN
    + 2
    + PUBLIC_KEY_LEN
    + DECOMP_LEVEL_COUNT * (GLWE_DIMENSION + 1) * POLYNOMIAL_SIZE * WORD;

fn put_params(e: &mut Encoder) {
    // The casts are of compile-time constants that fit (4096, 1, 128).
    e.u32(POLYNOMIAL_SIZE as u32).u8(GLWE_DIMENSION as u8).u8(CIPHERTEXT_MODULUS_LOG as u8);
}

fn check_params(d: &mut Decoder<'_>) -> Result<(), DecodeError> {
    if d.u32()? != POLYNOMIAL_SIZE as u32 {
        return Err(DecodeError::Invalid("lattice polynomial size"));
    }
    if d.u8()? != GLWE_DIMENSION as u8 {
        return Err(DecodeError::Invalid("lattice GLWE dimension"));
    }
    if d.u8()? != CIPHERTEXT_MODULUS_LOG as u8 {
        return Err(DecodeError::Invalid("lattice ciphertext modulus"));
    }
    Ok(())
}

fn put_words(e: &mut Encoder, words: &[u128]) {
    for w in words {
        e.fixed(&w.to_le_bytes());
    }
}

fn take_words(d: &mut Decoder<'_>, count: usize) -> Result<Vec<u128>, DecodeError> {
    let bytes = d.take(count.checked_mul(WORD).ok_or(DecodeError::Invalid("length"))?)?;
    Ok(bytes
        .chunks_exact(WORD)
        .map(|c| {
            let mut b = [0u8; WORD];
            b.copy_from_slice(c);
            u128::from_le_bytes(b)
        })
        .collect())
}

impl LatticePublicKey {
    /// Encodes the public key (seeded form: mask seed and body, 64 KiB).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(MAGIC_PUBLIC_KEY, VERSION, PUBLIC_KEY_LEN);
        put_params(&mut e);
        e.u8(NOISE_BOUND_LOG2 as u8);
        e.fixed(&self.mask_seed().to_le_bytes());
        put_words(&mut e, self.body());
        e.finish()
    }

    /// Decodes a public key, checking size, magic, version and parameters,
    /// and regenerates its mask from the seed.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(bytes, MAGIC_PUBLIC_KEY, &[VERSION], PUBLIC_KEY_LEN)?;
        check_params(&mut d)?;
        if u32::from(d.u8()?) != NOISE_BOUND_LOG2 {
            return Err(DecodeError::Invalid("lattice noise bound"));
        }
        let seed = u128::from_le_bytes(d.array()?);
        let body = take_words(&mut d, POLYNOMIAL_SIZE)?;
        d.finish()?;
        Ok(Self::from_seeded_parts(seed, body))
    }
}

fn encode_compressed(
    magic: &[u8; 4],
    expected_len: usize,
    ct: &CompressedModulusSwitchedGlweCiphertext<u128>,
) -> Vec<u8> {
    let mut e = Encoder::with_capacity(magic, VERSION, expected_len);
    put_params(&mut e);
    let packed = ct.packed_integers();
    // log modulus <= 128 and bodies <= 4096 by construction.
    e.u8(packed.log_modulus().0 as u8);
    e.u16(ct.bodies_count().0 as u16);
    let words = packed.packed_coeffs();
    e.u32(u32::try_from(words.len()).unwrap_or(u32::MAX));
    put_words(&mut e, words);
    e.finish()
}

/// Reads value `index` of `log_modulus` bits from a little-endian bit stream
/// of u128 words (tfhe's `PackedIntegers` layout). The caller guarantees the
/// words cover the value.
fn unpack_one(words: &[u128], index: usize, log_modulus: usize) -> u128 {
    let mask = (1u128 << log_modulus) - 1;
    let pos = index * log_modulus;
    let (word, offset) = (pos / 128, pos % 128);
    let mut value = words[word] >> offset;
    if offset + log_modulus > 128 {
        value |= words[word + 1] << (128 - offset);
    }
    value & mask
}

fn decode_compressed(
    bytes: &[u8],
    magic: &[u8; 4],
    expected_len: usize,
    log_modulus: usize,
) -> Result<CompressedModulusSwitchedGlweCiphertext<u128>, DecodeError> {
    let mut d = Decoder::open(bytes, magic, &[VERSION], expected_len)?;
    check_params(&mut d)?;
    if usize::from(d.u8()?) != log_modulus {
        return Err(DecodeError::Invalid("lattice compressed modulus"));
    }
    if usize::from(d.u16()?) != MESSAGE_COEFFS {
        return Err(DecodeError::Invalid("lattice body count"));
    }
    let count = usize::try_from(d.u32()?).map_err(|_| DecodeError::Invalid("length"))?;
    if count != packed_words(log_modulus) {
        return Err(DecodeError::Invalid("lattice packed word count"));
    }
    let words = take_words(&mut d, count)?;
    d.finish()?;

    // Unpack, lift to the native modulus, and re-compress: the values are
    // exact multiples of 2^(128 − log), so re-compression is lossless, and
    // comparing the packed words rejects non-canonical padding bits.
    let shift = CIPHERTEXT_MODULUS_LOG - log_modulus;
    let mut container = vec![0u128; (GLWE_DIMENSION + 1) * POLYNOMIAL_SIZE];
    let stored = GLWE_DIMENSION * POLYNOMIAL_SIZE + MESSAGE_COEFFS;
    for (i, slot) in container.iter_mut().take(stored).enumerate() {
        *slot = unpack_one(&words, i, log_modulus) << shift;
    }
    let glwe = GlweCiphertextOwned::from_container(
        container,
        params::polynomial_size(),
        params::ciphertext_modulus(),
    );
    let ct = CompressedModulusSwitchedGlweCiphertext::compress(
        &glwe,
        tfhe::core_crypto::prelude::CiphertextModulusLog(log_modulus),
        params::message_bodies(),
    );
    if ct.packed_integers().packed_coeffs() != words.as_slice() {
        return Err(DecodeError::Invalid("lattice packed padding bits"));
    }
    Ok(ct)
}

impl LatticeCiphertext {
    /// Encodes the stored capsule (86-bit coefficients, 256 bodies, 45.7 KiB).
    pub fn to_bytes(&self) -> Vec<u8> {
        encode_compressed(MAGIC_CIPHERTEXT, CIPHERTEXT_LEN, &self.0)
    }

    /// Decodes a stored capsule, checking size, magic, version, parameters,
    /// word count and canonical packing.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_compressed(bytes, MAGIC_CIPHERTEXT, CIPHERTEXT_LEN, STORED_MODULUS_LOG)
            .map(|ct| Self(Box::new(ct)))
    }
}

impl LatticeReencryptedCiphertext {
    /// Encodes the delivered capsule (12-bit coefficients, 256 bodies, 6.4 KiB).
    pub fn to_bytes(&self) -> Vec<u8> {
        encode_compressed(MAGIC_REENCRYPTED, REENCRYPTED_LEN, &self.0)
    }

    /// Decodes a delivered capsule, checking size, magic, version,
    /// parameters, word count and canonical packing.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_compressed(bytes, MAGIC_REENCRYPTED, REENCRYPTED_LEN, DELIVERED_MODULUS_LOG)
            .map(|ct| Self(Box::new(ct)))
    }
}

impl LatticeReencryptionKey {
    /// Encodes the re-encryption key (the delegatee's public key, then the
    /// key-switching key in tfhe's layout; about 1.56 MiB).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(MAGIC_REKEY, VERSION, REKEY_LEN);
        put_params(&mut e);
        e.u8(DECOMP_BASE_LOG as u8).u8(DECOMP_LEVEL_COUNT as u8);
        e.fixed(&self.delegatee().to_bytes());
        put_words(&mut e, self.ksk().as_ref());
        e.finish()
    }

    /// Decodes a re-encryption key, checking size, magic, version, every
    /// parameter (gadget base and levels included) and the embedded public
    /// key. The NTT form is computed on first use.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(bytes, MAGIC_REKEY, &[VERSION], REKEY_LEN)?;
        check_params(&mut d)?;
        if usize::from(d.u8()?) != DECOMP_BASE_LOG {
            return Err(DecodeError::Invalid("lattice decomposition base"));
        }
        if usize::from(d.u8()?) != DECOMP_LEVEL_COUNT {
            return Err(DecodeError::Invalid("lattice decomposition levels"));
        }
        let delegatee = LatticePublicKey::from_bytes(d.take(PUBLIC_KEY_LEN)?)?;
        let mut ksk = new_ksk();
        let words = take_words(&mut d, ksk.as_ref().len())?;
        d.finish()?;
        ksk.as_mut().copy_from_slice(&words);
        Ok(Self::from_parts(ksk, delegatee))
    }
}
