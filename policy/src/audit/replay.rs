//! Replay of the log's entries: the state they build (principals, records,
//! grants, revocations) and the rules each entry must follow.

use std::collections::{BTreeMap, HashMap};

use medrelay_crypto::{GrantId, KeyClass, PrincipalId, RecordHeader, RecordId, Timestamp, VerifyingKey};

use super::anomaly::{Anomaly, AnomalyKind};
use super::MAX_CLOCK_SKEW_SECONDS;
use crate::authorize::Denial;
use crate::event::LogEvent;
use crate::grant::{Grant, Revocation, SignedGrant, SignedRevocation};
use crate::principal::Role;

#[derive(Clone, Debug)]
struct PrincipalState {
    index: u64,
    role: Role,
    key: VerifyingKey,
    pre_key: Option<[u8; 32]>,
}

#[derive(Clone, Debug)]
enum GrantState {
    /// Patient-signed, from a registered patient to a registered doctor.
    Valid { index: u64, grant: Box<Grant>, revoked: Option<u64> },
    /// Rejected by the audit (reported at `index`).
    Invalid { index: u64 },
}

impl GrantState {
    fn index(&self) -> u64 {
        match self {
            GrantState::Valid { index, .. } | GrantState::Invalid { index } => *index,
        }
    }
}

/// The replayed state of the log up to the current entry.
#[derive(Debug, Default)]
pub(super) struct Replay {
    principals: HashMap<PrincipalId, PrincipalState>,
    records: HashMap<RecordId, (u64, RecordHeader)>,
    grants: HashMap<GrantId, GrantState>,
    /// Revocations that name a grant the audit rejected (kept so a second
    /// one is still reported as a duplicate).
    revoked_invalid: HashMap<GrantId, u64>,
    pub(super) counts: BTreeMap<&'static str, u64>,
    pub(super) undecodable: u64,
    pub(super) anomalies: Vec<Anomaly>,
}

impl Replay {
    fn report(&mut self, index: u64, kind: AnomalyKind) {
        self.anomalies.push(Anomaly::new(Some(index), kind));
    }

    /// Grants accepted by the audit, unrevoked, whose window contains `now`.
    pub(super) fn active_grants(&self, now: Timestamp) -> u64 {
        let active = |s: &&GrantState| match s {
            GrantState::Valid { grant, revoked: None, .. } => {
                grant.not_before() <= now && now < grant.not_after()
            }
            _ => false,
        };
        self.grants.values().filter(active).count() as u64
    }

    fn role_of(&self, p: &PrincipalId) -> Option<Role> {
        self.principals.get(p).map(|s| s.role)
    }

    /// The signing key of `p` if it was registered as a patient.
    fn patient_key(&self, p: &PrincipalId) -> Option<VerifyingKey> {
        self.principals.get(p).filter(|s| s.role == Role::Patient).map(|s| s.key)
    }

    pub(super) fn entry(&mut self, index: u64, bytes: &[u8], now: Timestamp) {
        let event = match LogEvent::from_bytes(bytes) {
            Ok(e) => e,
            Err(error) => {
                self.undecodable += 1;
                self.report(index, AnomalyKind::UndecodableEntry { error });
                return;
            }
        };
        *self.counts.entry(event.kind()).or_insert(0) += 1;
        let at = event.timestamp();
        if at > now.plus_seconds(MAX_CLOCK_SKEW_SECONDS) {
            self.report(index, AnomalyKind::FutureTimestamp { at, now });
        }
        match event {
            LogEvent::PrincipalRegistered { principal, role, signing_key, pre_key, .. } => {
                self.principal(index, principal, role, signing_key, pre_key);
            }
            LogEvent::RecordPublished { header, .. } => self.record(index, header),
            LogEvent::GrantCreated { grant, .. } => self.grant(index, grant),
            LogEvent::GrantRevoked { revocation, .. } => self.revocation(index, revocation),
            LogEvent::ReencryptionServed { at, grant, record, doctor, patient, key_class } => {
                self.access(index, Access { at, grant, record, doctor, patient, key_class });
            }
            // Counted only: denials, enrolments, DP events and any variant
            // added later.
            _ => {}
        }
    }

    fn principal(
        &mut self,
        index: u64,
        principal: PrincipalId,
        role: Role,
        key: VerifyingKey,
        pre_key: Option<[u8; 32]>,
    ) {
        let Some(first) = self.principals.get(&principal).cloned() else {
            self.principals.insert(principal, PrincipalState { index, role, key, pre_key });
            return;
        };
        // The first registration stays authoritative.
        if first.pre_key != pre_key {
            self.report(index, AnomalyKind::KeySwap { principal, first: first.index });
        }
        if first.role != role {
            self.report(
                index,
                AnomalyKind::RoleChanged { principal, first: first.index, from: first.role, to: role },
            );
        }
        if first.pre_key == pre_key && first.role == role {
            self.report(index, AnomalyKind::DuplicateRegistration { principal, first: first.index });
        }
    }

    fn record(&mut self, index: u64, header: RecordHeader) {
        let (record, owner) = (header.record_id(), header.owner());
        if let Some((first, _)) = self.records.get(&record) {
            let first = *first;
            self.report(index, AnomalyKind::DuplicateRecord { record, first });
            return;
        }
        let role = self.role_of(&owner);
        if role != Some(Role::Patient) {
            self.report(index, AnomalyKind::RecordByNonPatient { record, owner, role });
        }
        self.records.insert(record, (index, header));
    }

    fn grant(&mut self, index: u64, signed: SignedGrant) {
        let Ok(claimed) = Grant::from_bytes(signed.body()) else {
            self.report(index, AnomalyKind::ForgedGrant { grant: None });
            return;
        };
        let id = claimed.grant_id();
        if let Some(first) = self.grants.get(&id).map(GrantState::index) {
            self.report(index, AnomalyKind::DuplicateGrant { grant: id, first });
            return;
        }
        let state = self.check_grant(index, signed, &claimed);
        self.grants.insert(id, state);
    }

    fn check_grant(&mut self, index: u64, signed: SignedGrant, claimed: &Grant) -> GrantState {
        let id = claimed.grant_id();
        let invalid = GrantState::Invalid { index };
        let patient = claimed.patient();
        let Some(key) = self.patient_key(&patient) else {
            let role = self.role_of(&patient);
            self.report(index, AnomalyKind::GrantByNonPatient { grant: id, patient, role });
            return invalid;
        };
        let Ok(verified) = signed.verify(&key) else {
            self.report(index, AnomalyKind::ForgedGrant { grant: Some(id) });
            return invalid;
        };
        let doctor = verified.doctor();
        let role = self.role_of(&doctor);
        if role != Some(Role::Doctor) {
            self.report(index, AnomalyKind::GrantToNonDoctor { grant: id, doctor, role });
            return invalid;
        }
        GrantState::Valid { index, grant: Box::new(verified.grant().clone()), revoked: None }
    }

    fn revocation(&mut self, index: u64, signed: SignedRevocation) {
        let Ok(claimed) = Revocation::from_bytes(signed.body()) else {
            self.report(index, AnomalyKind::ForgedRevocation { grant: None });
            return;
        };
        let (grant, patient) = (claimed.grant_id(), claimed.patient());
        let Some(key) = self.patient_key(&patient) else {
            let role = self.role_of(&patient);
            self.report(index, AnomalyKind::RevocationByNonPatient { grant, patient, role });
            return;
        };
        if signed.verify(&key).is_err() {
            self.report(index, AnomalyKind::ForgedRevocation { grant: Some(grant) });
            return;
        }
        match self.grants.get_mut(&grant) {
            None => self.report(index, AnomalyKind::RevocationOfUnknownGrant { grant }),
            Some(GrantState::Valid { grant: g, revoked, .. }) => {
                if g.patient() != patient {
                    let grant_patient = g.patient();
                    self.report(
                        index,
                        AnomalyKind::RevocationByOtherPatient { grant, patient, grant_patient },
                    );
                } else if let Some(first) = *revoked {
                    self.report(index, AnomalyKind::DuplicateRevocation { grant, first });
                } else {
                    *revoked = Some(index);
                }
            }
            // A patient disowning a grant the audit rejected (already
            // reported there): fine once.
            Some(GrantState::Invalid { .. }) => {
                if let Some(first) = self.revoked_invalid.get(&grant).copied() {
                    self.report(index, AnomalyKind::DuplicateRevocation { grant, first });
                } else {
                    self.revoked_invalid.insert(grant, index);
                }
            }
        }
    }

    fn access(&mut self, index: u64, a: Access) {
        let record = self.records.get(&a.record).map(|(_, h)| h.clone());
        if let Some(h) = &record {
            if h.owner() != a.patient {
                let kind = AnomalyKind::AccessPatientMismatch {
                    record: a.record,
                    owner: h.owner(),
                    logged: a.patient,
                };
                self.report(index, kind);
            }
            if h.key_class() != a.key_class {
                let kind = AnomalyKind::AccessKeyClassMismatch {
                    record: a.record,
                    record_class: h.key_class(),
                    logged_class: a.key_class,
                };
                self.report(index, kind);
            }
        } else {
            self.report(index, AnomalyKind::AccessToUnknownRecord { grant: a.grant, record: a.record });
        }
        let (grant, revoked) = match self.grants.get(&a.grant) {
            None => {
                return self
                    .report(index, AnomalyKind::AccessWithoutGrant { grant: a.grant, record: a.record })
            }
            Some(GrantState::Invalid { index: grant_index }) => {
                let kind = AnomalyKind::AccessUnderInvalidGrant {
                    grant: a.grant,
                    record: a.record,
                    grant_index: *grant_index,
                };
                return self.report(index, kind);
            }
            Some(GrantState::Valid { grant, revoked, .. }) => ((**grant).clone(), *revoked),
        };
        for kind in check_access(&a, &grant, revoked, record.as_ref()) {
            self.report(index, kind);
        }
    }
}

/// The fields of a `ReencryptionServed` event.
struct Access {
    at: Timestamp,
    grant: GrantId,
    record: RecordId,
    doctor: PrincipalId,
    patient: PrincipalId,
    key_class: KeyClass,
}

/// The rules of [`crate::authorize`], applied to a logged access under a
/// valid grant; every violated rule is reported, not only the first.
fn check_access(
    a: &Access,
    grant: &Grant,
    revoked: Option<u64>,
    header: Option<&RecordHeader>,
) -> Vec<AnomalyKind> {
    let (g, r) = (a.grant, a.record);
    let mut out = Vec::new();
    if grant.doctor() != a.doctor {
        out.push(AnomalyKind::AccessWrongDoctor {
            grant: g,
            record: r,
            doctor: a.doctor,
            grant_doctor: grant.doctor(),
        });
    }
    if let Some(h) = header {
        if h.owner() != grant.patient() {
            out.push(AnomalyKind::AccessGrantNotByOwner {
                grant: g,
                record: r,
                owner: h.owner(),
                grant_patient: grant.patient(),
            });
        }
    }
    if let Some(revoked_at) = revoked {
        out.push(AnomalyKind::AccessAfterRevocation { grant: g, record: r, revoked_at });
    }
    if a.at < grant.not_before() || a.at >= grant.not_after() {
        out.push(AnomalyKind::AccessOutsideWindow {
            grant: g,
            record: r,
            at: a.at,
            not_before: grant.not_before(),
            not_after: grant.not_after(),
        });
    }
    if let Some(h) = header {
        let reason = match grant.scope().check(h.category()) {
            Err(m) => Some(Denial::from(m)),
            Ok(()) if !grant.scope().key_classes().contains(&h.key_class()) => Some(Denial::ClassNotGranted),
            Ok(()) => None,
        };
        if let Some(reason) = reason {
            out.push(AnomalyKind::AccessOutOfScope { grant: g, record: r, reason });
        }
    }
    out
}
