//! medrelay-crypto: the cryptography of medrelay, with no I/O.
//!
//! Work in progress: see issue 7. This crate holds the Ed25519 signing keys,
//! ids, record headers and versioned encodings; the hybrid proxy
//! re-encryption (Umbral + lattice) and record envelopes land next.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod category;
pub mod domain;
pub mod encoding;
mod error;
mod header;
mod ids;
pub mod lattice;
mod signing;

pub use category::{KeyClass, RecordCategory, SensitivityLabel, MAX_CATEGORY_CODES, MAX_CODE_LEN};
pub use error::{CryptoError, DecodeError};
pub use header::{RecordHeader, MAX_HEADER_LEN, RECORD_FORMAT_VERSION};
pub use ids::{GrantId, PrincipalId, RecordId, Timestamp};
pub use signing::{Fingerprint, Signature, SigningKey, VerifyingKey};
