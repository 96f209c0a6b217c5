//! Refused requests: what an authenticated principal asked for or submitted
//! that the server refused, and why, for the audit log's `request refused`
//! event.
//!
//! Two families share the event:
//!
//! - **submissions** whose signature or ownership did not check out (a
//!   forged grant, a tampered envelope, a revocation of someone else's
//!   grant): reasons [`RefusalReason::BadSignature`] and
//!   [`RefusalReason::NotOwner`];
//! - **reads and operations** the principal may not perform: another
//!   principal's record list, grants or directory entry
//!   ([`RefusalReason::NotEntitled`]), an operation of another role
//!   ([`RefusalReason::WrongRole`]), or a read that needs a grant that is
//!   missing, expired or revoked ([`RefusalReason::Denied`]).
//!
//! (A doctor refused one record, by re-encryption or by envelope read, is
//! the separate `access denied` event, which the record's owner also reads.)
//!
//! The ids here are the ones the request *claimed*: the request was refused
//! precisely because it could not be trusted or allowed, so an auditor reads
//! them as "this principal asked for something naming this id", never as a
//! statement about the real object with that id. Only ids, route names and
//! codes are logged, never submitted bytes.

use std::fmt;

use medrelay_crypto::encoding::{Decoder, Encoder};
use medrelay_crypto::{CapsuleId, GrantId, PrincipalId, RecordId};

use crate::authorize::Denial;
use crate::error::PolicyError;

/// Longest [`Operation`] text, in bytes.
pub const MAX_OPERATION_LEN: usize = 128;

/// An API operation, named by HTTP method and route template
/// (`POST /v1/grants/{id}/revoke`): what a principal of the wrong role tried.
/// Route templates come from the server's routing table, never from the
/// request, so they carry no ids.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operation(String);

impl Operation {
    /// Checks `text`: an upper-case method, one space, then a path starting
    /// with `/`, printable ASCII without spaces, at most
    /// [`MAX_OPERATION_LEN`] bytes in all.
    pub fn new(text: impl Into<String>) -> Result<Self, PolicyError> {
        let text = text.into();
        let ok = text.len() <= MAX_OPERATION_LEN
            && text.split_once(' ').is_some_and(|(method, path)| {
                !method.is_empty()
                    && method.bytes().all(|b| b.is_ascii_uppercase())
                    && path.starts_with('/')
                    && path.bytes().all(|b| b.is_ascii_graphic())
            });
        if ok {
            Ok(Self(text))
        } else {
            Err(PolicyError::Malformed("operation: expected `METHOD /route`"))
        }
    }

    /// The text (`POST /v1/grants`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a refused request asked for or submitted, with its claimed id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusedObject {
    /// A signed grant (submitted).
    Grant(GrantId),
    /// The re-encryption keys submitted with a grant.
    ReencryptionKeys(GrantId),
    /// A signed revocation of the named grant (submitted).
    Revocation(GrantId),
    /// A signed record envelope (submitted).
    Record(RecordId),
    /// A stored record envelope (read).
    Envelope(RecordId),
    /// A patient's record list (read).
    RecordList(PrincipalId),
    /// The grants a patient signed (read).
    PatientGrants(PrincipalId),
    /// The grants toward a doctor (read).
    DoctorGrants(PrincipalId),
    /// A principal's directory entry: name and keys (read).
    Principal(PrincipalId),
    /// An operation reserved to another role.
    Operation(Operation),
    /// A batch capsule (submitted, or stored and offered for re-encryption).
    Capsule(CapsuleId),
}

impl RefusedObject {
    /// The stable name of the kind of object (`grant`, `reencryption_keys`,
    /// `revocation`, `record`, `envelope`, `record_list`, `patient_grants`,
    /// `doctor_grants`, `principal`, `operation`, `capsule`).
    pub const fn kind(&self) -> &'static str {
        match self {
            RefusedObject::Grant(_) => "grant",
            RefusedObject::ReencryptionKeys(_) => "reencryption_keys",
            RefusedObject::Revocation(_) => "revocation",
            RefusedObject::Record(_) => "record",
            RefusedObject::Envelope(_) => "envelope",
            RefusedObject::RecordList(_) => "record_list",
            RefusedObject::PatientGrants(_) => "patient_grants",
            RefusedObject::DoctorGrants(_) => "doctor_grants",
            RefusedObject::Principal(_) => "principal",
            RefusedObject::Operation(_) => "operation",
            RefusedObject::Capsule(_) => "capsule",
        }
    }

    /// The claimed id as text: lower-case hex of a grant, record or
    /// principal id, or the operation's `METHOD /route`.
    pub fn id_text(&self) -> String {
        match self {
            RefusedObject::Grant(g) | RefusedObject::ReencryptionKeys(g) | RefusedObject::Revocation(g) => {
                g.to_string()
            }
            RefusedObject::Record(r) | RefusedObject::Envelope(r) => r.to_string(),
            RefusedObject::RecordList(p)
            | RefusedObject::PatientGrants(p)
            | RefusedObject::DoctorGrants(p)
            | RefusedObject::Principal(p) => p.to_string(),
            RefusedObject::Operation(o) => o.as_str().to_owned(),
            RefusedObject::Capsule(c) => c.to_string(),
        }
    }

    /// The one-byte kind code used in log encodings.
    fn byte(&self) -> u8 {
        match self {
            RefusedObject::Grant(_) => 0,
            RefusedObject::ReencryptionKeys(_) => 1,
            RefusedObject::Revocation(_) => 2,
            RefusedObject::Record(_) => 3,
            RefusedObject::Envelope(_) => 4,
            RefusedObject::RecordList(_) => 5,
            RefusedObject::PatientGrants(_) => 6,
            RefusedObject::DoctorGrants(_) => 7,
            RefusedObject::Principal(_) => 8,
            RefusedObject::Operation(_) => 9,
            RefusedObject::Capsule(_) => 10,
        }
    }

    /// Appends the kind code and the id (16 bytes for grant and record ids,
    /// 32 for principal ids, a length-prefixed string for an operation).
    pub(crate) fn encode(&self, e: &mut Encoder) {
        e.u8(self.byte());
        match self {
            RefusedObject::Grant(g) | RefusedObject::ReencryptionKeys(g) | RefusedObject::Revocation(g) => {
                e.fixed(g.as_bytes());
            }
            RefusedObject::Record(r) | RefusedObject::Envelope(r) => {
                e.fixed(r.as_bytes());
            }
            RefusedObject::RecordList(p)
            | RefusedObject::PatientGrants(p)
            | RefusedObject::DoctorGrants(p)
            | RefusedObject::Principal(p) => {
                e.fixed(p.as_bytes());
            }
            RefusedObject::Operation(o) => {
                e.str(o.as_str());
            }
            RefusedObject::Capsule(c) => {
                e.fixed(c.as_bytes());
            }
        }
    }

    /// Reads what [`RefusedObject::encode`] wrote.
    pub(crate) fn decode(d: &mut Decoder<'_>) -> Result<Self, PolicyError> {
        let kind = d.u8()?;
        Ok(match kind {
            0 => RefusedObject::Grant(GrantId::from_bytes(d.array()?)),
            1 => RefusedObject::ReencryptionKeys(GrantId::from_bytes(d.array()?)),
            2 => RefusedObject::Revocation(GrantId::from_bytes(d.array()?)),
            3 => RefusedObject::Record(RecordId::from_bytes(d.array()?)),
            4 => RefusedObject::Envelope(RecordId::from_bytes(d.array()?)),
            5 => RefusedObject::RecordList(PrincipalId::from_bytes(d.array()?)),
            6 => RefusedObject::PatientGrants(PrincipalId::from_bytes(d.array()?)),
            7 => RefusedObject::DoctorGrants(PrincipalId::from_bytes(d.array()?)),
            8 => RefusedObject::Principal(PrincipalId::from_bytes(d.array()?)),
            9 => RefusedObject::Operation(Operation::new(d.str(MAX_OPERATION_LEN)?)?),
            10 => RefusedObject::Capsule(CapsuleId::from_bytes(d.array()?)),
            _ => return Err(PolicyError::Malformed("refused object kind")),
        })
    }
}

/// Why a request was refused. Each reason has a stable code.
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
    /// The operation is reserved to another role.
    #[error("the operation needs another role")]
    WrongRole,
    /// The principal has no reason to read it (another principal's records,
    /// grants or directory entry).
    #[error("the principal is not entitled to it")]
    NotEntitled,
    /// The read needs a current grant and the policy refused (no grant,
    /// expired, revoked, not yet valid, …).
    #[error("{0}")]
    Denied(Denial),
}

impl RefusalReason {
    /// Every reason, in code order.
    pub const ALL: [RefusalReason; 13] = [
        RefusalReason::BadSignature,
        RefusalReason::NotOwner,
        RefusalReason::WrongRole,
        RefusalReason::NotEntitled,
        RefusalReason::Denied(Denial::WrongDoctor),
        RefusalReason::Denied(Denial::WrongPatient),
        RefusalReason::Denied(Denial::Revoked),
        RefusalReason::Denied(Denial::NotYetValid),
        RefusalReason::Denied(Denial::Expired),
        RefusalReason::Denied(Denial::OutOfScope),
        RefusalReason::Denied(Denial::SensitiveExcluded),
        RefusalReason::Denied(Denial::NoGrant),
        RefusalReason::Denied(Denial::ClassNotGranted),
    ];

    /// The stable string code (`bad_signature`, `not_owner`, `wrong_role`,
    /// `not_entitled`, or the policy denial's code such as `expired`).
    pub const fn code(self) -> &'static str {
        match self {
            RefusalReason::BadSignature => "bad_signature",
            RefusalReason::NotOwner => "not_owner",
            RefusalReason::WrongRole => "wrong_role",
            RefusalReason::NotEntitled => "not_entitled",
            RefusalReason::Denied(d) => d.code(),
        }
    }

    /// The one-byte code used in log encodings (policy denials are
    /// `0x80 | denial code`).
    pub(crate) fn byte(self) -> u8 {
        match self {
            RefusalReason::BadSignature => 0,
            RefusalReason::NotOwner => 1,
            RefusalReason::WrongRole => 2,
            RefusalReason::NotEntitled => 3,
            RefusalReason::Denied(d) => 0x80 | d.byte(),
        }
    }

    pub(crate) fn from_byte(b: u8) -> Result<Self, PolicyError> {
        if b & 0x80 != 0 {
            return Ok(RefusalReason::Denied(Denial::from_byte(b & 0x7f)?));
        }
        Self::ALL[..4].get(usize::from(b)).copied().ok_or(PolicyError::Malformed("refusal reason code"))
    }
}

impl fmt::Display for RefusedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.id_text())
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

    fn all_objects() -> Vec<RefusedObject> {
        let g = GrantId::from_bytes([9; 16]);
        let r = RecordId::from_bytes([9; 16]);
        let p = PrincipalId::from_bytes([7; 32]);
        vec![
            RefusedObject::Grant(g),
            RefusedObject::ReencryptionKeys(g),
            RefusedObject::Revocation(g),
            RefusedObject::Record(r),
            RefusedObject::Envelope(r),
            RefusedObject::RecordList(p),
            RefusedObject::PatientGrants(p),
            RefusedObject::DoctorGrants(p),
            RefusedObject::Principal(p),
            RefusedObject::Operation(Operation::new("POST /v1/grants/{id}/revoke").unwrap()),
            RefusedObject::Capsule(CapsuleId::from_bytes([5; 32])),
        ]
    }

    #[test]
    fn codes_round_trip_and_unknown_codes_are_errors() {
        for r in RefusalReason::ALL {
            assert_eq!(RefusalReason::from_byte(r.byte()).unwrap(), r);
        }
        let codes: Vec<&str> = RefusalReason::ALL.iter().map(|r| r.code()).collect();
        let unique: std::collections::BTreeSet<&str> = codes.iter().copied().collect();
        assert_eq!(unique.len(), codes.len(), "codes are distinct: {codes:?}");
        for b in [4, 0x7f, 0x89, 0xff] {
            assert!(RefusalReason::from_byte(b).is_err(), "{b:#x}");
        }
        for o in all_objects() {
            let mut e = Encoder::new(b"TEST", 1);
            o.encode(&mut e);
            let bytes = e.finish();
            let mut d = Decoder::open(&bytes, b"TEST", &[1], 1024).unwrap();
            assert_eq!(RefusedObject::decode(&mut d).unwrap(), o);
            d.finish().unwrap();
        }
        let bytes = [b'T', b'E', b'S', b'T', 1, 10];
        let mut d = Decoder::open(&bytes, b"TEST", &[1], 1024).unwrap();
        assert!(RefusedObject::decode(&mut d).is_err());
        assert_eq!(
            RefusedObject::Record(RecordId::from_bytes([9; 16])).to_string(),
            format!("record {}", "09".repeat(16))
        );
    }

    #[test]
    fn operations_are_method_and_route_only() {
        for ok in ["GET /v1/log/mine", "POST /v1/grants/{id}/revoke", "DELETE /v1/dp/schemas/{name}/summary"]
        {
            assert_eq!(Operation::new(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "GET",
            "get /v1/x",
            "GET v1/x",
            "GET /v1/x y",
            "GET  /v1/x",
            "GET /v1/\n",
            "GET /v1/é",
            &format!("GET /{}", "a".repeat(MAX_OPERATION_LEN)),
        ] {
            assert!(Operation::new(bad).is_err(), "{bad:?}");
        }
    }
}
