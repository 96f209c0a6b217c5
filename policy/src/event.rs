//! Typed audit log events and their canonical, versioned encoding (the leaf
//! data hashed into the Merkle tree).
//!
//! Events carry ids, key fingerprints, categories, sizes and hashes, never
//! record content. Grant and revocation events carry the full signed bytes,
//! so an auditor can re-verify each patient signature offline.

use medrelay_crypto::encoding::{Decoder, Encoder};
use medrelay_crypto::{
    GrantId, KeyClass, PrincipalId, RecordHeader, RecordId, Timestamp, VerifyingKey, MAX_HEADER_LEN,
};

use crate::authorize::Denial;
use crate::domain::LOG_EVENT_MAGIC;
use crate::error::PolicyError;
use crate::grant::{SignedGrant, SignedRevocation, MAX_SIGNED_GRANT_LEN, MAX_SIGNED_REVOCATION_LEN};
use crate::merkle::{hash_leaf, MerkleHash};
use crate::principal::Role;
use crate::refusal::{RefusalReason, RefusedObject};
use crate::study_event::StudyEvent;

const VERSION: u8 = 1;
/// Largest encoded event.
pub const MAX_EVENT_LEN: usize = MAX_SIGNED_GRANT_LEN + 512;
/// Longest DP schema name in an event.
pub const MAX_SCHEMA_NAME_LEN: usize = 64;

/// One audit log entry.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum LogEvent {
    /// A principal registered its keys.
    PrincipalRegistered {
        /// When.
        at: Timestamp,
        /// The new principal.
        principal: PrincipalId,
        /// Its role.
        role: Role,
        /// Its full Ed25519 public key (the id is derived from it).
        signing_key: VerifyingKey,
        /// Fingerprint of its PRE public key (patients, doctors): the bytes
        /// of [`crate::PrePublicKey::fingerprint`].
        pre_key: Option<[u8; 32]>,
    },
    /// An operator enrolled a doctor.
    DoctorEnrolled {
        /// When.
        at: Timestamp,
        /// The doctor.
        doctor: PrincipalId,
        /// The operator who issued the enrolment token.
        operator: PrincipalId,
    },
    /// A patient published a record.
    RecordPublished {
        /// When.
        at: Timestamp,
        /// The record's public header (id, owner, category, key class).
        header: RecordHeader,
        /// Ciphertext size in bytes.
        size: u64,
        /// SHA-256 of the ciphertext.
        ciphertext_sha256: [u8; 32],
    },
    /// A patient created a grant (full signed bytes).
    GrantCreated {
        /// When.
        at: Timestamp,
        /// The signed grant.
        grant: SignedGrant,
    },
    /// A patient revoked a grant (full signed bytes).
    GrantRevoked {
        /// When.
        at: Timestamp,
        /// The signed revocation.
        revocation: SignedRevocation,
    },
    /// The server re-encrypted a record's capsule for a doctor.
    ReencryptionServed {
        /// When.
        at: Timestamp,
        /// The grant used.
        grant: GrantId,
        /// The record.
        record: RecordId,
        /// The reader.
        doctor: PrincipalId,
        /// The owner.
        patient: PrincipalId,
        /// The key class re-encrypted.
        key_class: KeyClass,
    },
    /// An access was refused.
    AccessDenied {
        /// When.
        at: Timestamp,
        /// Who asked.
        doctor: PrincipalId,
        /// For what.
        record: RecordId,
        /// The record's owner, if the record exists.
        patient: Option<PrincipalId>,
        /// Why.
        reason: Denial,
    },
    /// A DP query was answered and charged.
    DpQueryAnswered {
        /// When.
        at: Timestamp,
        /// Who asked.
        analyst: PrincipalId,
        /// The summary schema queried.
        schema: String,
        /// ε spent (pure DP), finite and ≥ 0.
        epsilon: f64,
        /// ρ spent (zCDP), finite and ≥ 0.
        rho: f64,
    },
    /// A patient submitted (or replaced) a DP summary.
    SummarySubmitted {
        /// When.
        at: Timestamp,
        /// The patient.
        patient: PrincipalId,
        /// The schema.
        schema: String,
    },
    /// The server refused an object an authenticated principal submitted
    /// (forged or wrongly signed grant, revocation or re-encryption keys,
    /// tampered envelope, someone else's object) and stored nothing else.
    RequestRefused {
        /// When.
        at: Timestamp,
        /// The authenticated principal who submitted it.
        principal: PrincipalId,
        /// What it submitted, with the id the object claimed (unverified).
        what: RefusedObject,
        /// Why it was refused.
        reason: RefusalReason,
    },
    /// A patient withdrew (deleted) their DP summary.
    SummaryWithdrawn {
        /// When.
        at: Timestamp,
        /// The patient.
        patient: PrincipalId,
        /// The schema.
        schema: String,
    },
    /// The operator installed a DP summary schema.
    SchemaAdded {
        /// When.
        at: Timestamp,
        /// The schema's name.
        schema: String,
        /// SHA-256 of the schema's canonical JSON as the server serves it.
        schema_sha256: [u8; 32],
    },
    /// The operator set an analyst's total DP budget for a schema.
    BudgetSet {
        /// When.
        at: Timestamp,
        /// The analyst.
        analyst: PrincipalId,
        /// The schema.
        schema: String,
        /// Total ε, finite and > 0.
        epsilon: f64,
        /// δ at which zCDP spending converts to ε, finite and > 0.
        delta: f64,
    },
    /// A private-study event (see [`StudyEvent`]).
    Study {
        /// When.
        at: Timestamp,
        /// What happened.
        event: StudyEvent,
    },
}

/// Tag of [`LogEvent::Study`]: kept apart from the other tags so that
/// events added elsewhere cannot collide with it.
const STUDY_TAG: u8 = 40;

fn valid_cost(x: f64) -> bool {
    x.is_finite() && x >= 0.0 && x.is_sign_positive()
}

fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SCHEMA_NAME_LEN
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl LogEvent {
    /// When the event happened.
    pub fn timestamp(&self) -> Timestamp {
        match self {
            LogEvent::PrincipalRegistered { at, .. }
            | LogEvent::DoctorEnrolled { at, .. }
            | LogEvent::RecordPublished { at, .. }
            | LogEvent::GrantCreated { at, .. }
            | LogEvent::GrantRevoked { at, .. }
            | LogEvent::ReencryptionServed { at, .. }
            | LogEvent::AccessDenied { at, .. }
            | LogEvent::DpQueryAnswered { at, .. }
            | LogEvent::SummarySubmitted { at, .. }
            | LogEvent::RequestRefused { at, .. }
            | LogEvent::SummaryWithdrawn { at, .. }
            | LogEvent::SchemaAdded { at, .. }
            | LogEvent::BudgetSet { at, .. }
            | LogEvent::Study { at, .. } => *at,
        }
    }

    /// A stable name for the kind of event.
    pub fn kind(&self) -> &'static str {
        match self {
            LogEvent::PrincipalRegistered { .. } => "principal_registered",
            LogEvent::DoctorEnrolled { .. } => "doctor_enrolled",
            LogEvent::RecordPublished { .. } => "record_published",
            LogEvent::GrantCreated { .. } => "grant_created",
            LogEvent::GrantRevoked { .. } => "grant_revoked",
            LogEvent::ReencryptionServed { .. } => "reencryption_served",
            LogEvent::AccessDenied { .. } => "access_denied",
            LogEvent::DpQueryAnswered { .. } => "dp_query_answered",
            LogEvent::SummarySubmitted { .. } => "summary_submitted",
            LogEvent::RequestRefused { .. } => "request_refused",
            LogEvent::SummaryWithdrawn { .. } => "summary_withdrawn",
            LogEvent::SchemaAdded { .. } => "schema_added",
            LogEvent::BudgetSet { .. } => "budget_set",
            LogEvent::Study { event, .. } => event.kind(),
        }
    }

    fn tag(&self) -> u8 {
        match self {
            LogEvent::PrincipalRegistered { .. } => 0,
            LogEvent::DoctorEnrolled { .. } => 1,
            LogEvent::RecordPublished { .. } => 2,
            LogEvent::GrantCreated { .. } => 3,
            LogEvent::GrantRevoked { .. } => 4,
            LogEvent::ReencryptionServed { .. } => 5,
            LogEvent::AccessDenied { .. } => 6,
            LogEvent::DpQueryAnswered { .. } => 7,
            LogEvent::SummarySubmitted { .. } => 8,
            LogEvent::RequestRefused { .. } => 9,
            LogEvent::SummaryWithdrawn { .. } => 10,
            LogEvent::SchemaAdded { .. } => 11,
            LogEvent::BudgetSet { .. } => 12,
            LogEvent::Study { .. } => STUDY_TAG,
        }
    }

    /// Checks the values an encoding cannot carry faithfully (schema names,
    /// DP costs). Call before appending; [`LogEvent::to_bytes`] assumes it.
    pub fn validate(&self) -> Result<(), PolicyError> {
        match self {
            LogEvent::DpQueryAnswered { schema, epsilon, rho, .. } => {
                if !valid_schema(schema) {
                    return Err(PolicyError::Malformed("log event: schema name"));
                }
                if !valid_cost(*epsilon) || !valid_cost(*rho) {
                    return Err(PolicyError::Malformed("log event: privacy cost"));
                }
            }
            LogEvent::SummarySubmitted { schema, .. }
            | LogEvent::SummaryWithdrawn { schema, .. }
            | LogEvent::SchemaAdded { schema, .. }
                if !valid_schema(schema) =>
            {
                return Err(PolicyError::Malformed("log event: schema name"));
            }
            LogEvent::BudgetSet { schema, epsilon, delta, .. } => {
                if !valid_schema(schema) {
                    return Err(PolicyError::Malformed("log event: schema name"));
                }
                if !valid_cost(*epsilon) || *epsilon == 0.0 || !valid_cost(*delta) || *delta == 0.0 {
                    return Err(PolicyError::Malformed("log event: budget"));
                }
            }
            LogEvent::Study { event, .. } => event.validate()?,
            _ => {}
        }
        Ok(())
    }

    /// The canonical encoding: magic, version, tag, timestamp, fields.
    /// Fails only if [`LogEvent::validate`] fails.
    pub fn to_bytes(&self) -> Result<Vec<u8>, PolicyError> {
        self.validate()?;
        let mut e = Encoder::new(LOG_EVENT_MAGIC, VERSION);
        e.u8(self.tag()).u64(self.timestamp().unix_seconds());
        match self {
            LogEvent::PrincipalRegistered { principal, role, signing_key, pre_key, .. } => {
                e.fixed(principal.as_bytes()).u8(role.code()).fixed(&signing_key.to_bytes());
                match pre_key {
                    Some(f) => e.u8(1).fixed(f),
                    None => e.u8(0),
                };
            }
            LogEvent::DoctorEnrolled { doctor, operator, .. } => {
                e.fixed(doctor.as_bytes()).fixed(operator.as_bytes());
            }
            LogEvent::RecordPublished { header, size, ciphertext_sha256, .. } => {
                e.bytes(&header.to_bytes()).u64(*size).fixed(ciphertext_sha256);
            }
            LogEvent::GrantCreated { grant, .. } => {
                e.bytes(&grant.to_bytes());
            }
            LogEvent::GrantRevoked { revocation, .. } => {
                e.bytes(&revocation.to_bytes());
            }
            LogEvent::ReencryptionServed { grant, record, doctor, patient, key_class, .. } => {
                e.fixed(grant.as_bytes())
                    .fixed(record.as_bytes())
                    .fixed(doctor.as_bytes())
                    .fixed(patient.as_bytes())
                    .u8(key_class.code());
            }
            LogEvent::AccessDenied { doctor, record, patient, reason, .. } => {
                e.fixed(doctor.as_bytes()).fixed(record.as_bytes());
                match patient {
                    Some(p) => e.u8(1).fixed(p.as_bytes()),
                    None => e.u8(0),
                };
                e.u8(reason.byte());
            }
            LogEvent::DpQueryAnswered { analyst, schema, epsilon, rho, .. } => {
                e.fixed(analyst.as_bytes()).str(schema).u64(epsilon.to_bits()).u64(rho.to_bits());
            }
            LogEvent::SummarySubmitted { patient, schema, .. }
            | LogEvent::SummaryWithdrawn { patient, schema, .. } => {
                e.fixed(patient.as_bytes()).str(schema);
            }
            LogEvent::RequestRefused { principal, what, reason, .. } => {
                e.fixed(principal.as_bytes()).u8(what.byte()).fixed(&what.id_bytes()).u8(reason.byte());
            }
            LogEvent::SchemaAdded { schema, schema_sha256, .. } => {
                e.str(schema).fixed(schema_sha256);
            }
            LogEvent::BudgetSet { analyst, schema, epsilon, delta, .. } => {
                e.fixed(analyst.as_bytes()).str(schema).u64(epsilon.to_bits()).u64(delta.to_bits());
            }
            LogEvent::Study { event, .. } => event.encode(&mut e),
        }
        Ok(e.finish())
    }

    /// The Merkle leaf hash of this event.
    pub fn leaf_hash(&self) -> Result<MerkleHash, PolicyError> {
        Ok(hash_leaf(&self.to_bytes()?))
    }

    /// Decodes and validates an event.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PolicyError> {
        let mut d = Decoder::open(bytes, LOG_EVENT_MAGIC, &[VERSION], MAX_EVENT_LEN)?;
        let tag = d.u8()?;
        let at = Timestamp(d.u64()?);
        let pid = |d: &mut Decoder<'_>| -> Result<PrincipalId, PolicyError> {
            Ok(PrincipalId::from_bytes(d.array()?))
        };
        let flag = |d: &mut Decoder<'_>| -> Result<bool, PolicyError> {
            match d.u8()? {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(PolicyError::Malformed("log event: option flag")),
            }
        };
        let event = match tag {
            0 => {
                let principal = pid(&mut d)?;
                let role = Role::from_code(d.u8()?)?;
                let signing_key = VerifyingKey::from_bytes(d.take(32)?)?;
                if signing_key.principal_id() != principal {
                    return Err(PolicyError::Malformed("log event: principal id does not match its key"));
                }
                let pre_key = if flag(&mut d)? { Some(d.array()?) } else { None };
                LogEvent::PrincipalRegistered { at, principal, role, signing_key, pre_key }
            }
            1 => LogEvent::DoctorEnrolled { at, doctor: pid(&mut d)?, operator: pid(&mut d)? },
            2 => {
                let header = RecordHeader::from_bytes(d.bytes(MAX_HEADER_LEN)?)?;
                let size = d.u64()?;
                let ciphertext_sha256 = d.array()?;
                LogEvent::RecordPublished { at, header, size, ciphertext_sha256 }
            }
            3 => {
                LogEvent::GrantCreated { at, grant: SignedGrant::from_bytes(d.bytes(MAX_SIGNED_GRANT_LEN)?)? }
            }
            4 => LogEvent::GrantRevoked {
                at,
                revocation: SignedRevocation::from_bytes(d.bytes(MAX_SIGNED_REVOCATION_LEN)?)?,
            },
            5 => LogEvent::ReencryptionServed {
                at,
                grant: GrantId::from_bytes(d.array()?),
                record: RecordId::from_bytes(d.array()?),
                doctor: pid(&mut d)?,
                patient: pid(&mut d)?,
                key_class: KeyClass::from_code(d.u8()?)?,
            },
            6 => {
                let doctor = pid(&mut d)?;
                let record = RecordId::from_bytes(d.array()?);
                let patient = if flag(&mut d)? { Some(pid(&mut d)?) } else { None };
                let reason = Denial::from_byte(d.u8()?)?;
                LogEvent::AccessDenied { at, doctor, record, patient, reason }
            }
            7 => LogEvent::DpQueryAnswered {
                at,
                analyst: pid(&mut d)?,
                schema: d.str(MAX_SCHEMA_NAME_LEN)?.to_owned(),
                epsilon: f64::from_bits(d.u64()?),
                rho: f64::from_bits(d.u64()?),
            },
            8 => LogEvent::SummarySubmitted {
                at,
                patient: pid(&mut d)?,
                schema: d.str(MAX_SCHEMA_NAME_LEN)?.to_owned(),
            },
            9 => {
                let principal = pid(&mut d)?;
                let kind = d.u8()?;
                let what = RefusedObject::from_parts(kind, d.array()?)?;
                let reason = RefusalReason::from_byte(d.u8()?)?;
                LogEvent::RequestRefused { at, principal, what, reason }
            }
            10 => LogEvent::SummaryWithdrawn {
                at,
                patient: pid(&mut d)?,
                schema: d.str(MAX_SCHEMA_NAME_LEN)?.to_owned(),
            },
            11 => LogEvent::SchemaAdded {
                at,
                schema: d.str(MAX_SCHEMA_NAME_LEN)?.to_owned(),
                schema_sha256: d.array()?,
            },
            12 => LogEvent::BudgetSet {
                at,
                analyst: pid(&mut d)?,
                schema: d.str(MAX_SCHEMA_NAME_LEN)?.to_owned(),
                epsilon: f64::from_bits(d.u64()?),
                delta: f64::from_bits(d.u64()?),
            },
            STUDY_TAG => LogEvent::Study { at, event: StudyEvent::decode(&mut d)? },
            _ => return Err(PolicyError::Malformed("log event: unknown event type")),
        };
        d.finish()?;
        event.validate()?;
        Ok(event)
    }
}

/// JSON view of a record header inside an event.
#[derive(serde::Serialize)]
struct HeaderView<'a> {
    record_id: RecordId,
    owner: PrincipalId,
    category: String,
    key_class: KeyClass,
    media_type: &'a str,
    created_at: Timestamp,
}

/// JSON view of an event (for auditors' tools and pages): `{"type": kind,
/// "at": …, fields…}` with ids in hex, keys and signed blobs in base64.
#[derive(serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum EventView<'a> {
    PrincipalRegistered {
        at: Timestamp,
        principal: PrincipalId,
        role: Role,
        signing_key: &'a VerifyingKey,
        pre_key_fingerprint: Option<String>,
    },
    DoctorEnrolled {
        at: Timestamp,
        doctor: PrincipalId,
        operator: PrincipalId,
    },
    RecordPublished {
        at: Timestamp,
        header: HeaderView<'a>,
        size: u64,
        ciphertext_sha256: String,
    },
    GrantCreated {
        at: Timestamp,
        grant: &'a SignedGrant,
    },
    GrantRevoked {
        at: Timestamp,
        revocation: &'a SignedRevocation,
    },
    ReencryptionServed {
        at: Timestamp,
        grant: GrantId,
        record: RecordId,
        doctor: PrincipalId,
        patient: PrincipalId,
        key_class: KeyClass,
    },
    AccessDenied {
        at: Timestamp,
        doctor: PrincipalId,
        record: RecordId,
        patient: Option<PrincipalId>,
        reason: Denial,
    },
    DpQueryAnswered {
        at: Timestamp,
        analyst: PrincipalId,
        schema: &'a str,
        epsilon: f64,
        rho: f64,
    },
    SummarySubmitted {
        at: Timestamp,
        patient: PrincipalId,
        schema: &'a str,
    },
    RequestRefused {
        at: Timestamp,
        principal: PrincipalId,
        what: &'static str,
        object: String,
        reason: RefusalReason,
    },
    SummaryWithdrawn {
        at: Timestamp,
        patient: PrincipalId,
        schema: &'a str,
    },
    SchemaAdded {
        at: Timestamp,
        schema: &'a str,
        schema_sha256: String,
    },
    BudgetSet {
        at: Timestamp,
        analyst: PrincipalId,
        schema: &'a str,
        epsilon: f64,
        delta: f64,
    },
}

impl serde::Serialize for LogEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let view = match self {
            LogEvent::PrincipalRegistered { at, principal, role, signing_key, pre_key } => {
                EventView::PrincipalRegistered {
                    at: *at,
                    principal: *principal,
                    role: *role,
                    signing_key,
                    pre_key_fingerprint: pre_key.map(hex::encode),
                }
            }
            LogEvent::DoctorEnrolled { at, doctor, operator } => {
                EventView::DoctorEnrolled { at: *at, doctor: *doctor, operator: *operator }
            }
            LogEvent::RecordPublished { at, header, size, ciphertext_sha256 } => EventView::RecordPublished {
                at: *at,
                header: HeaderView {
                    record_id: header.record_id(),
                    owner: header.owner(),
                    category: header.category().to_string(),
                    key_class: header.key_class(),
                    media_type: header.media_type(),
                    created_at: header.created_at(),
                },
                size: *size,
                ciphertext_sha256: hex::encode(ciphertext_sha256),
            },
            LogEvent::GrantCreated { at, grant } => EventView::GrantCreated { at: *at, grant },
            LogEvent::GrantRevoked { at, revocation } => EventView::GrantRevoked { at: *at, revocation },
            LogEvent::ReencryptionServed { at, grant, record, doctor, patient, key_class } => {
                EventView::ReencryptionServed {
                    at: *at,
                    grant: *grant,
                    record: *record,
                    doctor: *doctor,
                    patient: *patient,
                    key_class: *key_class,
                }
            }
            LogEvent::AccessDenied { at, doctor, record, patient, reason } => EventView::AccessDenied {
                at: *at,
                doctor: *doctor,
                record: *record,
                patient: *patient,
                reason: *reason,
            },
            LogEvent::DpQueryAnswered { at, analyst, schema, epsilon, rho } => EventView::DpQueryAnswered {
                at: *at,
                analyst: *analyst,
                schema,
                epsilon: *epsilon,
                rho: *rho,
            },
            LogEvent::SummarySubmitted { at, patient, schema } => {
                EventView::SummarySubmitted { at: *at, patient: *patient, schema }
            }
            LogEvent::RequestRefused { at, principal, what, reason } => EventView::RequestRefused {
                at: *at,
                principal: *principal,
                what: what.kind(),
                object: hex::encode(what.id_bytes()),
                reason: *reason,
            },
            LogEvent::SummaryWithdrawn { at, patient, schema } => {
                EventView::SummaryWithdrawn { at: *at, patient: *patient, schema }
            }
            LogEvent::SchemaAdded { at, schema, schema_sha256 } => {
                EventView::SchemaAdded { at: *at, schema, schema_sha256: hex::encode(schema_sha256) }
            }
            LogEvent::BudgetSet { at, analyst, schema, epsilon, delta } => {
                EventView::BudgetSet { at: *at, analyst: *analyst, schema, epsilon: *epsilon, delta: *delta }
            }
            LogEvent::Study { at, event } => return event.serialize_at(*at, s),
        };
        view.serialize(s)
    }
}
