//! medrelay-wire: the HTTP request and response types that the medrelay
//! server and its clients share, the canonical bytes that clients sign for
//! authentication and registration, and the documented request limits.
//!
//! All endpoints live under `/v1` and speak JSON. Binary values travel as
//! standard (padded) base64 strings through [`B64`]; ids travel as lowercase
//! hex. Every request type rejects unknown fields, so a misspelt field is a
//! `400`, never silently ignored.
//!
//! # Threat model
//!
//! This crate is pure data: no I/O, no clock, no randomness. Everything here
//! is parsed from untrusted input on one side or the other, so every type
//! carries only bounded data ([`limits`]) and the server re-checks every
//! limit after deserializing. The canonical signed messages
//! ([`challenge_message`], [`registration_message`]) are versioned and
//! domain-separated (the signature context comes from
//! `medrelay_crypto::domain`) so that a signature made for one purpose cannot
//! be replayed for another.
//!
//! # Example
//!
//! ```
//! use medrelay_crypto::{domain, SigningKey};
//! use medrelay_wire::{challenge_message, B64, TokenRequest};
//! use rand::rngs::OsRng;
//!
//! let sk = SigningKey::generate(&mut OsRng);
//! let nonce = B64(vec![7u8; 32]);
//! let msg = challenge_message(&sk.principal_id(), &nonce.0);
//! let req = TokenRequest {
//!     principal: sk.principal_id(),
//!     nonce: nonce.clone(),
//!     signature: sk.sign(domain::SIG_AUTH_CHALLENGE, &msg),
//! };
//! let json = serde_json::to_string(&req).unwrap();
//! let back: TokenRequest = serde_json::from_str(&json).unwrap();
//! assert_eq!(back.principal, sk.principal_id());
//! sk.verifying_key().verify(domain::SIG_AUTH_CHALLENGE, &msg, &back.signature).unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod b64;
pub mod dp;
pub mod limits;
pub mod study;
mod types;
mod url;

pub use b64::B64;
pub use types::*;
pub use url::{normalize_base_url, InvalidBaseUrl, MAX_BASE_URL_LEN};

use medrelay_crypto::encoding::Encoder;
use medrelay_crypto::{PrincipalId, VerifyingKey};

/// Format version of the canonical signed messages below.
pub const SIGNED_MESSAGE_VERSION: u8 = 1;

/// The bytes a principal signs (context `domain::SIG_AUTH_CHALLENGE`) to
/// answer an authentication challenge: a versioned blob binding the
/// principal id to the server's nonce.
pub fn challenge_message(principal: &PrincipalId, nonce: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new(b"MRCH", SIGNED_MESSAGE_VERSION);
    e.fixed(principal.as_bytes()).bytes(nonce);
    e.finish()
}

/// The bytes a principal signs (context `domain::SIG_REGISTRATION`) when it
/// registers: its role, display name, signing key and PRE public key bytes.
/// The signature proves possession of the signing key and binds the PRE keys
/// to it, so the server cannot swap them without the log showing it.
pub fn registration_message(
    role: Role,
    name: &str,
    signing_key: &VerifyingKey,
    pre_public_keys: &[u8],
) -> Vec<u8> {
    let mut e =
        Encoder::with_capacity(b"MRRG", SIGNED_MESSAGE_VERSION, 64 + name.len() + pre_public_keys.len());
    e.u8(role.code()).str(name).fixed(&signing_key.to_bytes()).bytes(pre_public_keys);
    e.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use medrelay_crypto::{domain, SigningKey};
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn signed_messages_differ_by_every_field() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let sk = SigningKey::generate(&mut rng);
        let vk = sk.verifying_key();
        let a = registration_message(Role::Patient, "a", &vk, b"k");
        assert_ne!(a, registration_message(Role::Doctor, "a", &vk, b"k"));
        assert_ne!(a, registration_message(Role::Patient, "b", &vk, b"k"));
        assert_ne!(a, registration_message(Role::Patient, "a", &vk, b"j"));
        let c = challenge_message(&sk.principal_id(), b"n1");
        assert_ne!(c, challenge_message(&sk.principal_id(), b"n2"));
        let sig = sk.sign(domain::SIG_AUTH_CHALLENGE, &c);
        assert!(vk.verify(domain::SIG_REGISTRATION, &c, &sig).is_err());
    }
}
