//! Error types of medrelay-crypto.

/// Why a blob could not be decoded. Returned for every malformed input; no
/// decoder panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is larger than the limit for its type (checked before parsing).
    #[error("input too large: {actual} bytes, limit {limit}")]
    TooLarge {
        /// The limit for this type.
        limit: usize,
        /// The size found.
        actual: usize,
    },
    /// The input ended early.
    #[error("input truncated")]
    Truncated,
    /// Bytes follow the encoded value.
    #[error("trailing bytes after the encoded value")]
    TrailingBytes,
    /// The blob is of another type.
    #[error("wrong type tag (magic)")]
    WrongMagic,
    /// The blob's format version is not supported.
    #[error("unsupported format version {found}")]
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// A field has an invalid value; names the field.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Errors of medrelay-crypto operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Decryption or authentication failed. Deliberately opaque: it never says
    /// which check (signature, tag, fragment proof, key) failed.
    #[error("decryption failed")]
    Decryption,
    /// A signature did not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// Malformed encoded input.
    #[error("malformed input: {0}")]
    Decode(#[from] DecodeError),
    /// A parameter is out of range (e.g. threshold > shares); names it.
    #[error("invalid parameter: {0}")]
    InvalidParameter(&'static str),
    /// The key classes of two inputs do not match (e.g. a re-encryption key
    /// for one class applied to a capsule of another).
    #[error("key class mismatch")]
    KeyClassMismatch,
    /// A capsule, a re-encryption key and a signing key that must all belong
    /// to one principal do not (e.g. another principal's capsule offered for
    /// re-encryption with a patient's key).
    #[error("the capsule, the re-encryption key and the signer are not the same principal")]
    WrongOwner,
    /// A key file could not be opened: wrong passphrase or corrupted file.
    #[error("wrong passphrase or corrupted key file")]
    KeyFile,
}
