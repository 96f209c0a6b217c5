//! Audit findings: what kind, at which entry, and a one-line description.

use std::fmt;

use medrelay_crypto::{GrantId, KeyClass, PrincipalId, RecordId, Timestamp};

use super::MAX_CLOCK_SKEW_SECONDS;
use crate::authorize::Denial;
use crate::error::PolicyError;
use crate::merkle::MerkleHash;
use crate::principal::Role;

/// What is wrong. Ids are printed in hex in the descriptions.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnomalyKind {
    /// The root recomputed from the entries is not the checkpoint's root.
    RootMismatch {
        /// Root of the supplied entries (the first `tree_size` of them).
        computed: MerkleHash,
        /// The checkpoint's root.
        checkpoint: MerkleHash,
    },
    /// The number of entries is not the checkpoint's tree size.
    SizeMismatch {
        /// Entries supplied.
        entries: u64,
        /// The checkpoint's tree size.
        checkpoint: u64,
    },
    /// The entry does not decode as a [`LogEvent`](crate::LogEvent); it cannot be checked.
    UndecodableEntry {
        /// Why.
        error: PolicyError,
    },
    /// The entry is dated after the audit time (plus
    /// [`MAX_CLOCK_SKEW_SECONDS`]).
    FutureTimestamp {
        /// The entry's time.
        at: Timestamp,
        /// The audit time.
        now: Timestamp,
    },
    /// A principal registered again with the same role and keys.
    DuplicateRegistration {
        /// The principal.
        principal: PrincipalId,
        /// Index of its first registration.
        first: u64,
    },
    /// A principal registered again with a different role.
    RoleChanged {
        /// The principal.
        principal: PrincipalId,
        /// Index of its first registration.
        first: u64,
        /// The first role (the one the audit keeps).
        from: Role,
        /// The role claimed later.
        to: Role,
    },
    /// A principal registered again with a different PRE public key: whoever
    /// holds the new key could read what is re-encrypted to it.
    KeySwap {
        /// The principal.
        principal: PrincipalId,
        /// Index of its first registration.
        first: u64,
    },
    /// A record published for an owner who is not a registered patient.
    RecordByNonPatient {
        /// The record.
        record: RecordId,
        /// Its owner.
        owner: PrincipalId,
        /// The owner's role, if registered.
        role: Option<Role>,
    },
    /// A record id published a second time.
    DuplicateRecord {
        /// The record.
        record: RecordId,
        /// Index of the first publication.
        first: u64,
    },
    /// A grant whose body does not decode or whose signature does not verify
    /// under its patient's registered key.
    ForgedGrant {
        /// The grant id its body claims, if it decodes.
        grant: Option<GrantId>,
    },
    /// A grant whose patient was not registered as a patient before it.
    GrantByNonPatient {
        /// The grant.
        grant: GrantId,
        /// The patient it names.
        patient: PrincipalId,
        /// That principal's role, if registered.
        role: Option<Role>,
    },
    /// A grant to a principal not registered as a doctor before it.
    GrantToNonDoctor {
        /// The grant.
        grant: GrantId,
        /// The grantee.
        doctor: PrincipalId,
        /// The grantee's role, if registered.
        role: Option<Role>,
    },
    /// A grant id logged a second time.
    DuplicateGrant {
        /// The grant.
        grant: GrantId,
        /// Index of the first grant with this id.
        first: u64,
    },
    /// A revocation whose body does not decode or whose signature does not
    /// verify under its patient's registered key.
    ForgedRevocation {
        /// The grant id its body claims, if it decodes.
        grant: Option<GrantId>,
    },
    /// A revocation by a principal not registered as a patient before it.
    RevocationByNonPatient {
        /// The grant it names.
        grant: GrantId,
        /// The patient it names.
        patient: PrincipalId,
        /// That principal's role, if registered.
        role: Option<Role>,
    },
    /// A revocation of a grant the log does not hold before it.
    RevocationOfUnknownGrant {
        /// The grant it names.
        grant: GrantId,
    },
    /// A revocation signed by another patient than the grant's.
    RevocationByOtherPatient {
        /// The grant.
        grant: GrantId,
        /// Who revoked.
        patient: PrincipalId,
        /// The grant's patient.
        grant_patient: PrincipalId,
    },
    /// A grant revoked a second time.
    DuplicateRevocation {
        /// The grant.
        grant: GrantId,
        /// Index of the first revocation.
        first: u64,
    },
    /// A re-encryption under a grant id the log does not hold before it.
    AccessWithoutGrant {
        /// The grant the event names.
        grant: GrantId,
        /// The record.
        record: RecordId,
    },
    /// A re-encryption under a grant the audit rejected (forged, or not from
    /// a patient to a doctor).
    AccessUnderInvalidGrant {
        /// The grant.
        grant: GrantId,
        /// The record.
        record: RecordId,
        /// Index of the rejected grant.
        grant_index: u64,
    },
    /// A re-encryption for another doctor than the grant's.
    AccessWrongDoctor {
        /// The grant.
        grant: GrantId,
        /// The record.
        record: RecordId,
        /// Who was served.
        doctor: PrincipalId,
        /// The grant's doctor.
        grant_doctor: PrincipalId,
    },
    /// A re-encryption under a grant revoked by an earlier entry.
    AccessAfterRevocation {
        /// The grant.
        grant: GrantId,
        /// The record.
        record: RecordId,
        /// Index of the revocation.
        revoked_at: u64,
    },
    /// A re-encryption outside the grant's validity window.
    AccessOutsideWindow {
        /// The grant.
        grant: GrantId,
        /// The record.
        record: RecordId,
        /// The access time.
        at: Timestamp,
        /// Start of validity (inclusive).
        not_before: Timestamp,
        /// End of validity (exclusive).
        not_after: Timestamp,
    },
    /// A re-encryption of a record not published before it.
    AccessToUnknownRecord {
        /// The grant.
        grant: GrantId,
        /// The record.
        record: RecordId,
    },
    /// A re-encryption under a grant of another patient than the record's
    /// owner.
    AccessGrantNotByOwner {
        /// The grant.
        grant: GrantId,
        /// The record.
        record: RecordId,
        /// The record's owner.
        owner: PrincipalId,
        /// The grant's patient.
        grant_patient: PrincipalId,
    },
    /// The event's patient is not the record's owner.
    AccessPatientMismatch {
        /// The record.
        record: RecordId,
        /// The record's owner.
        owner: PrincipalId,
        /// The patient the event names.
        logged: PrincipalId,
    },
    /// The event's key class is not the record's.
    AccessKeyClassMismatch {
        /// The record.
        record: RecordId,
        /// The record's key class.
        record_class: KeyClass,
        /// The key class the event names.
        logged_class: KeyClass,
    },
    /// A re-encryption of a record outside the grant's scope.
    AccessOutOfScope {
        /// The grant.
        grant: GrantId,
        /// The record.
        record: RecordId,
        /// [`Denial::OutOfScope`], [`Denial::ClassNotGranted`] or
        /// [`Denial::SensitiveExcluded`].
        reason: Denial,
    },
}

impl AnomalyKind {
    /// A stable snake_case code (for JSON output and filtering).
    pub fn code(&self) -> &'static str {
        match self {
            Self::RootMismatch { .. } => "root_mismatch",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::UndecodableEntry { .. } => "undecodable_entry",
            Self::FutureTimestamp { .. } => "future_timestamp",
            Self::DuplicateRegistration { .. } => "duplicate_registration",
            Self::RoleChanged { .. } => "role_changed",
            Self::KeySwap { .. } => "key_swap",
            Self::RecordByNonPatient { .. } => "record_by_non_patient",
            Self::DuplicateRecord { .. } => "duplicate_record",
            Self::ForgedGrant { .. } => "forged_grant",
            Self::GrantByNonPatient { .. } => "grant_by_non_patient",
            Self::GrantToNonDoctor { .. } => "grant_to_non_doctor",
            Self::DuplicateGrant { .. } => "duplicate_grant",
            Self::ForgedRevocation { .. } => "forged_revocation",
            Self::RevocationByNonPatient { .. } => "revocation_by_non_patient",
            Self::RevocationOfUnknownGrant { .. } => "revocation_of_unknown_grant",
            Self::RevocationByOtherPatient { .. } => "revocation_by_other_patient",
            Self::DuplicateRevocation { .. } => "duplicate_revocation",
            Self::AccessWithoutGrant { .. } => "access_without_grant",
            Self::AccessUnderInvalidGrant { .. } => "access_under_invalid_grant",
            Self::AccessWrongDoctor { .. } => "access_wrong_doctor",
            Self::AccessAfterRevocation { .. } => "access_after_revocation",
            Self::AccessOutsideWindow { .. } => "access_outside_window",
            Self::AccessToUnknownRecord { .. } => "access_to_unknown_record",
            Self::AccessGrantNotByOwner { .. } => "access_grant_not_by_owner",
            Self::AccessPatientMismatch { .. } => "access_patient_mismatch",
            Self::AccessKeyClassMismatch { .. } => "access_key_class_mismatch",
            Self::AccessOutOfScope { .. } => "access_out_of_scope",
        }
    }

    /// Whether the entries are not the log the checkpoint signs (root or
    /// size mismatch): then nothing else in the report speaks for the log.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::RootMismatch { .. } | Self::SizeMismatch { .. })
    }
}

/// "who is not a registered principal" / "who is registered as a doctor".
struct RoleText(Option<Role>);

impl fmt::Display for RoleText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("who was not a registered principal before this entry"),
            Some(r) => {
                let article =
                    if matches!(r, Role::Analyst | Role::Auditor | Role::Operator) { "an" } else { "a" };
                write!(f, "who is registered as {article} {r}")
            }
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RootMismatch { computed, checkpoint } => write!(
                f,
                "the root recomputed from the entries ({computed}) is not the checkpoint's root \
                 ({checkpoint}): the log was altered"
            ),
            Self::SizeMismatch { entries, checkpoint } if entries < checkpoint => write!(
                f,
                "the checkpoint covers {checkpoint} entries but only {entries} were supplied: \
                 the log is truncated from entry {entries}"
            ),
            Self::SizeMismatch { entries, checkpoint } => write!(
                f,
                "{entries} entries were supplied but the checkpoint covers {checkpoint}: \
                 entries from {checkpoint} on are not covered by it"
            ),
            Self::UndecodableEntry { error } => {
                write!(f, "the entry does not decode as a log event ({error}); it cannot be checked")
            }
            Self::FutureTimestamp { at, now } => write!(
                f,
                "the entry is dated {at}, after the audit time {now} \
                 (plus {MAX_CLOCK_SKEW_SECONDS} s of clock skew)"
            ),
            Self::DuplicateRegistration { principal, first } => {
                write!(f, "principal {principal} registered again (first registered at entry {first})")
            }
            Self::RoleChanged { principal, first, from, to } => write!(
                f,
                "principal {principal}, registered as {from} at entry {first}, registered again as {to}"
            ),
            Self::KeySwap { principal, first } => write!(
                f,
                "key swap: principal {principal} registered again with a different PRE public key \
                 (first registered at entry {first})"
            ),
            Self::RecordByNonPatient { record, owner, role } => {
                write!(f, "record {record} published for owner {owner}, {}", RoleText(*role))
            }
            Self::DuplicateRecord { record, first } => {
                write!(f, "record {record} published again (first published at entry {first})")
            }
            Self::ForgedGrant { grant: Some(g) } => write!(
                f,
                "grant {g} does not verify under its patient's registered signing key (forged or altered)"
            ),
            Self::ForgedGrant { grant: None } => f.write_str("a grant whose signed body does not decode"),
            Self::GrantByNonPatient { grant, patient, role } => {
                write!(f, "grant {grant} names patient {patient}, {}", RoleText(*role))
            }
            Self::GrantToNonDoctor { grant, doctor, role } => {
                write!(f, "grant {grant} is to {doctor}, {}", RoleText(*role))
            }
            Self::DuplicateGrant { grant, first } => {
                write!(f, "grant {grant} logged again (first logged at entry {first})")
            }
            Self::ForgedRevocation { grant: Some(g) } => write!(
                f,
                "the revocation of grant {g} does not verify under its patient's registered signing key"
            ),
            Self::ForgedRevocation { grant: None } => {
                f.write_str("a revocation whose signed body does not decode")
            }
            Self::RevocationByNonPatient { grant, patient, role } => {
                write!(f, "revocation of grant {grant} by {patient}, {}", RoleText(*role))
            }
            Self::RevocationOfUnknownGrant { grant } => {
                write!(f, "revocation of grant {grant}, which the log does not hold before this entry")
            }
            Self::RevocationByOtherPatient { grant, patient, grant_patient } => {
                write!(f, "grant {grant} of patient {grant_patient} revoked by another patient, {patient}")
            }
            Self::DuplicateRevocation { grant, first } => {
                write!(f, "grant {grant} revoked again (first revoked at entry {first})")
            }
            Self::AccessWithoutGrant { grant, record } => write!(
                f,
                "record {record} re-encrypted under grant {grant}, which the log does not hold before \
                 this entry"
            ),
            Self::AccessUnderInvalidGrant { grant, record, grant_index } => write!(
                f,
                "record {record} re-encrypted under grant {grant}, which the audit rejected at entry \
                 {grant_index}"
            ),
            Self::AccessWrongDoctor { grant, record, doctor, grant_doctor } => write!(
                f,
                "record {record} re-encrypted for doctor {doctor} under grant {grant}, which is for \
                 doctor {grant_doctor}"
            ),
            Self::AccessAfterRevocation { grant, record, revoked_at } => write!(
                f,
                "record {record} re-encrypted under grant {grant} after its revocation at entry \
                 {revoked_at}"
            ),
            Self::AccessOutsideWindow { grant, record, at, not_before, not_after } => write!(
                f,
                "record {record} re-encrypted at {at} under grant {grant}, valid only from {not_before} \
                 until before {not_after}"
            ),
            Self::AccessToUnknownRecord { grant, record } => write!(
                f,
                "record {record} re-encrypted under grant {grant}, but the log holds no publication of \
                 it before this entry"
            ),
            Self::AccessGrantNotByOwner { grant, record, owner, grant_patient } => write!(
                f,
                "record {record} of patient {owner} re-encrypted under grant {grant}, signed by another \
                 patient, {grant_patient}"
            ),
            Self::AccessPatientMismatch { record, owner, logged } => write!(
                f,
                "re-encryption of record {record} names patient {logged}, but the record's owner is {owner}"
            ),
            Self::AccessKeyClassMismatch { record, record_class, logged_class } => write!(
                f,
                "re-encryption of record {record} names key class {logged_class}, but the record is in \
                 {record_class}"
            ),
            Self::AccessOutOfScope { grant, record, reason } => {
                write!(f, "record {record} re-encrypted under grant {grant}, but {reason}")
            }
        }
    }
}

/// One finding of a full audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    index: Option<u64>,
    kind: AnomalyKind,
}

impl Anomaly {
    pub(super) fn new(index: Option<u64>, kind: AnomalyKind) -> Self {
        Self { index, kind }
    }

    /// The log entry it concerns, from 0. `None` for a root mismatch, which
    /// concerns the log as a whole; a size mismatch names the first entry
    /// missing (truncated log) or not covered by the checkpoint.
    pub fn index(&self) -> Option<u64> {
        self.index
    }

    /// What is wrong.
    pub fn kind(&self) -> &AnomalyKind {
        &self.kind
    }

    /// A one-line human-readable description (the `Display` form).
    pub fn description(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "entry {i}: {}", self.kind),
            None => write!(f, "log: {}", self.kind),
        }
    }
}

/// JSON view of an anomaly: `{"index", "code", "fatal", "description"}`.
#[derive(serde::Serialize)]
struct AnomalyView {
    index: Option<u64>,
    code: &'static str,
    fatal: bool,
    description: String,
}

impl serde::Serialize for Anomaly {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        AnomalyView {
            index: self.index,
            code: self.kind.code(),
            fatal: self.kind.is_fatal(),
            description: self.to_string(),
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::merkle::hash_leaf;

    #[test]
    fn codes_are_distinct_and_only_root_and_size_are_fatal() {
        let g = GrantId::from_bytes([1; 16]);
        let r = RecordId::from_bytes([2; 16]);
        let p = PrincipalId::from_bytes([3; 32]);
        let h = hash_leaf(b"x");
        let kinds = [
            AnomalyKind::RootMismatch { computed: h, checkpoint: h },
            AnomalyKind::SizeMismatch { entries: 1, checkpoint: 2 },
            AnomalyKind::UndecodableEntry { error: PolicyError::Malformed("x") },
            AnomalyKind::FutureTimestamp { at: Timestamp(2), now: Timestamp(1) },
            AnomalyKind::DuplicateRegistration { principal: p, first: 0 },
            AnomalyKind::RoleChanged { principal: p, first: 0, from: Role::Patient, to: Role::Doctor },
            AnomalyKind::KeySwap { principal: p, first: 0 },
            AnomalyKind::RecordByNonPatient { record: r, owner: p, role: None },
            AnomalyKind::DuplicateRecord { record: r, first: 0 },
            AnomalyKind::ForgedGrant { grant: None },
            AnomalyKind::GrantByNonPatient { grant: g, patient: p, role: Some(Role::Auditor) },
            AnomalyKind::GrantToNonDoctor { grant: g, doctor: p, role: None },
            AnomalyKind::DuplicateGrant { grant: g, first: 0 },
            AnomalyKind::ForgedRevocation { grant: Some(g) },
            AnomalyKind::RevocationByNonPatient { grant: g, patient: p, role: None },
            AnomalyKind::RevocationOfUnknownGrant { grant: g },
            AnomalyKind::RevocationByOtherPatient { grant: g, patient: p, grant_patient: p },
            AnomalyKind::DuplicateRevocation { grant: g, first: 0 },
            AnomalyKind::AccessWithoutGrant { grant: g, record: r },
            AnomalyKind::AccessUnderInvalidGrant { grant: g, record: r, grant_index: 0 },
            AnomalyKind::AccessWrongDoctor { grant: g, record: r, doctor: p, grant_doctor: p },
            AnomalyKind::AccessAfterRevocation { grant: g, record: r, revoked_at: 0 },
            AnomalyKind::AccessOutsideWindow {
                grant: g,
                record: r,
                at: Timestamp(0),
                not_before: Timestamp(1),
                not_after: Timestamp(2),
            },
            AnomalyKind::AccessToUnknownRecord { grant: g, record: r },
            AnomalyKind::AccessGrantNotByOwner { grant: g, record: r, owner: p, grant_patient: p },
            AnomalyKind::AccessPatientMismatch { record: r, owner: p, logged: p },
            AnomalyKind::AccessKeyClassMismatch {
                record: r,
                record_class: KeyClass::General,
                logged_class: KeyClass::Genetics,
            },
            AnomalyKind::AccessOutOfScope { grant: g, record: r, reason: Denial::SensitiveExcluded },
        ];
        let codes: std::collections::BTreeSet<_> = kinds.iter().map(AnomalyKind::code).collect();
        assert_eq!(codes.len(), kinds.len());
        for k in &kinds {
            assert_eq!(k.is_fatal(), matches!(k.code(), "root_mismatch" | "size_mismatch"), "{}", k.code());
            assert!(!k.to_string().is_empty());
        }
        assert!(kinds[10].to_string().contains("registered as an auditor"));
        assert!(kinds[11].to_string().contains("not a registered principal"));
    }
}
