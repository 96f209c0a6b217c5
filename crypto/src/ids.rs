//! Identifiers and time: principal ids, record ids, grant ids, capsule ids,
//! timestamps.

use std::fmt;
use std::str::FromStr;

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::DecodeError;

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }

        impl FromStr for $name {
            type Err = DecodeError;

            /// Parses the lowercase or uppercase hex form.
            fn from_str(s: &str) -> Result<Self, DecodeError> {
                if s.len() != 2 * $len {
                    return Err(DecodeError::Invalid(concat!(stringify!($name), " length")));
                }
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out)
                    .map_err(|_| DecodeError::Invalid(concat!(stringify!($name), " hex")))?;
                Ok(Self(out))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(
    /// A principal's id: `SHA-256(domain::PRINCIPAL_ID || Ed25519 public key)`,
    /// written as 64 hex digits. Derive it with
    /// [`VerifyingKey::principal_id`](crate::VerifyingKey::principal_id).
    PrincipalId,
    32
);

hex_id!(
    /// A record's id: 16 random bytes drawn by the owner's client, written as
    /// 32 hex digits.
    RecordId,
    16
);

hex_id!(
    /// A grant's id: 16 random bytes drawn by the patient's client.
    GrantId,
    16
);

hex_id!(
    /// A batch capsule's id: `SHA-256(domain::CAPSULE_ID || capsule bytes)`,
    /// the digest of the capsule as its owner signed it, written as 64 hex
    /// digits. Record envelopes name their capsule by it, and every record's
    /// data key is derived with it.
    CapsuleId,
    32
);

impl RecordId {
    /// Draws a fresh random record id.
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        Self(b)
    }
}

impl GrantId {
    /// Draws a fresh random grant id.
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        Self(b)
    }
}

/// A point in time: whole seconds since the Unix epoch (UTC). The pure crates
/// never read the clock; callers pass the time in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Seconds since the epoch.
    pub const fn unix_seconds(self) -> u64 {
        self.0
    }

    /// This time plus `secs` seconds, saturating.
    pub const fn plus_seconds(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_json() {
        let id = RecordId::from_bytes([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(id.to_string().parse::<RecordId>().unwrap(), id);
        assert_eq!(id.to_string().to_uppercase().parse::<RecordId>().unwrap(), id);
    }

    #[test]
    fn bad_ids_are_typed_errors() {
        assert!(matches!("abc".parse::<PrincipalId>(), Err(DecodeError::Invalid(_))));
        assert!(matches!("zz".repeat(32).parse::<PrincipalId>(), Err(DecodeError::Invalid(_))));
        assert!("ab".repeat(17).parse::<RecordId>().is_err());
    }
}
