//! The fixed parameter set of the lattice PRE and its validation.
//!
//! Every value here is checked at compile time (see the `const` block at the
//! bottom): tfhe's `SignedDecomposer::new` only *debug*-asserts that the
//! decomposition fits in the integer, so the check is done here instead.

use tfhe::core_crypto::prelude::{
    CiphertextModulus, CiphertextModulusLog, DecompositionBaseLog, DecompositionLevelCount, GlweDimension,
    GlweSize, LweCiphertextCount, PolynomialSize, TUniform,
};

/// Ring dimension N of `Z_q[X]/(X^N + 1)`.
pub(crate) const POLYNOMIAL_SIZE: usize = 4096;
/// GLWE dimension k (one mask polynomial).
pub(crate) const GLWE_DIMENSION: usize = 1;
/// log2 of the ciphertext modulus q = 2^128 (native `u128` wrapping arithmetic).
pub(crate) const CIPHERTEXT_MODULUS_LOG: usize = 128;
/// log2 of the TUniform bound of the fresh noise χ (keys, encryptions, rekey entries).
pub(crate) const NOISE_BOUND_LOG2: u32 = 30;
/// log2 of the TUniform bound of the flooding noise added at re-encryption
/// (`|flood| <= 2^125 = q/8`).
pub(crate) const FLOOD_BOUND_LOG2: u32 = 125;
/// Gadget base log of the re-encryption key (base B = 2^8).
pub(crate) const DECOMP_BASE_LOG: usize = 8;
/// Number of gadget levels L of the re-encryption key.
pub(crate) const DECOMP_LEVEL_COUNT: usize = 12;
/// Number of message coefficients: one bit of the 32-byte share each.
pub(crate) const MESSAGE_COEFFS: usize = 256;
/// Modulus (log2) of the stored capsule after modulus switching.
pub(crate) const STORED_MODULUS_LOG: usize = 86;
/// Modulus (log2) of the delivered (re-encrypted) capsule after modulus switching.
pub(crate) const DELIVERED_MODULUS_LOG: usize = 12;
/// The decryption threshold: a coefficient decrypts correctly while its
/// noise stays strictly below q/4 = 2^126 in absolute value.
pub(crate) const DECRYPTION_THRESHOLD_LOG2: u32 = 126;

pub(crate) fn polynomial_size() -> PolynomialSize {
    PolynomialSize(POLYNOMIAL_SIZE)
}
pub(crate) fn glwe_dimension() -> GlweDimension {
    GlweDimension(GLWE_DIMENSION)
}
pub(crate) fn glwe_size() -> GlweSize {
    GlweDimension(GLWE_DIMENSION).to_glwe_size()
}
pub(crate) fn ciphertext_modulus() -> CiphertextModulus<u128> {
    CiphertextModulus::new_native()
}
pub(crate) fn decomp_base_log() -> DecompositionBaseLog {
    DecompositionBaseLog(DECOMP_BASE_LOG)
}
pub(crate) fn decomp_level_count() -> DecompositionLevelCount {
    DecompositionLevelCount(DECOMP_LEVEL_COUNT)
}
pub(crate) fn message_bodies() -> LweCiphertextCount {
    LweCiphertextCount(MESSAGE_COEFFS)
}
pub(crate) fn stored_modulus_log() -> CiphertextModulusLog {
    CiphertextModulusLog(STORED_MODULUS_LOG)
}
pub(crate) fn delivered_modulus_log() -> CiphertextModulusLog {
    CiphertextModulusLog(DELIVERED_MODULUS_LOG)
}
pub(crate) const fn noise() -> TUniform<u128> {
    TUniform::new(NOISE_BOUND_LOG2)
}
pub(crate) const fn flood() -> TUniform<u128> {
    TUniform::new(FLOOD_BOUND_LOG2)
}

// Parameter validation, at compile time.
const _: () = {
    // The gadget decomposition must fit strictly inside 128 bits (tfhe only
    // debug-asserts this in `SignedDecomposer::new`).
    assert!(DECOMP_BASE_LOG * DECOMP_LEVEL_COUNT < CIPHERTEXT_MODULUS_LOG);
    assert!(DECOMP_BASE_LOG > 0 && DECOMP_LEVEL_COUNT > 0);
    // TUniform needs bound_log2 + 2 <= 128; the flood must stay <= q/8 so that
    // flood + key-switch noise stays below the q/4 threshold.
    assert!(FLOOD_BOUND_LOG2 + 2 <= CIPHERTEXT_MODULUS_LOG as u32);
    assert!(FLOOD_BOUND_LOG2 < DECRYPTION_THRESHOLD_LOG2);
    assert!(NOISE_BOUND_LOG2 < FLOOD_BOUND_LOG2);
    // Negacyclic NTT sizes are powers of two; every message bit needs a coefficient.
    assert!(POLYNOMIAL_SIZE.is_power_of_two());
    assert!(MESSAGE_COEFFS <= POLYNOMIAL_SIZE && MESSAGE_COEFFS == 32 * 8);
    assert!(GLWE_DIMENSION == 1);
    // Modulus switching must go down, and keep room for the message bit.
    assert!(STORED_MODULUS_LOG < CIPHERTEXT_MODULUS_LOG && STORED_MODULUS_LOG > 1);
    assert!(DELIVERED_MODULUS_LOG < CIPHERTEXT_MODULUS_LOG && DELIVERED_MODULUS_LOG > 1);
    // The stored capsule must keep the 32 low bits that the gadget
    // decomposition rounds away exactly zero: 128 - 86 >= 128 - 8*12.
    assert!(
        CIPHERTEXT_MODULUS_LOG - STORED_MODULUS_LOG
            >= CIPHERTEXT_MODULUS_LOG - DECOMP_BASE_LOG * DECOMP_LEVEL_COUNT
    );
};
