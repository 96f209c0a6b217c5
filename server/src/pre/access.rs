//! Need to know: what a doctor may see of one patient's records is decided
//! by the doctor's grants from that patient, the same way on every read
//! path (listing, envelope reads, re-encryption).
//!
//! Each stored grant (and revocation) is verified against the patient's
//! registered signing key before use, and each decision goes through
//! `medrelay_policy`: [`grant_in_force`] (not revoked, inside its window)
//! for a listing, [`authorize`] (that, plus scope and sensitivity labels)
//! for one record, whose [`ReadCapability`] is what the re-encryption path
//! requires. An expired or revoked grant is seen here at once, so it stops
//! every read at the same second.

use medrelay_crypto::{PrincipalId, RecordHeader, Timestamp, VerifyingKey};
use medrelay_policy::{
    authorize, grant_in_force, Denial, ReadCapability, SignedGrant, SignedRevocation, VerifiedGrant,
    VerifiedRevocation,
};
use medrelay_wire::limits;

use crate::{ApiError, AppState};

/// A doctor's grants from one patient, verified.
pub(crate) struct DoctorGrants {
    doctor: PrincipalId,
    grants: Vec<(VerifiedGrant, Option<VerifiedRevocation>)>,
}

impl DoctorGrants {
    /// Loads `doctor`'s grants from `patient` and verifies each (and its
    /// revocation) with `patient_key`, the patient's registered key. A
    /// stored grant that does not verify is a server fault (500), never a
    /// reason to allow.
    pub(crate) async fn load(
        state: &AppState,
        doctor: PrincipalId,
        patient: PrincipalId,
        patient_key: &VerifyingKey,
    ) -> Result<Self, ApiError> {
        let stored =
            state.with_store(move |s| s.list_grants_by_doctor(&doctor, limits::MAX_LIST_ITEMS)).await?;
        let mut grants = Vec::new();
        for g in stored.into_iter().filter(|g| g.patient == patient) {
            let verified = SignedGrant::from_bytes(&g.grant)
                .map_err(|e| ApiError::Internal(format!("stored grant: {e}")))?
                .verify(patient_key)
                .map_err(|(e, _)| ApiError::Internal(format!("stored grant: {e}")))?;
            let revocation = match &g.revocation {
                Some(r) => Some(
                    SignedRevocation::from_bytes(r)
                        .map_err(|e| ApiError::Internal(format!("stored revocation: {e}")))?
                        .verify(patient_key)
                        .map_err(|(e, _)| ApiError::Internal(format!("stored revocation: {e}")))?,
                ),
                None => None,
            };
            if revocation.is_some() {
                // Revoked through another replica (over a shared database):
                // this replica's cached keys of the grant go now, too.
                let cache = &state.rekey_cache().0;
                if cache.contains(&g.grant_id) {
                    cache.invalidate(g.grant_id);
                }
            }
            grants.push((verified, revocation));
        }
        Ok(Self { doctor, grants })
    }

    /// No grants (for a principal that is not a patient).
    pub(crate) fn empty(doctor: PrincipalId) -> Self {
        Self { doctor, grants: Vec::new() }
    }

    /// `Ok` if at least one grant is in force at `now`; otherwise why not
    /// (`no_grant` without any grant, else the last grant's reason).
    pub(crate) fn in_force(&self, now: Timestamp) -> Result<(), Denial> {
        let mut denial = Denial::NoGrant;
        for (g, r) in &self.grants {
            match grant_in_force(g, r.as_ref(), now) {
                Ok(()) => return Ok(()),
                Err(d) => denial = d,
            }
        }
        Err(denial)
    }

    /// A capability to read the record `header` describes under the first
    /// grant that allows it, with that grant's end; otherwise why not. Drops
    /// the prepared keys of grants found expired or revoked from the cache.
    pub(crate) fn authorize(
        &self,
        state: &AppState,
        header: &RecordHeader,
        now: Timestamp,
    ) -> Result<(ReadCapability, Timestamp), Denial> {
        let mut denial = Denial::NoGrant;
        for (g, r) in &self.grants {
            match authorize(g, &self.doctor, header, r.as_ref(), now) {
                Ok(cap) => return Ok((cap, g.grant().not_after())),
                Err(d) => {
                    if matches!(d, Denial::Expired | Denial::Revoked) {
                        // Never usable again: drop any prepared keys now.
                        state.rekey_cache().0.remove(&g.grant_id());
                    }
                    denial = d;
                }
            }
        }
        Err(denial)
    }
}
