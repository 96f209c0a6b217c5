//! Encoding of umbral-pre objects inside medrelay blobs.
//!
//! umbral-pre 0.11 serializes with MessagePack (`default-serialization`).
//! Its decoder ignores trailing bytes, so [`decode`] re-encodes the value and
//! requires the same bytes back: one canonical encoding per object, and no
//! hidden data inside a signed blob.

use umbral_pre::{DefaultDeserialize, DefaultSerialize};

use crate::error::DecodeError;

/// Largest encoded umbral object accepted (a capsule is ~100 bytes, a key
/// or capsule fragment a few hundred).
pub(crate) const MAX_UMBRAL_OBJECT_LEN: usize = 1024;

/// MessagePack-encodes an umbral object.
pub(crate) fn encode<T: DefaultSerialize>(value: &T) -> Vec<u8> {
    // Serializing fixed-size curve points and scalars into a Vec cannot fail.
    value
        .to_bytes()
        .unwrap_or_else(|_| unreachable!("MessagePack encoding of an umbral object into memory failed"))
        .into_vec()
}

/// Decodes an umbral object and checks that its encoding is canonical.
pub(crate) fn decode<T>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError>
where
    T: for<'de> DefaultDeserialize<'de> + DefaultSerialize,
{
    if bytes.len() > MAX_UMBRAL_OBJECT_LEN {
        return Err(DecodeError::TooLarge { limit: MAX_UMBRAL_OBJECT_LEN, actual: bytes.len() });
    }
    let value = T::from_bytes(bytes).map_err(|_| DecodeError::Invalid(what))?;
    if encode(&value) != bytes {
        return Err(DecodeError::Invalid(what));
    }
    Ok(value)
}
