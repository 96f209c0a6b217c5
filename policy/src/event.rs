//! Typed audit log events, their canonical, versioned encoding, and who may
//! read each one.
//!
//! Events carry ids, key fingerprints, categories, sizes and hashes, never
//! record content. Grant and revocation events carry the full signed bytes,
//! so an auditor can re-verify each patient signature offline. The Merkle
//! tree does not hold these bytes: each leaf is a salted commitment to them
//! ([`crate::LeafOpening`]), and an event's bytes go only to its
//! [`LogEvent::audience`] and to auditors.
//!
//! Encoding: `MRLE`, version 2, a one-byte event tag, the timestamp, then the
//! event's fields. Version 2 added the `count` of coalesced refusals and the
//! read refusals; new event kinds take new tags, so old readers reject what
//! they cannot interpret instead of misreading it.

use medrelay_crypto::encoding::{Decoder, Encoder};
use medrelay_crypto::{
    GrantId, KeyClass, PrincipalId, RecordHeader, RecordId, Timestamp, VerifyingKey, MAX_HEADER_LEN,
};

use crate::authorize::Denial;
use crate::domain::LOG_EVENT_MAGIC;
use crate::error::PolicyError;
use crate::grant::{
    Grant, Revocation, SignedGrant, SignedRevocation, MAX_SIGNED_GRANT_LEN, MAX_SIGNED_REVOCATION_LEN,
};
use crate::principal::Role;
use crate::refusal::{RefusalReason, RefusedObject};
use crate::study_event::StudyEvent;

const VERSION: u8 = 2;
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
    /// A doctor was refused a record (its re-encryption or its envelope).
    AccessDenied {
        /// When (for a coalesced entry: the last refusal it counts).
        at: Timestamp,
        /// Who asked.
        doctor: PrincipalId,
        /// For what.
        record: RecordId,
        /// The record's owner, if the record exists.
        patient: Option<PrincipalId>,
        /// Why.
        reason: Denial,
        /// How many identical refusals this entry stands for (at least 1;
        /// more than 1 for a coalesced entry).
        count: u32,
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
    /// The server refused a request of an authenticated principal: an
    /// object it submitted (forged or wrongly signed grant, revocation or
    /// re-encryption keys, tampered envelope, someone else's object), a read
    /// it was not entitled to, or an operation of another role; nothing was
    /// stored or served.
    RequestRefused {
        /// When (for a coalesced entry: the last refusal it counts).
        at: Timestamp,
        /// The authenticated principal who asked.
        principal: PrincipalId,
        /// What it asked for or submitted, with the id it claimed (unverified).
        what: RefusedObject,
        /// Why it was refused.
        reason: RefusalReason,
        /// How many identical refusals this entry stands for (at least 1).
        count: u32,
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
    /// The operator suspended a (non-patient) principal: its sessions ended
    /// and every later request of it is refused until reinstated.
    PrincipalSuspended {
        /// When.
        at: Timestamp,
        /// The principal.
        principal: PrincipalId,
    },
    /// The operator lifted a principal's suspension.
    PrincipalReinstated {
        /// When.
        at: Timestamp,
        /// The principal.
        principal: PrincipalId,
    },
    /// A suspended principal proved possession of its key (a signed login)
    /// or presented a session, and was refused. Logged at most once a
    /// minute per principal; the server counts every refusal.
    SuspendedPrincipalRefused {
        /// When.
        at: Timestamp,
        /// The principal.
        principal: PrincipalId,
    },
    /// A private-study event (see [`StudyEvent`]).
    Study {
        /// When.
        at: Timestamp,
        /// What happened.
        event: StudyEvent,
    },
}

/// Who may read an event's bytes (its [`crate::LeafOpening`]) besides
/// auditors, who may read every event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Audience {
    /// These principals (sorted, without duplicates).
    Principals(Vec<PrincipalId>),
    /// Every authenticated principal: operator facts that name no person
    /// (a DP summary schema installed).
    AllPrincipals,
}

impl Audience {
    pub(crate) fn of(mut v: Vec<PrincipalId>) -> Self {
        v.sort();
        v.dedup();
        Audience::Principals(v)
    }

    /// Whether `p` (not an auditor) may read the event.
    pub fn includes(&self, p: &PrincipalId) -> bool {
        match self {
            Audience::Principals(v) => v.binary_search(p).is_ok(),
            Audience::AllPrincipals => true,
        }
    }

    /// The principals named (empty for [`Audience::AllPrincipals`]): whose
    /// own history lists the event.
    pub fn principals(&self) -> &[PrincipalId] {
        match self {
            Audience::Principals(v) => v,
            Audience::AllPrincipals => &[],
        }
    }
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
            | LogEvent::PrincipalSuspended { at, .. }
            | LogEvent::PrincipalReinstated { at, .. }
            | LogEvent::SuspendedPrincipalRefused { at, .. }
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
            LogEvent::PrincipalSuspended { .. } => "principal_suspended",
            LogEvent::PrincipalReinstated { .. } => "principal_reinstated",
            LogEvent::SuspendedPrincipalRefused { .. } => "suspended_principal_refused",
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
            // Operations events start at 20, leaving room below.
            LogEvent::PrincipalSuspended { .. } => 20,
            LogEvent::PrincipalReinstated { .. } => 21,
            LogEvent::SuspendedPrincipalRefused { .. } => 22,
            LogEvent::Study { .. } => STUDY_TAG,
        }
    }

    /// Who may read this event besides auditors: the people it is about.
    ///
    /// - a registration or enrolment: the principal registered;
    /// - a record published, a summary submitted or withdrawn: the patient;
    /// - a grant: its patient and its doctor; a revocation: its patient;
    /// - a re-encryption served: the patient and the doctor;
    /// - an access denied: the doctor, and the record's owner when the
    ///   record exists;
    /// - a DP answer or budget: the analyst;
    /// - a refused request: the principal refused, and also the patient
    ///   whose record list a doctor was refused *because a grant of that
    ///   patient's to the doctor has expired, been revoked or is not valid
    ///   yet* (a doctor without any grant learns nothing about the patient
    ///   from the refusal, and the patient is not told about strangers'
    ///   guesses);
    /// - a schema installed: every authenticated principal;
    /// - a private-study event: see [`StudyEvent::audience`].
    ///
    /// Fails only if a grant or revocation body inside does not decode.
    pub fn audience(&self) -> Result<Audience, PolicyError> {
        Ok(match self {
            LogEvent::PrincipalRegistered { principal, .. } => Audience::of(vec![*principal]),
            LogEvent::DoctorEnrolled { doctor, .. } => Audience::of(vec![*doctor]),
            LogEvent::RecordPublished { header, .. } => Audience::of(vec![header.owner()]),
            LogEvent::GrantCreated { grant, .. } => {
                let g = Grant::from_bytes(grant.body())?;
                Audience::of(vec![g.patient(), g.doctor()])
            }
            LogEvent::GrantRevoked { revocation, .. } => {
                Audience::of(vec![Revocation::from_bytes(revocation.body())?.patient()])
            }
            LogEvent::ReencryptionServed { doctor, patient, .. } => Audience::of(vec![*patient, *doctor]),
            LogEvent::AccessDenied { doctor, patient, .. } => {
                Audience::of(std::iter::once(*doctor).chain(*patient).collect())
            }
            LogEvent::DpQueryAnswered { analyst, .. } | LogEvent::BudgetSet { analyst, .. } => {
                Audience::of(vec![*analyst])
            }
            LogEvent::SummarySubmitted { patient, .. } | LogEvent::SummaryWithdrawn { patient, .. } => {
                Audience::of(vec![*patient])
            }
            LogEvent::RequestRefused { principal, what, reason, .. } => {
                let mut v = vec![*principal];
                if let (RefusedObject::RecordList(patient), RefusalReason::Denied(d)) = (what, reason) {
                    if matches!(d, Denial::Expired | Denial::Revoked | Denial::NotYetValid) {
                        v.push(*patient);
                    }
                }
                Audience::of(v)
            }
            LogEvent::PrincipalSuspended { principal, .. }
            | LogEvent::PrincipalReinstated { principal, .. }
            | LogEvent::SuspendedPrincipalRefused { principal, .. } => Audience::of(vec![*principal]),
            LogEvent::SchemaAdded { .. } => Audience::AllPrincipals,
            LogEvent::Study { event, .. } => event.audience(),
        })
    }

    /// How many identical refusals the entry stands for: `count` of a
    /// refusal event, 1 for every other event.
    pub fn count(&self) -> u32 {
        match self {
            LogEvent::AccessDenied { count, .. } | LogEvent::RequestRefused { count, .. } => *count,
            _ => 1,
        }
    }

    /// Checks the values an encoding cannot carry faithfully (schema names,
    /// DP costs, a refusal count of 0). Call before appending;
    /// [`LogEvent::to_bytes`] assumes it.
    pub fn validate(&self) -> Result<(), PolicyError> {
        match self {
            LogEvent::AccessDenied { count: 0, .. } | LogEvent::RequestRefused { count: 0, .. } => {
                return Err(PolicyError::Malformed("log event: refusal count 0"));
            }
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
            LogEvent::AccessDenied { doctor, record, patient, reason, count, .. } => {
                e.fixed(doctor.as_bytes()).fixed(record.as_bytes());
                match patient {
                    Some(p) => e.u8(1).fixed(p.as_bytes()),
                    None => e.u8(0),
                };
                e.u8(reason.byte()).u32(*count);
            }
            LogEvent::DpQueryAnswered { analyst, schema, epsilon, rho, .. } => {
                e.fixed(analyst.as_bytes()).str(schema).u64(epsilon.to_bits()).u64(rho.to_bits());
            }
            LogEvent::SummarySubmitted { patient, schema, .. }
            | LogEvent::SummaryWithdrawn { patient, schema, .. } => {
                e.fixed(patient.as_bytes()).str(schema);
            }
            LogEvent::RequestRefused { principal, what, reason, count, .. } => {
                e.fixed(principal.as_bytes());
                what.encode(&mut e);
                e.u8(reason.byte()).u32(*count);
            }
            LogEvent::SchemaAdded { schema, schema_sha256, .. } => {
                e.str(schema).fixed(schema_sha256);
            }
            LogEvent::BudgetSet { analyst, schema, epsilon, delta, .. } => {
                e.fixed(analyst.as_bytes()).str(schema).u64(epsilon.to_bits()).u64(delta.to_bits());
            }
            LogEvent::PrincipalSuspended { principal, .. }
            | LogEvent::PrincipalReinstated { principal, .. }
            | LogEvent::SuspendedPrincipalRefused { principal, .. } => {
                e.fixed(principal.as_bytes());
            }
            LogEvent::Study { event, .. } => event.encode(&mut e),
        }
        Ok(e.finish())
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
                let count = d.u32()?;
                LogEvent::AccessDenied { at, doctor, record, patient, reason, count }
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
                let what = RefusedObject::decode(&mut d)?;
                let reason = RefusalReason::from_byte(d.u8()?)?;
                let count = d.u32()?;
                LogEvent::RequestRefused { at, principal, what, reason, count }
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
            20 => LogEvent::PrincipalSuspended { at, principal: pid(&mut d)? },
            21 => LogEvent::PrincipalReinstated { at, principal: pid(&mut d)? },
            22 => LogEvent::SuspendedPrincipalRefused { at, principal: pid(&mut d)? },
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
        count: u32,
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
        count: u32,
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
    PrincipalSuspended {
        at: Timestamp,
        principal: PrincipalId,
    },
    PrincipalReinstated {
        at: Timestamp,
        principal: PrincipalId,
    },
    SuspendedPrincipalRefused {
        at: Timestamp,
        principal: PrincipalId,
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
            LogEvent::AccessDenied { at, doctor, record, patient, reason, count } => {
                EventView::AccessDenied {
                    at: *at,
                    doctor: *doctor,
                    record: *record,
                    patient: *patient,
                    reason: *reason,
                    count: *count,
                }
            }
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
            LogEvent::RequestRefused { at, principal, what, reason, count } => EventView::RequestRefused {
                at: *at,
                principal: *principal,
                what: what.kind(),
                object: what.id_text(),
                reason: *reason,
                count: *count,
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
            LogEvent::PrincipalSuspended { at, principal } => {
                EventView::PrincipalSuspended { at: *at, principal: *principal }
            }
            LogEvent::PrincipalReinstated { at, principal } => {
                EventView::PrincipalReinstated { at: *at, principal: *principal }
            }
            LogEvent::SuspendedPrincipalRefused { at, principal } => {
                EventView::SuspendedPrincipalRefused { at: *at, principal: *principal }
            }
            LogEvent::Study { at, event } => return event.serialize_at(*at, s),
        };
        view.serialize(s)
    }
}
