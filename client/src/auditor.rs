//! The auditor's operations: enrollment, checkpoint verification, and
//! listings of grants and accesses taken from the verified log itself
//! (not from the server's tables), so what an auditor reads is what the
//! signed log commits to.
//!
//! `verify` is the append-only check: the newest checkpoint must be signed
//! by the log key pinned at `init`, be consistent with the checkpoint this
//! auditor stored last time, and the entries the server serves must hash to
//! its root. Only then is it stored. `audit` adds the full policy audit of
//! `medrelay_policy::audit` (every access matched to a grant).

use std::collections::BTreeMap;
use std::path::Path;

use medrelay_crypto::{GrantId, PrincipalId, RecordId, Timestamp, VerifyingKey};
use medrelay_policy::audit::{AuditReport, LogAudit};
use medrelay_policy::{Checkpoint, Grant, LeafOpening, LogEvent, Revocation};
use medrelay_wire::Role;
use serde::Serialize;

use crate::http::ServerOptions;
use crate::keystore::Passphrase;
use crate::session::{Connect, Identity, Progress, SigningSession};
use crate::time::now;
use crate::transparency::{advance_checkpoint, download_log, log_verifier, CheckpointUpdate};
use crate::ClientError;

/// The outcome of `verify`.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// Size of the checkpoint stored before.
    pub previous_size: Option<u64>,
    /// Size of the new checkpoint (now stored).
    pub tree_size: u64,
    /// Its root, hex.
    pub root_hash: String,
    /// The log origin.
    pub origin: String,
}

/// The whole log, verified against a signed checkpoint, decoded.
#[derive(Clone, Debug)]
pub struct VerifiedLog {
    /// The checkpoint it hashes to.
    pub checkpoint: Checkpoint,
    /// Entries (each event with the salt its leaf commits with), in index
    /// order.
    pub entries: Vec<LeafOpening>,
    /// Decoded events, in index order.
    pub events: Vec<LogEvent>,
}

/// A grant as the log records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditGrant {
    /// Grant id.
    pub grant_id: GrantId,
    /// Patient.
    pub patient: PrincipalId,
    /// Doctor.
    pub doctor: PrincipalId,
    /// Scope.
    pub scope: String,
    /// Purpose.
    pub purpose: String,
    /// Valid from.
    pub not_before: Timestamp,
    /// Valid until.
    pub not_after: Timestamp,
    /// Log index of the grant event.
    pub log_index: u64,
    /// When revoked, if it was.
    pub revoked_at: Option<Timestamp>,
    /// Whether the patient signature verifies under the key the patient
    /// registered in the log.
    pub signature_valid: bool,
}

/// An access (served or denied) as the log records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccessItem {
    /// Log index.
    pub index: u64,
    /// When.
    pub at: Timestamp,
    /// `served` or `denied`.
    pub outcome: &'static str,
    /// The doctor.
    pub doctor: PrincipalId,
    /// The patient (absent for a denial on an unknown record).
    pub patient: Option<PrincipalId>,
    /// The record.
    pub record: RecordId,
    /// The grant used (served only).
    pub grant: Option<GrantId>,
    /// Key class re-encrypted, or the denial reason.
    pub detail: String,
    /// How many identical denials the entry stands for (1 for a served
    /// access and an uncoalesced denial).
    pub count: u32,
}

/// Filters for the listings.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only this patient.
    pub patient: Option<PrincipalId>,
    /// Only this doctor.
    pub doctor: Option<PrincipalId>,
}

impl Filter {
    fn keeps(&self, patient: Option<PrincipalId>, doctor: PrincipalId) -> bool {
        self.patient.is_none_or(|p| patient == Some(p)) && self.doctor.is_none_or(|d| d == doctor)
    }
}

/// What [`Auditor::review`] finds in one download of the log.
#[derive(Debug)]
pub struct Review {
    /// The append-only check (as [`Auditor::verify`]).
    pub verify: VerifyReport,
    /// The whole log, verified and decoded.
    pub log: VerifiedLog,
    /// The full audit (as [`Auditor::audit`]).
    pub audit: AuditReport,
}

/// An auditor profile, opened.
pub struct Auditor {
    session: SigningSession,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor").field("principal", &self.session.id()).finish_non_exhaustive()
    }
}

impl Auditor {
    /// Creates a signing key in `dir`, enrolls with the operator's token,
    /// pins the log key and stores the first verified checkpoint.
    pub fn init(
        dir: &Path,
        server: &ServerOptions,
        name: &str,
        enrollment_token: &str,
        passphrase: &Passphrase,
    ) -> Result<Self, ClientError> {
        let session = SigningSession::enroll(dir, server, Role::Auditor, name, enrollment_token, passphrase)?;
        Ok(Self { session })
    }

    /// Opens the profile in `dir`.
    pub fn open(dir: &Path, connect: &Connect, passphrase: &Passphrase) -> Result<Self, ClientError> {
        Ok(Self { session: SigningSession::open(dir, Role::Auditor, connect, passphrase)? })
    }

    /// Id and signing-key fingerprint.
    pub fn whoami(&self) -> Identity {
        self.session.identity()
    }

    /// The append-only check (see the module docs). Fails with
    /// [`ClientError::LogIntegrity`] on a rewritten history.
    pub fn verify(&self, progress: &mut dyn FnMut(Progress)) -> Result<VerifyReport, ClientError> {
        let update = advance_checkpoint(&self.session.http, &self.session.profile, |c| {
            download_log(&self.session.http, c, &mut |done, total| progress(Progress { done, total }))
                .map(drop)
        })?;
        Ok(VerifyReport {
            previous_size: update.previous.map(|c| c.tree_size),
            tree_size: update.current.tree_size,
            root_hash: hex::encode(update.current.root_hash.as_bytes()),
            origin: update.current.origin,
        })
    }

    /// Advances the stored checkpoint and downloads every entry it covers,
    /// checked against its root.
    fn download(
        &self,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(CheckpointUpdate, Vec<LeafOpening>), ClientError> {
        let mut entries = Vec::new();
        let update = advance_checkpoint(&self.session.http, &self.session.profile, |c| {
            entries =
                download_log(&self.session.http, c, &mut |done, total| progress(Progress { done, total }))?;
            Ok(())
        })?;
        Ok((update, entries))
    }

    /// Downloads the whole log under a freshly verified checkpoint (the
    /// stored one is advanced), checks the root, and decodes every event.
    pub fn log(&self, progress: &mut dyn FnMut(Progress)) -> Result<VerifiedLog, ClientError> {
        let (update, entries) = self.download(progress)?;
        let events = decode_all(&entries)?;
        Ok(VerifiedLog { checkpoint: update.current, entries, events })
    }

    /// Replays downloaded entries through the policy audit.
    fn audit_entries(
        &self,
        update: &CheckpointUpdate,
        entries: &[LeafOpening],
    ) -> Result<AuditReport, ClientError> {
        let verifier = log_verifier(&self.session.profile.info().log_key)?;
        let mut audit = LogAudit::new(&update.note, &verifier, now())
            .map_err(|e| ClientError::Verification(format!("checkpoint: {e}")))?;
        for e in entries {
            audit.push_entry(e);
        }
        Ok(audit.finish())
    }

    /// The full audit (`audit --full`): advances the stored checkpoint like
    /// [`Auditor::verify`], downloads every entry it covers, and replays
    /// them through [`medrelay_policy::audit`]: the recomputed root, every
    /// registration, grant and revocation signature, and every
    /// `re-encryption served` matched against a patient-signed, unrevoked,
    /// in-window, in-scope grant the log holds. Anomalies are in the report
    /// (not an error); a server whose entries do not hash to its signed root
    /// fails with [`ClientError::LogIntegrity`].
    pub fn audit(&self, progress: &mut dyn FnMut(Progress)) -> Result<AuditReport, ClientError> {
        let (update, entries) = self.download(progress)?;
        self.audit_entries(&update, &entries)
    }

    /// [`Auditor::verify`], [`Auditor::log`] and [`Auditor::audit`] over
    /// one download: the stored checkpoint is advanced, every entry is
    /// checked against the signed root, decoded, and replayed through the
    /// audit.
    pub fn review(&self, progress: &mut dyn FnMut(Progress)) -> Result<Review, ClientError> {
        let (update, entries) = self.download(progress)?;
        let audit = self.audit_entries(&update, &entries)?;
        let events = decode_all(&entries)?;
        let verify = VerifyReport {
            previous_size: update.previous.map(|c| c.tree_size),
            tree_size: update.current.tree_size,
            root_hash: hex::encode(update.current.root_hash.as_bytes()),
            origin: update.current.origin.clone(),
        };
        Ok(Review { verify, log: VerifiedLog { checkpoint: update.current, entries, events }, audit })
    }

    /// The log verifier key pinned at `init` (C2SP note verifier form).
    pub fn pinned_log_key(&self) -> &str {
        &self.session.profile.info().log_key
    }

    /// Grants recorded in the log, with their revocations.
    pub fn grants(
        &self,
        filter: &Filter,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<AuditGrant>, ClientError> {
        Ok(grants_in(&self.log(progress)?.events, filter))
    }

    /// Accesses served and denied, as recorded in the log.
    pub fn accesses(
        &self,
        filter: &Filter,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<AccessItem>, ClientError> {
        Ok(accesses_in(&self.log(progress)?.events, filter))
    }
}

/// Decodes every downloaded entry's event ([`ClientError::LogIntegrity`]
/// naming the first that does not decode).
fn decode_all(entries: &[LeafOpening]) -> Result<Vec<LogEvent>, ClientError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.event().map_err(|err| ClientError::LogIntegrity(format!("entry {i} does not decode: {err}")))
        })
        .collect()
}

/// The grants among `events` (log order), with revocations applied and each
/// signature checked against the key the patient registered in the log.
pub fn grants_in(events: &[LogEvent], filter: &Filter) -> Vec<AuditGrant> {
    let mut keys: BTreeMap<PrincipalId, VerifyingKey> = BTreeMap::new();
    let mut out: Vec<AuditGrant> = Vec::new();
    let mut revoked: BTreeMap<GrantId, Timestamp> = BTreeMap::new();
    for (i, ev) in events.iter().enumerate() {
        match ev {
            LogEvent::PrincipalRegistered { principal, signing_key, .. } => {
                keys.insert(*principal, *signing_key);
            }
            LogEvent::GrantCreated { grant, .. } => {
                let Ok(g) = Grant::from_bytes(grant.body()) else { continue };
                let signature_valid = keys.get(&g.patient()).is_some_and(|k| grant.clone().verify(k).is_ok());
                out.push(audit_grant(&g, i as u64, signature_valid));
            }
            LogEvent::GrantRevoked { revocation, at } => {
                if let Ok(r) = Revocation::from_bytes(revocation.body()) {
                    revoked.entry(r.grant_id()).or_insert(*at);
                }
            }
            _ => {}
        }
    }
    out.retain(|g| filter.keeps(Some(g.patient), g.doctor));
    for g in &mut out {
        g.revoked_at = revoked.get(&g.grant_id).copied();
    }
    out
}

fn audit_grant(g: &Grant, log_index: u64, signature_valid: bool) -> AuditGrant {
    AuditGrant {
        grant_id: g.grant_id(),
        patient: g.patient(),
        doctor: g.doctor(),
        scope: g.scope().to_string(),
        purpose: g.purpose().to_string(),
        not_before: g.not_before(),
        not_after: g.not_after(),
        log_index,
        revoked_at: None,
        signature_valid,
    }
}

/// The accesses among `events`.
pub fn accesses_in(events: &[LogEvent], filter: &Filter) -> Vec<AccessItem> {
    events
        .iter()
        .enumerate()
        .filter_map(|(i, ev)| match ev {
            LogEvent::ReencryptionServed { at, grant, record, doctor, patient, key_class } => {
                Some(AccessItem {
                    index: i as u64,
                    at: *at,
                    outcome: "served",
                    doctor: *doctor,
                    patient: Some(*patient),
                    record: *record,
                    grant: Some(*grant),
                    detail: key_class.to_string(),
                    count: 1,
                })
            }
            LogEvent::AccessDenied { at, doctor, record, patient, reason, count } => Some(AccessItem {
                index: i as u64,
                at: *at,
                outcome: "denied",
                doctor: *doctor,
                patient: *patient,
                record: *record,
                grant: None,
                detail: reason.code().to_owned(),
                count: *count,
            }),
            _ => None,
        })
        .filter(|a| filter.keeps(a.patient, a.doctor))
        .collect()
}
