//! Refused submissions: what an authenticated principal submitted that the
//! server refused because its signature or its ownership did not check out
//! (a forged grant, a tampered envelope, a revocation of someone else's
//! grant), for the audit log's `request refused` event.
//!
//! The ids here are the ones the refused object *claimed*: the object was
//! refused precisely because it could not be trusted, so an auditor reads
//! them as "this principal submitted something naming this id", never as a
//! statement about the real object with that id. Only ids and codes are
//! logged, never the submitted bytes.

use std::fmt;

use medrelay_crypto::{GrantId, RecordId};

use crate::error::PolicyError;

/// The object a refused request submitted, with its claimed id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusedObject {
    /// A signed grant.
    Grant(GrantId),
    /// The re-encryption keys submitted with a grant.
    ReencryptionKeys(GrantId),
    /// A signed revocation of the named grant.
    Revocation(GrantId),
    /// A signed record envelope.
    Record(RecordId),
}

impl RefusedObject {
    /// The stable name of the kind of object (`grant`, `reencryption_keys`,
    /// `revocation`, `record`).
    pub const fn kind(self) -> &'static str {
        match self {
            RefusedObject::Grant(_) => "grant",
            RefusedObject::ReencryptionKeys(_) => "reencryption_keys",
            RefusedObject::Revocation(_) => "revocation",
            RefusedObject::Record(_) => "record",
        }
    }

    /// The claimed id's 16 bytes (grant ids and record ids are both 16 bytes).
    pub fn id_bytes(self) -> [u8; 16] {
        match self {
            RefusedObject::Grant(g) | RefusedObject::ReencryptionKeys(g) | RefusedObject::Revocation(g) => {
                *g.as_bytes()
            }
            RefusedObject::Record(r) => *r.as_bytes(),
        }
    }

    /// The one-byte kind code used in log encodings.
    pub(crate) fn byte(self) -> u8 {
        match self {
            RefusedObject::Grant(_) => 0,
            RefusedObject::ReencryptionKeys(_) => 1,
            RefusedObject::Revocation(_) => 2,
            RefusedObject::Record(_) => 3,
        }
    }

    pub(crate) fn from_parts(kind: u8, id: [u8; 16]) -> Result<Self, PolicyError> {
        Ok(match kind {
            0 => RefusedObject::Grant(GrantId::from_bytes(id)),
            1 => RefusedObject::ReencryptionKeys(GrantId::from_bytes(id)),
            2 => RefusedObject::Revocation(GrantId::from_bytes(id)),
            3 => RefusedObject::Record(RecordId::from_bytes(id)),
            _ => return Err(PolicyError::Malformed("refused object kind")),
        })
    }
}

/// Why a submission was refused. Each reason has a stable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RefusalReason {
    /// Its signature does not verify under the key it must be signed with.
    #[error("the signature does not verify")]
    BadSignature,
    /// It names another principal than the authenticated one as its owner
    /// or signer (e.g. another patient's grant or record).
    #[error("it is not the authenticated principal's")]
    NotOwner,
}

impl RefusalReason {
    /// Every reason, in code order.
    pub const ALL: [RefusalReason; 2] = [RefusalReason::BadSignature, RefusalReason::NotOwner];

    /// The stable string code (`bad_signature`, `not_owner`).
    pub const fn code(self) -> &'static str {
        match self {
            RefusalReason::BadSignature => "bad_signature",
            RefusalReason::NotOwner => "not_owner",
        }
    }

    /// The one-byte code used in log encodings.
    pub(crate) fn byte(self) -> u8 {
        match self {
            RefusalReason::BadSignature => 0,
            RefusalReason::NotOwner => 1,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Result<Self, PolicyError> {
        Self::ALL.get(usize::from(b)).copied().ok_or(PolicyError::Malformed("refusal reason code"))
    }
}

impl fmt::Display for RefusedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), hex::encode(self.id_bytes()))
    }
}

impl serde::Serialize for RefusalReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_errors() {
        for r in RefusalReason::ALL {
            assert_eq!(RefusalReason::from_byte(r.byte()).unwrap(), r);
        }
        assert!(RefusalReason::from_byte(2).is_err());
        let id = [9; 16];
        for o in [
            RefusedObject::Grant(GrantId::from_bytes(id)),
            RefusedObject::ReencryptionKeys(GrantId::from_bytes(id)),
            RefusedObject::Revocation(GrantId::from_bytes(id)),
            RefusedObject::Record(RecordId::from_bytes(id)),
        ] {
            assert_eq!(RefusedObject::from_parts(o.byte(), o.id_bytes()).unwrap(), o);
        }
        assert!(RefusedObject::from_parts(4, id).is_err());
        assert_eq!(
            RefusedObject::Record(RecordId::from_bytes(id)).to_string(),
            format!("record {}", "09".repeat(16))
        );
    }
}
