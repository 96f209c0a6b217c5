//! The error type of medrelay-policy.

use medrelay_crypto::DecodeError;

/// Errors of medrelay-policy: malformed input, failed verification, invalid
/// construction. Parse errors name what was wrong; verification failures are
/// deliberately opaque.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A binary blob could not be decoded.
    #[error("malformed encoding: {0}")]
    Decode(#[from] DecodeError),
    /// A field or value is malformed; names it.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A scope string is invalid: which entry (truncated to 64 characters)
    /// and why.
    #[error("invalid scope entry {entry:?}: {reason}")]
    InvalidScope {
        /// The offending entry, as written (at most 64 characters).
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A checkpoint or signed note is malformed; says what was wrong.
    #[error("malformed checkpoint: {0}")]
    InvalidCheckpoint(&'static str),
    /// A grant or revocation is not well formed (e.g. an empty scope or an
    /// empty validity window); says what was wrong.
    #[error("invalid grant: {0}")]
    InvalidGrant(&'static str),
    /// A signature did not verify. Deliberately opaque: never says which
    /// check failed.
    #[error("signature verification failed")]
    VerificationFailed,
    /// The key that signed an object is not the key of the principal the
    /// object names (e.g. a grant signed by someone other than its patient).
    #[error("signer is not the principal named in the object")]
    SignerMismatch,
    /// A Merkle inclusion or consistency proof does not verify.
    #[error("merkle proof does not verify")]
    ProofInvalid,
}
