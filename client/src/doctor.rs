//! The doctor's operations: enrollment, what is shared now, and fetching
//! records: the server re-encrypts the capsule, this client checks the
//! owner's signature over the envelope and every Umbral capsule-fragment
//! proof (inside `decrypt_record_as_delegate`) before any plaintext is
//! returned.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use medrelay_crypto::{
    decrypt_record_as_delegate, GrantId, KeyClass, KeyFile, PreSecretKey, PrincipalId, RecordEnvelope,
    RecordId, ReencryptedCapsule, SigningKey, Timestamp, MAX_ENVELOPE_LEN,
};
use medrelay_policy::{authorize, SignedGrant, VerifiedGrant};
use medrelay_wire::{limits, ReencryptItem, ReencryptedRecord, Role};
use rand::rngs::OsRng;
use serde::Serialize;

use crate::http::{Http, ServerOptions};
use crate::keystore::Passphrase;
use crate::patient::{history_item, History};
use crate::session::{
    create_profile, open_profile, Connect, GrantSummary, Identity, NewPrincipal, OpenedRecord, Progress,
};
use crate::time::now;
use crate::transparency::{fetch_principal, verified_history, VerifiedPrincipal};
use crate::ClientError;

/// A record the doctor may read now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SharedRecord {
    /// Record id.
    pub record_id: RecordId,
    /// Category (from the owner-signed header).
    pub category: String,
    /// Key class.
    pub key_class: KeyClass,
    /// Media type.
    pub media_type: String,
    /// When the patient created it.
    pub created_at: Timestamp,
    /// Envelope size.
    pub size: u64,
    /// The grant that covers it.
    pub grant_id: GrantId,
}

/// A patient who shares records with the doctor.
#[derive(Clone, Debug, Serialize)]
pub struct SharedPatient {
    /// Patient id.
    pub patient: PrincipalId,
    /// Display name (pseudonym).
    pub name: String,
    /// Active grants (verified against the patient's key).
    pub grants: Vec<GrantSummary>,
    /// Records those grants cover now.
    pub records: Vec<SharedRecord>,
}

/// A fetched, verified, decrypted record.
#[derive(Debug)]
pub struct FetchedRecord {
    /// The record.
    pub record: OpenedRecord,
    /// The grant the server used.
    pub grant_id: GrantId,
    /// The `re-encryption served` log index.
    pub log_index: u64,
}

/// A record written by `fetch_all`.
#[derive(Clone, Debug, Serialize)]
pub struct WrittenRecord {
    /// Record id.
    pub record_id: RecordId,
    /// Category.
    pub category: String,
    /// The file written.
    pub path: PathBuf,
}

/// The result of `fetch_all`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FetchAllReport {
    /// Written files.
    pub written: Vec<WrittenRecord>,
    /// Records the server refused, with the reason code.
    pub denied: Vec<(RecordId, String)>,
    /// Records that failed verification or decryption (nothing written).
    pub failed: Vec<(RecordId, String)>,
}

/// The result of [`Doctor::fetch_many`]: what was served and opened, what
/// the server refused, and what failed verification.
#[derive(Debug, Default)]
pub struct FetchReport {
    /// Verified, decrypted records, in the order asked.
    pub fetched: Vec<FetchedRecord>,
    /// Records the server refused, with the reason code (`revoked`,
    /// `out_of_scope`, …).
    pub denied: Vec<(RecordId, String)>,
    /// Records that failed verification or decryption (nothing opened).
    pub failed: Vec<(RecordId, String)>,
}

/// A doctor profile, opened.
pub struct Doctor {
    profile: crate::keystore::Profile,
    sk: Arc<SigningKey>,
    pre: PreSecretKey,
    http: Http,
}

impl std::fmt::Debug for Doctor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doctor").field("principal", &self.profile.info().principal).finish_non_exhaustive()
    }
}

/// Writes `bytes` to `path` with mode 0600 (health data).
fn write_record_file(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    crate::keystore::write_private(path, bytes)
}

impl Doctor {
    /// Creates keys in `dir` and enrolls with the operator's one-time token.
    pub fn init(
        dir: &Path,
        server: &ServerOptions,
        name: &str,
        enrollment_token: &str,
        passphrase: &Passphrase,
    ) -> Result<Self, ClientError> {
        let keys = KeyFile::new_doctor(&mut OsRng);
        let pre = keys.doctor_key().ok_or_else(|| ClientError::Protocol("not a doctor key file".into()))?;
        let public = pre.public_key().to_bytes();
        let (profile, http, sk) = create_profile(
            NewPrincipal {
                dir,
                server,
                role: Role::Doctor,
                name,
                enrollment_token: Some(enrollment_token),
                passphrase,
            },
            &keys,
            public,
        )?;
        Ok(Self { profile, sk, pre, http })
    }

    /// Opens the profile in `dir`.
    pub fn open(dir: &Path, connect: &Connect, passphrase: &Passphrase) -> Result<Self, ClientError> {
        let (profile, keys, http, sk) = open_profile(dir, Role::Doctor, connect, passphrase)?;
        let pre = keys.doctor_key().ok_or_else(|| ClientError::profile(dir, "not a doctor key file"))?;
        Ok(Self { profile, sk, pre, http })
    }

    /// Id and fingerprints (a patient compares the PRE key fingerprint
    /// before granting).
    pub fn whoami(&self) -> Identity {
        Identity::new(&self.profile, &self.sk, Some(self.pre.public_key().fingerprint()))
    }

    /// The principal id.
    pub fn id(&self) -> PrincipalId {
        self.profile.info().principal
    }

    fn patient(&self, id: &PrincipalId) -> Result<VerifiedPrincipal, ClientError> {
        let p = fetch_principal(&self.http, id).map_err(|e| match e {
            // The server shows a doctor only the patients who granted them
            // something, and answers the same for an unknown id.
            ClientError::Server { code, .. } if code == "not_found" || code == "forbidden" => {
                ClientError::Invalid(format!("unknown patient id {id}, or no grant from this patient"))
            }
            other => other,
        })?;
        if p.role != Role::Patient {
            return Err(ClientError::Invalid(format!("{id} is not a patient")));
        }
        Ok(p)
    }

    /// Verified, currently valid grants to this doctor, by patient.
    fn active_grants(&self) -> Result<BTreeMap<PrincipalId, Vec<VerifiedGrant>>, ClientError> {
        let t = now();
        let mut by_patient: BTreeMap<PrincipalId, Vec<VerifiedGrant>> = BTreeMap::new();
        let mut keys: BTreeMap<PrincipalId, VerifiedPrincipal> = BTreeMap::new();
        for g in self.http.grants_of_doctor(&self.id())?.grants {
            if g.revoked || g.doctor != self.id() {
                continue;
            }
            let patient = match keys.entry(g.patient) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(self.patient(&g.patient)?),
            };
            let signed = SignedGrant::from_bytes(g.grant.as_bytes())
                .map_err(|e| ClientError::Protocol(format!("grant {}: {e}", g.grant_id)))?;
            let verified = signed.verify(&patient.signing_key).map_err(|_| {
                ClientError::Verification(format!("grant {} is not signed by its patient", g.grant_id))
            })?;
            let gr = verified.grant();
            if gr.doctor() != self.id() || gr.not_before() > t || t >= gr.not_after() {
                continue;
            }
            by_patient.entry(g.patient).or_default().push(verified);
        }
        Ok(by_patient)
    }

    fn shared_with(
        &self,
        patient: &VerifiedPrincipal,
        grants: &[VerifiedGrant],
    ) -> Result<SharedPatient, ClientError> {
        let t = now();
        let me = self.id();
        let mut records = Vec::new();
        for summary in self.http.records_of(&patient.id)?.records {
            let bytes = self.http.envelope(&summary.record_id)?;
            let env = RecordEnvelope::from_bytes(&bytes, MAX_ENVELOPE_LEN)
                .map_err(|e| ClientError::Protocol(format!("record {}: {e}", summary.record_id)))?;
            env.verify_owner(&patient.signing_key).map_err(|_| {
                ClientError::Verification(format!("record {} is not signed by its owner", summary.record_id))
            })?;
            let h = env.header();
            if h.record_id() != summary.record_id || h.owner() != patient.id {
                return Err(ClientError::Verification(format!(
                    "the server answered for {} with another record",
                    summary.record_id
                )));
            }
            if let Some(cap) = grants.iter().find_map(|g| authorize(g, &me, h, None, t).ok()) {
                records.push(SharedRecord {
                    record_id: h.record_id(),
                    category: h.category().to_string(),
                    key_class: h.key_class(),
                    media_type: h.media_type().to_owned(),
                    created_at: h.created_at(),
                    size: summary.size,
                    grant_id: cap.grant_id(),
                });
            }
        }
        Ok(SharedPatient {
            patient: patient.id,
            name: patient.name.clone(),
            grants: grants.iter().map(|g| GrantSummary::new(g.grant(), false)).collect(),
            records,
        })
    }

    /// Patients with active grants to this doctor, and the records each
    /// grant covers now (evaluated here with the policy crate on
    /// owner-signed headers; the server decides again on fetch).
    pub fn shared(&self) -> Result<Vec<SharedPatient>, ClientError> {
        let mut out = Vec::new();
        for (patient, grants) in self.active_grants()? {
            let p = self.patient(&patient)?;
            out.push(self.shared_with(&p, &grants)?);
        }
        Ok(out)
    }

    /// This doctor's own entries in the log (registration, grants received,
    /// accesses served and denied, refused requests), each proven in the
    /// signed log by an inclusion proof against the advanced checkpoint.
    pub fn history(&self, progress: &mut dyn FnMut(Progress)) -> Result<History, ClientError> {
        let (events, checkpoint) = verified_history(&self.http, &self.profile, progress)?;
        let items = events.iter().map(|(i, e)| history_item(*i, e)).collect();
        Ok(History { items, tree_size: checkpoint.tree_size })
    }

    /// Checks and opens one re-encrypted record.
    fn open_served(&self, want: &RecordId, served: &ReencryptedRecord) -> Result<FetchedRecord, ClientError> {
        if served.record_id != *want {
            return Err(ClientError::Protocol(format!("asked for {want}, got {}", served.record_id)));
        }
        let env = RecordEnvelope::from_bytes(served.envelope.as_bytes(), MAX_ENVELOPE_LEN)
            .map_err(|e| ClientError::Protocol(format!("record {want}: {e}")))?;
        if env.header().record_id() != *want {
            return Err(ClientError::Verification(format!(
                "the server answered for {want} with another record"
            )));
        }
        let owner = self.patient(&env.header().owner())?;
        let owner_keys = owner.patient_keys()?;
        let capsule = ReencryptedCapsule::from_bytes(served.capsule.as_bytes())
            .map_err(|_| ClientError::Decryption(*want))?;
        let body = decrypt_record_as_delegate(&self.pre, &owner.signing_key, &owner_keys, &env, &capsule)
            .map_err(|_| ClientError::Decryption(*want))?;
        Ok(FetchedRecord {
            record: OpenedRecord { header: env.header().clone(), body },
            grant_id: served.grant_id,
            log_index: served.log_index,
        })
    }

    /// Asks the server to re-encrypt one record, verifies and decrypts it.
    /// A denial is [`ClientError::Server`] with the policy's reason code.
    pub fn fetch(&self, id: &RecordId) -> Result<FetchedRecord, ClientError> {
        let served = self.http.reencrypt_one(id)?;
        self.open_served(id, &served)
    }

    /// What `patient` shares with this doctor now: the active grants and
    /// the records they cover. [`ClientError::Invalid`] if the patient has
    /// no active grant to this doctor.
    pub fn shared_by(&self, patient: &PrincipalId) -> Result<SharedPatient, ClientError> {
        let p = self.patient(patient)?;
        let grants = self.active_grants()?.remove(patient).unwrap_or_default();
        if grants.is_empty() {
            return Err(ClientError::Invalid(format!(
                "patient {patient} has no active grant to this doctor"
            )));
        }
        self.shared_with(&p, &grants)
    }

    /// Asks the server to re-encrypt each record of `ids` (in batches),
    /// then verifies and decrypts what it serves. The server decides and
    /// logs each record on its own: a refusal (e.g. `revoked`) is in
    /// [`FetchReport::denied`], not an error.
    pub fn fetch_many(
        &self,
        ids: &[RecordId],
        progress: &mut dyn FnMut(Progress),
    ) -> Result<FetchReport, ClientError> {
        let total = ids.len() as u64;
        let mut report = FetchReport::default();
        let mut done = 0;
        progress(Progress { done, total });
        for chunk in ids.chunks(limits::MAX_BATCH_REENCRYPT) {
            let resp = self.http.reencrypt_batch(chunk.to_vec())?;
            if resp.items.len() != chunk.len() {
                return Err(ClientError::Protocol("batch answer has the wrong length".into()));
            }
            for (want, item) in chunk.iter().zip(resp.items) {
                match item {
                    ReencryptItem::Served(served) => match self.open_served(want, &served) {
                        Ok(f) => report.fetched.push(f),
                        Err(e) => report.failed.push((*want, e.to_string())),
                    },
                    ReencryptItem::Denied { record_id, error } => {
                        if record_id != *want {
                            return Err(ClientError::Protocol("batch answer out of order".into()));
                        }
                        report.denied.push((record_id, error.error));
                    }
                }
                done += 1;
                progress(Progress { done, total });
            }
        }
        Ok(report)
    }

    /// Fetches every record of `patient` the doctor may read now into
    /// `out` (one file per record, named by record id, mode 0600).
    pub fn fetch_all(
        &self,
        patient: &PrincipalId,
        out: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<FetchAllReport, ClientError> {
        let p = self.patient(patient)?;
        let grants = self.active_grants()?.remove(patient).unwrap_or_default();
        if grants.is_empty() {
            return Err(ClientError::Invalid(format!(
                "patient {patient} has no active grant to this doctor"
            )));
        }
        let shared = self.shared_with(&p, &grants)?;
        fs::create_dir_all(out).map_err(ClientError::io(out))?;
        let categories: BTreeMap<RecordId, String> =
            shared.records.iter().map(|r| (r.record_id, r.category.clone())).collect();
        let ids: Vec<RecordId> = shared.records.iter().map(|r| r.record_id).collect();
        let total = ids.len() as u64;
        let mut report = FetchAllReport::default();
        let mut done = 0;
        progress(Progress { done, total });
        for chunk in ids.chunks(limits::MAX_BATCH_REENCRYPT) {
            let resp = self.http.reencrypt_batch(chunk.to_vec())?;
            if resp.items.len() != chunk.len() {
                return Err(ClientError::Protocol("batch answer has the wrong length".into()));
            }
            for (want, item) in chunk.iter().zip(resp.items) {
                match item {
                    ReencryptItem::Served(served) => match self.open_served(want, &served) {
                        Ok(f) => {
                            let path = out.join(f.record.file_name());
                            write_record_file(&path, &f.record.export_bytes())?;
                            report.written.push(WrittenRecord {
                                record_id: *want,
                                category: categories.get(want).cloned().unwrap_or_default(),
                                path,
                            });
                        }
                        Err(e) => report.failed.push((*want, e.to_string())),
                    },
                    ReencryptItem::Denied { record_id, error } => {
                        if record_id != *want {
                            return Err(ClientError::Protocol("batch answer out of order".into()));
                        }
                        report.denied.push((record_id, error.error));
                    }
                }
                done += 1;
                progress(Progress { done, total });
            }
        }
        Ok(report)
    }
}
