//! The authorization decision: may this doctor read this record under this
//! grant, now?

use std::fmt;
use std::str::FromStr;

use medrelay_crypto::{GrantId, KeyClass, PrincipalId, RecordHeader, RecordId, Timestamp};

use crate::error::PolicyError;
use crate::grant::{VerifiedGrant, VerifiedRevocation};
use crate::scope::Mismatch;

/// Why access was refused. Each reason has a stable code that the server
/// sends as the HTTP 403 error code and writes to the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// The grant is for another doctor.
    #[error("the grant is for another doctor")]
    WrongDoctor,
    /// The record belongs to another patient than the grant's.
    #[error("the record is not the granting patient's")]
    WrongPatient,
    /// The patient revoked the grant.
    #[error("the grant was revoked")]
    Revoked,
    /// The grant's validity window has not started.
    #[error("the grant is not valid yet")]
    NotYetValid,
    /// The grant's validity window has ended.
    #[error("the grant has expired")]
    Expired,
    /// The record's type or category is not in the grant's scope.
    #[error("the record is outside the grant's scope")]
    OutOfScope,
    /// The record carries a sensitivity label the grant does not include.
    #[error("the record carries a sensitivity label the grant does not include")]
    SensitiveExcluded,
    /// No grant from the record's owner to this doctor exists.
    #[error("no grant covers this record")]
    NoGrant,
    /// The record carries a category code the grant names, but its other
    /// codes put it in a key class the grant does not cover (an Observation
    /// coded both `vital-signs` and `laboratory` is a laboratory record,
    /// outside a grant of `Observation?category=vital-signs`).
    #[error("the record is in a key class the grant does not cover")]
    ClassNotGranted,
}

impl Denial {
    /// Every reason, in code order.
    pub const ALL: [Denial; 9] = [
        Denial::WrongDoctor,
        Denial::WrongPatient,
        Denial::Revoked,
        Denial::NotYetValid,
        Denial::Expired,
        Denial::OutOfScope,
        Denial::SensitiveExcluded,
        Denial::NoGrant,
        Denial::ClassNotGranted,
    ];

    /// The stable string code (`wrong_doctor`, `not_yet_valid`, …).
    pub const fn code(self) -> &'static str {
        match self {
            Denial::WrongDoctor => "wrong_doctor",
            Denial::WrongPatient => "wrong_patient",
            Denial::Revoked => "revoked",
            Denial::NotYetValid => "not_yet_valid",
            Denial::Expired => "expired",
            Denial::OutOfScope => "out_of_scope",
            Denial::SensitiveExcluded => "sensitive_excluded",
            Denial::NoGrant => "no_grant",
            Denial::ClassNotGranted => "class_not_granted",
        }
    }

    /// The one-byte code used in log encodings.
    pub(crate) fn byte(self) -> u8 {
        match self {
            Denial::WrongDoctor => 0,
            Denial::WrongPatient => 1,
            Denial::Revoked => 2,
            Denial::NotYetValid => 3,
            Denial::Expired => 4,
            Denial::OutOfScope => 5,
            Denial::SensitiveExcluded => 6,
            Denial::NoGrant => 7,
            Denial::ClassNotGranted => 8,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Result<Self, PolicyError> {
        Self::ALL.get(usize::from(b)).copied().ok_or(PolicyError::Malformed("denial reason code"))
    }
}

impl FromStr for Denial {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        Self::ALL.into_iter().find(|d| d.code() == s).ok_or(PolicyError::Malformed("denial reason"))
    }
}

impl serde::Serialize for Denial {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl From<Mismatch> for Denial {
    fn from(m: Mismatch) -> Self {
        match m {
            Mismatch::OutOfScope => Denial::OutOfScope,
            Mismatch::OtherKeyClass => Denial::ClassNotGranted,
            Mismatch::SensitiveExcluded => Denial::SensitiveExcluded,
        }
    }
}

/// Proof that [`authorize`] allowed one doctor to read one record under one
/// grant. It cannot be built any other way (private fields, no `Clone`), and
/// the server's re-encryption path requires it.
pub struct ReadCapability {
    grant_id: GrantId,
    record_id: RecordId,
    doctor: PrincipalId,
    patient: PrincipalId,
    key_class: KeyClass,
}

impl ReadCapability {
    /// The grant that allowed the read.
    pub fn grant_id(&self) -> GrantId {
        self.grant_id
    }
    /// The record.
    pub fn record_id(&self) -> RecordId {
        self.record_id
    }
    /// The reader.
    pub fn doctor(&self) -> PrincipalId {
        self.doctor
    }
    /// The record's owner.
    pub fn patient(&self) -> PrincipalId {
        self.patient
    }
    /// The key class whose re-encryption key is to be used.
    pub fn key_class(&self) -> KeyClass {
        self.key_class
    }
}

impl fmt::Debug for ReadCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadCapability")
            .field("grant_id", &self.grant_id)
            .field("record_id", &self.record_id)
            .field("doctor", &self.doctor)
            .field("key_class", &self.key_class)
            .finish()
    }
}

/// Whether `grant` is in force at `now`: not revoked (any revocation passed
/// in counts, failing closed) and inside its validity window
/// `[not_before, not_after)`. [`authorize`] applies the same checks, in the
/// same order, before looking at any record; servers use this alone where
/// there is no single record to decide on (e.g. listing a patient's
/// records).
pub fn grant_in_force(
    grant: &VerifiedGrant,
    revocation: Option<&VerifiedRevocation>,
    now: Timestamp,
) -> Result<(), Denial> {
    if revocation.is_some() {
        return Err(Denial::Revoked);
    }
    if now < grant.not_before() {
        return Err(Denial::NotYetValid);
    }
    if now >= grant.not_after() {
        return Err(Denial::Expired);
    }
    Ok(())
}

/// Decides whether `doctor` may read the record described by `header` under
/// `grant` at time `now`. `revocation` is the grant's revocation if the
/// patient revoked it; any revocation passed in denies (fail closed, even if
/// it names another grant, which would be a caller bug).
///
/// Checks, in order: doctor, record owner, revocation, validity window
/// `[not_before, not_after)`, scope (type and category), the key class the
/// record's codes give (see [`crate::Scope::key_classes`]), sensitivity
/// labels.
pub fn authorize(
    grant: &VerifiedGrant,
    doctor: &PrincipalId,
    header: &RecordHeader,
    revocation: Option<&VerifiedRevocation>,
    now: Timestamp,
) -> Result<ReadCapability, Denial> {
    if grant.doctor() != *doctor {
        return Err(Denial::WrongDoctor);
    }
    if header.owner() != grant.patient() {
        return Err(Denial::WrongPatient);
    }
    grant_in_force(grant, revocation, now)?;
    match grant.scope().check(header.category()) {
        Ok(()) => {}
        Err(m) => return Err(m.into()),
    }
    // Defence in depth: the record's class must be one the grant has a
    // re-encryption key for (implied by the scope check).
    if !grant.scope().key_classes().contains(&header.key_class()) {
        return Err(Denial::ClassNotGranted);
    }
    Ok(ReadCapability {
        grant_id: grant.grant_id(),
        record_id: header.record_id(),
        doctor: *doctor,
        patient: grant.patient(),
        key_class: header.key_class(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn codes_are_stable_and_round_trip() {
        let codes: Vec<&str> = Denial::ALL.iter().map(|d| d.code()).collect();
        assert_eq!(
            codes,
            [
                "wrong_doctor",
                "wrong_patient",
                "revoked",
                "not_yet_valid",
                "expired",
                "out_of_scope",
                "sensitive_excluded",
                "no_grant",
                "class_not_granted"
            ]
        );
        for d in Denial::ALL {
            assert_eq!(d.code().parse::<Denial>().unwrap(), d);
            assert_eq!(Denial::from_byte(d.byte()).unwrap(), d);
        }
        assert!(Denial::from_byte(9).is_err());
        assert!("nope".parse::<Denial>().is_err());
    }
}
