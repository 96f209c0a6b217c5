//! Base64 transport of binary values in JSON.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Binary data carried in JSON as a standard, padded base64 string.
///
/// Deserializing rejects anything that is not canonical base64 with a serde
/// error (so the server answers `400`). Size limits are checked by the
/// receiver against the documented [`crate::limits`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct B64(pub Vec<u8>);

impl B64 {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Consumes the wrapper.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for B64 {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl fmt::Debug for B64 {
    // Only the length: envelopes and key material are not for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "B64({} bytes)", self.0.len())
    }
}

impl Serialize for B64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(B64)
            .map_err(|_| serde::de::Error::custom("invalid base64 (standard alphabet, padded)"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn round_trip_and_rejects_bad_base64() {
        let v = B64(vec![0, 1, 2, 250]);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, "\"AAEC+g==\"");
        assert_eq!(serde_json::from_str::<B64>(&json).unwrap(), v);
        for bad in ["\"AAEC+g\"", "\"!!!!\"", "\"AAEC-g==\"", "12"] {
            assert!(serde_json::from_str::<B64>(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(format!("{v:?}"), "B64(4 bytes)");
    }
}
