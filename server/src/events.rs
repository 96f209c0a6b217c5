//! Typed audit events and their versioned encoding (the Merkle leaf data).
//!
//! Events carry ids, roles, key fingerprints, times and reason codes only:
//! never record contents, names or secrets.

use medrelay_crypto::encoding::{Decoder, Encoder};
use medrelay_crypto::{DecodeError, GrantId, KeyClass, PrincipalId, RecordId, Timestamp};
use medrelay_wire::Role;

const MAGIC: &[u8; 4] = b"MRLE";
const V1: u8 = 1;
/// Largest encoded event.
pub(crate) const MAX_EVENT_LEN: usize = 1024;
const MAX_REASON_LEN: usize = 64;

/// One event of the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditEvent {
    /// A principal registered its keys.
    PrincipalRegistered {
        /// Principal.
        principal: PrincipalId,
        /// Role.
        role: Role,
        /// SHA-256 of the registration message (binds the exact keys).
        keys_digest: [u8; 32],
        /// When.
        at: Timestamp,
    },
    /// A patient published a record.
    RecordPublished {
        /// Record.
        record: RecordId,
        /// Owner.
        owner: PrincipalId,
        /// Key class.
        key_class: KeyClass,
        /// SHA-256 of the stored envelope.
        envelope_digest: [u8; 32],
        /// When.
        at: Timestamp,
    },
    /// A patient granted a doctor access.
    GrantCreated {
        /// Grant.
        grant: GrantId,
        /// Patient.
        patient: PrincipalId,
        /// Doctor.
        doctor: PrincipalId,
        /// SHA-256 of the signed grant.
        grant_digest: [u8; 32],
        /// When.
        at: Timestamp,
    },
    /// A patient revoked a grant.
    GrantRevoked {
        /// Grant.
        grant: GrantId,
        /// Patient.
        patient: PrincipalId,
        /// When.
        at: Timestamp,
    },
    /// A re-encryption was served.
    AccessServed {
        /// Record.
        record: RecordId,
        /// Owner.
        owner: PrincipalId,
        /// Doctor.
        doctor: PrincipalId,
        /// Grant used.
        grant: GrantId,
        /// When.
        at: Timestamp,
    },
    /// A re-encryption was denied.
    AccessDenied {
        /// Record asked for.
        record: RecordId,
        /// Owner, when the record exists.
        owner: Option<PrincipalId>,
        /// Who asked.
        requester: PrincipalId,
        /// Reason code.
        reason: String,
        /// When.
        at: Timestamp,
    },
}

impl AuditEvent {
    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(MAGIC, V1);
        match self {
            AuditEvent::PrincipalRegistered { principal, role, keys_digest, at } => {
                e.u8(1).fixed(principal.as_bytes()).u8(role.code()).fixed(keys_digest).u64(at.0);
            }
            AuditEvent::RecordPublished { record, owner, key_class, envelope_digest, at } => {
                e.u8(2)
                    .fixed(record.as_bytes())
                    .fixed(owner.as_bytes())
                    .u8(key_class.code())
                    .fixed(envelope_digest)
                    .u64(at.0);
            }
            AuditEvent::GrantCreated { grant, patient, doctor, grant_digest, at } => {
                e.u8(3)
                    .fixed(grant.as_bytes())
                    .fixed(patient.as_bytes())
                    .fixed(doctor.as_bytes())
                    .fixed(grant_digest)
                    .u64(at.0);
            }
            AuditEvent::GrantRevoked { grant, patient, at } => {
                e.u8(4).fixed(grant.as_bytes()).fixed(patient.as_bytes()).u64(at.0);
            }
            AuditEvent::AccessServed { record, owner, doctor, grant, at } => {
                e.u8(5)
                    .fixed(record.as_bytes())
                    .fixed(owner.as_bytes())
                    .fixed(doctor.as_bytes())
                    .fixed(grant.as_bytes())
                    .u64(at.0);
            }
            AuditEvent::AccessDenied { record, owner, requester, reason, at } => {
                e.u8(6).fixed(record.as_bytes());
                match owner {
                    Some(o) => e.u8(1).fixed(o.as_bytes()),
                    None => e.u8(0),
                };
                e.fixed(requester.as_bytes()).str(reason).u64(at.0);
            }
        }
        e.finish()
    }

    /// Decodes an event, rejecting oversized, truncated, trailing and
    /// wrong-version input.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(bytes, MAGIC, &[V1], MAX_EVENT_LEN)?;
        let pid = |d: &mut Decoder<'_>| d.array().map(PrincipalId::from_bytes);
        let ev = match d.u8()? {
            1 => AuditEvent::PrincipalRegistered {
                principal: pid(&mut d)?,
                role: Role::from_code(d.u8()?).ok_or(DecodeError::Invalid("role"))?,
                keys_digest: d.array()?,
                at: Timestamp(d.u64()?),
            },
            2 => AuditEvent::RecordPublished {
                record: RecordId::from_bytes(d.array()?),
                owner: pid(&mut d)?,
                key_class: KeyClass::from_code(d.u8()?)?,
                envelope_digest: d.array()?,
                at: Timestamp(d.u64()?),
            },
            3 => AuditEvent::GrantCreated {
                grant: GrantId::from_bytes(d.array()?),
                patient: pid(&mut d)?,
                doctor: pid(&mut d)?,
                grant_digest: d.array()?,
                at: Timestamp(d.u64()?),
            },
            4 => AuditEvent::GrantRevoked {
                grant: GrantId::from_bytes(d.array()?),
                patient: pid(&mut d)?,
                at: Timestamp(d.u64()?),
            },
            5 => AuditEvent::AccessServed {
                record: RecordId::from_bytes(d.array()?),
                owner: pid(&mut d)?,
                doctor: pid(&mut d)?,
                grant: GrantId::from_bytes(d.array()?),
                at: Timestamp(d.u64()?),
            },
            6 => {
                let record = RecordId::from_bytes(d.array()?);
                let owner = match d.u8()? {
                    0 => None,
                    1 => Some(pid(&mut d)?),
                    _ => return Err(DecodeError::Invalid("owner flag")),
                };
                AuditEvent::AccessDenied {
                    record,
                    owner,
                    requester: pid(&mut d)?,
                    reason: d.str(MAX_REASON_LEN)?.to_owned(),
                    at: Timestamp(d.u64()?),
                }
            }
            _ => return Err(DecodeError::Invalid("event kind")),
        };
        d.finish()?;
        Ok(ev)
    }

    /// The principals this event concerns (indexed so they can list it).
    pub fn subjects(&self) -> Vec<PrincipalId> {
        match self {
            AuditEvent::PrincipalRegistered { principal, .. } => vec![*principal],
            AuditEvent::RecordPublished { owner, .. } => vec![*owner],
            AuditEvent::GrantCreated { patient, doctor, .. } => vec![*patient, *doctor],
            AuditEvent::GrantRevoked { patient, .. } => vec![*patient],
            AuditEvent::AccessServed { owner, doctor, .. } => vec![*owner, *doctor],
            AuditEvent::AccessDenied { owner, requester, .. } => {
                let mut v = vec![*requester];
                v.extend(owner.iter().filter(|o| *o != requester));
                v
            }
        }
    }

    /// The store append for this event.
    pub(crate) fn to_append(&self) -> crate::store::LogAppend {
        crate::store::LogAppend { data: self.encode(), subjects: self.subjects() }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn all() -> Vec<AuditEvent> {
        let p = PrincipalId::from_bytes([1; 32]);
        let q = PrincipalId::from_bytes([2; 32]);
        let r = RecordId::from_bytes([3; 16]);
        let g = GrantId::from_bytes([4; 16]);
        vec![
            AuditEvent::PrincipalRegistered {
                principal: p,
                role: Role::Doctor,
                keys_digest: [5; 32],
                at: Timestamp(1),
            },
            AuditEvent::RecordPublished {
                record: r,
                owner: p,
                key_class: KeyClass::MentalHealth,
                envelope_digest: [6; 32],
                at: Timestamp(2),
            },
            AuditEvent::GrantCreated {
                grant: g,
                patient: p,
                doctor: q,
                grant_digest: [7; 32],
                at: Timestamp(3),
            },
            AuditEvent::GrantRevoked { grant: g, patient: p, at: Timestamp(4) },
            AuditEvent::AccessServed { record: r, owner: p, doctor: q, grant: g, at: Timestamp(5) },
            AuditEvent::AccessDenied {
                record: r,
                owner: Some(p),
                requester: q,
                reason: "revoked".into(),
                at: Timestamp(6),
            },
            AuditEvent::AccessDenied {
                record: r,
                owner: None,
                requester: q,
                reason: "not_found".into(),
                at: Timestamp(7),
            },
        ]
    }

    #[test]
    fn every_event_round_trips_and_rejects_bad_input() {
        for ev in all() {
            let b = ev.encode();
            assert_eq!(AuditEvent::decode(&b).unwrap(), ev);
            for n in 0..b.len() {
                assert!(AuditEvent::decode(&b[..n]).is_err(), "{ev:?} prefix {n}");
            }
            let mut t = b.clone();
            t.push(0);
            assert_eq!(AuditEvent::decode(&t), Err(DecodeError::TrailingBytes));
            let mut v = b.clone();
            v[4] = 9;
            assert_eq!(AuditEvent::decode(&v), Err(DecodeError::UnsupportedVersion { found: 9 }));
        }
        assert!(matches!(
            AuditEvent::decode(&vec![0u8; MAX_EVENT_LEN + 1]),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
