//! The doctor's operations: enrollment, what is shared now, and fetching
//! records: the server re-encrypts each batch capsule once per grant, this
//! client checks the owner's signature over the capsule and every Umbral
//! capsule-fragment proof (inside `decrypt_batch_key_as_delegate`), opens
//! the batch key once, and checks the owner's signature over each envelope
//! (inside `decrypt_record`) before any plaintext is returned. `fetch_all` writes a patient's chart as one FHIR R4 Bundle (or
//! Bulk Data NDJSON), every resource exactly as the patient published it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use medrelay_crypto::{
    decrypt_batch_key_as_delegate, decrypt_record, BatchKey, CapsuleId, GrantId, KeyClass, KeyFile,
    PatientPublicKeys, PreSecretKey, PrincipalId, RecordEnvelope, RecordId, ReencryptedCapsule,
    SignedCapsule, SigningKey, Threshold, Timestamp, VerifyingKey, BATCH_KEY_LEN, MAX_ENVELOPE_LEN,
};
use medrelay_fhir::export::{collection_bundle, ndjson_by_type, unresolved_references};
use medrelay_fhir::StoredEntry;
use medrelay_policy::{authorize, Denial, SignedGrant, VerifiedGrant};
use medrelay_wire::{DeliveredCapsule, ReencryptItem, ReencryptResponse, ReencryptedRecord, Role};
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
    /// Records the server listed that this client's own policy check
    /// refuses, by reason (`out_of_scope`, `sensitive_excluded`). The server
    /// lists only records a grant in force covers (need to know), so an
    /// honest server leaves this empty: the doctor learns nothing about the
    /// patient's other records, not even how many there are.
    pub withheld: BTreeMap<String, usize>,
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

/// A non-FHIR record (a PDF, an image) written by `fetch_all`.
#[derive(Clone, Debug, Serialize)]
pub struct WrittenRecord {
    /// Record id.
    pub record_id: RecordId,
    /// Category.
    pub category: String,
    /// The file written.
    pub path: PathBuf,
}

/// How `fetch_all` writes the FHIR records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FetchFormat {
    /// One FHIR R4 `collection` Bundle, `bundle.json`.
    #[default]
    Bundle,
    /// FHIR Bulk Data NDJSON, one `<Type>.ndjson` per resource type.
    Ndjson,
}

/// The result of `fetch_all`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FetchAllReport {
    /// The Bundle written (`--format bundle`).
    pub bundle: Option<PathBuf>,
    /// The NDJSON files written (`--format ndjson`).
    pub ndjson: Vec<PathBuf>,
    /// FHIR resources written.
    pub resources: usize,
    /// Of those, by resource type.
    pub by_type: BTreeMap<String, usize>,
    /// References in the Bundle that point at no resource in it (records
    /// not shared with this doctor, or never imported).
    pub unresolved_references: usize,
    /// Other records (PDFs, images), written as files.
    pub files: Vec<WrittenRecord>,
    /// Records the server listed but no grant covers by this client's own
    /// check, by reason (not fetched; empty with an honest server, see
    /// [`SharedPatient::withheld`]).
    pub withheld: BTreeMap<String, usize>,
    /// Records the server refused when fetched, with the reason code.
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

    /// The threshold each of `p`'s grants to this doctor says (verified
    /// against the patient's key): the doctor opens a capsule delivered
    /// under a grant only with that grant's threshold (review finding F7),
    /// never one the proxy chose. Revoked grants are included: a fetch
    /// served (and logged) just before a revocation is verified after it,
    /// and its grant still says, under the patient's signature, how its
    /// capsules open; whether a grant was in force is the server's decision,
    /// made and logged before it served.
    fn grant_thresholds(&self, p: &VerifiedPrincipal) -> Result<BTreeMap<GrantId, Threshold>, ClientError> {
        let mut out = BTreeMap::new();
        for g in self.http.grants_of_doctor(&self.id())?.grants {
            if g.doctor != self.id() || g.patient != p.id {
                continue;
            }
            let signed = SignedGrant::from_bytes(g.grant.as_bytes())
                .map_err(|e| ClientError::Protocol(format!("grant {}: {e}", g.grant_id)))?;
            let verified = signed.verify(&p.signing_key).map_err(|_| {
                ClientError::Verification(format!("grant {} is not signed by its patient", g.grant_id))
            })?;
            if verified.grant_id() != g.grant_id || verified.doctor() != self.id() {
                return Err(ClientError::Verification(format!(
                    "grant {} is listed under another id",
                    g.grant_id
                )));
            }
            out.insert(verified.grant_id(), verified.threshold());
        }
        Ok(out)
    }

    fn shared_with(
        &self,
        patient: &VerifiedPrincipal,
        grants: &[VerifiedGrant],
    ) -> Result<SharedPatient, ClientError> {
        let t = now();
        let me = self.id();
        let mut records = Vec::new();
        let mut withheld: BTreeMap<String, usize> = BTreeMap::new();
        for summary in self.http.all_records_of(&patient.id)? {
            let (bytes, _) = self.http.envelope(&summary.record_id)?;
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
            let decisions: Vec<_> = grants.iter().map(|g| authorize(g, &me, h, None, t)).collect();
            if let Some(cap) = decisions.iter().find_map(|d| d.as_ref().ok()) {
                records.push(SharedRecord {
                    record_id: h.record_id(),
                    category: h.category().to_string(),
                    key_class: h.key_class(),
                    media_type: h.media_type().to_owned(),
                    created_at: h.created_at(),
                    size: summary.size,
                    grant_id: cap.grant_id(),
                });
            } else {
                // In some grant's scope but labelled says more than "out of
                // scope" does.
                let sensitive = decisions.iter().any(|d| matches!(d, Err(Denial::SensitiveExcluded)));
                let why = if sensitive {
                    Denial::SensitiveExcluded.code()
                } else {
                    decisions.iter().find_map(|d| d.as_ref().err()).map_or("no_grant", |d| d.code())
                };
                *withheld.entry(why.to_owned()).or_default() += 1;
            }
        }
        Ok(SharedPatient {
            patient: patient.id,
            name: patient.name.clone(),
            grants: grants.iter().map(|g| GrantSummary::new(g.grant(), false)).collect(),
            records,
            withheld,
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

    /// Checks and opens one served record with the batch key of its
    /// capsule: from `keys` when this client opened it already, else
    /// opened from the answer's delivered capsule (and kept in `keys`).
    /// `owner` is the expected owner's verified directory entry and decoded
    /// keys, when the caller already holds them (`fetch_all`); otherwise
    /// they are looked up.
    fn open_served(
        &self,
        want: &RecordId,
        served: &ReencryptedRecord,
        delivered: &[DeliveredCapsule],
        keys: &mut BTreeMap<CapsuleId, BatchKey>,
        owner: Option<Owner<'_>>,
    ) -> Result<FetchedRecord, ClientError> {
        if served.record_id != *want {
            return Err(ClientError::Protocol(format!("asked for {want}, got {}", served.record_id)));
        }
        let env = RecordEnvelope::from_bytes(served.envelope.as_bytes(), MAX_ENVELOPE_LEN)
            .map_err(|e| ClientError::Protocol(format!("record {want}: {e}")))?;
        if env.header().record_id() != *want || env.capsule_id() != served.capsule_id {
            return Err(ClientError::Verification(format!(
                "the server answered for {want} with another record"
            )));
        }
        let looked_up;
        let (signing_key, owner_keys, thresholds) = match owner {
            Some(o) if *o.id == env.header().owner() => (o.signing_key, o.keys, o.thresholds),
            Some(_) => {
                return Err(ClientError::Verification(format!(
                    "the server answered for {want} with another patient's record"
                )))
            }
            None => {
                let p = self.patient(&env.header().owner())?;
                let keys = p.patient_keys()?;
                let thresholds = self.grant_thresholds(&p)?;
                looked_up = (p.signing_key, keys, thresholds);
                (&looked_up.0, &looked_up.1, &looked_up.2)
            }
        };
        let capsule_id = env.capsule_id();
        let key = match keys.entry(capsule_id) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let d = delivered
                    .iter()
                    .find(|d| d.capsule_id == capsule_id && d.grant_id == served.grant_id)
                    .ok_or_else(|| {
                        ClientError::Protocol(format!("record {want} came without its capsule"))
                    })?;
                let threshold = *thresholds.get(&d.grant_id).ok_or_else(|| {
                    ClientError::Verification(format!(
                        "record {want} came under grant {}, which is no grant of its patient to this doctor",
                        d.grant_id
                    ))
                })?;
                let key = open_delivered(&self.pre, signing_key, owner_keys, threshold, d)
                    .map_err(|_| ClientError::Decryption(*want))?;
                e.insert(key)
            }
        };
        let body = decrypt_record(&*key, signing_key, &env).map_err(|_| ClientError::Decryption(*want))?;
        Ok(FetchedRecord {
            record: OpenedRecord { header: env.header().clone(), body },
            grant_id: served.grant_id,
            log_index: served.log_index,
        })
    }

    /// Asks the server to re-encrypt one record, verifies and decrypts it.
    /// A denial is [`ClientError::Server`] with the policy's reason code.
    pub fn fetch(&self, id: &RecordId) -> Result<FetchedRecord, ClientError> {
        let ReencryptResponse { items, capsules } = self.http.reencrypt_one(id)?;
        match items.into_iter().next() {
            Some(ReencryptItem::Served(served)) => {
                self.open_served(id, &served, &capsules, &mut BTreeMap::new(), None)
            }
            Some(ReencryptItem::Denied { error, .. }) => {
                Err(ClientError::Server { status: 403, code: error.error, message: error.message })
            }
            None => Err(ClientError::Protocol("empty answer".into())),
        }
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

    /// Asks the server to re-encrypt each record of `ids` (records of
    /// `patient`, in batches), then verifies and decrypts what it serves,
    /// with the patient's keys looked up and checked once. The server
    /// decides and logs each record on its own: a refusal (e.g. `revoked`)
    /// is in [`FetchReport::denied`], not an error; a record of another
    /// patient fails verification.
    pub fn fetch_many(
        &self,
        patient: &PrincipalId,
        ids: &[RecordId],
        progress: &mut dyn FnMut(Progress),
    ) -> Result<FetchReport, ClientError> {
        let p = self.patient(patient)?;
        let keys = p.patient_keys()?;
        self.fetch_from(&p, &keys, ids, progress)
    }

    /// Fetches `ids` in batched requests of [`FETCH_CHUNK`] records: the
    /// server answers with the envelopes and each batch capsule they need
    /// once; this client opens each batch key once, and decrypts the
    /// records of a chunk while the next chunk is on its way (a second
    /// thread sends the requests).
    fn fetch_from(
        &self,
        p: &VerifiedPrincipal,
        keys: &PatientPublicKeys,
        ids: &[RecordId],
        progress: &mut dyn FnMut(Progress),
    ) -> Result<FetchReport, ClientError> {
        let thresholds = self.grant_thresholds(p)?;
        let owner = Some(Owner { id: &p.id, signing_key: &p.signing_key, keys, thresholds: &thresholds });
        let total = ids.len() as u64;
        let mut report = FetchReport::default();
        // The batch keys this profile opened before, sealed in its keystore.
        let store = BatchKeyStore::new(self.profile.dir(), &self.sk);
        let mut batch_keys = store.load()?;
        let kept = batch_keys.len();
        let mut done = 0;
        progress(Progress { done, total });
        let chunks: Vec<&[RecordId]> = ids.chunks(FETCH_CHUNK).collect();
        std::thread::scope(|scope| -> Result<(), ClientError> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<ReencryptResponse, ClientError>>(1);
            let http = &self.http;
            let chunks_ref = &chunks;
            scope.spawn(move || {
                for chunk in chunks_ref {
                    let r = http.reencrypt_batch(chunk.to_vec());
                    let stop = r.is_err();
                    if tx.send(r).is_err() || stop {
                        break;
                    }
                }
            });
            for chunk in &chunks {
                let resp =
                    rx.recv().map_err(|_| ClientError::Protocol("the fetch thread stopped".into()))??;
                if resp.items.len() != chunk.len() {
                    return Err(ClientError::Protocol("batch answer has the wrong length".into()));
                }
                for (want, item) in chunk.iter().zip(&resp.items) {
                    match item {
                        ReencryptItem::Served(served) => {
                            match self.open_served(want, served, &resp.capsules, &mut batch_keys, owner) {
                                Ok(f) => report.fetched.push(f),
                                Err(e) => report.failed.push((*want, e.to_string())),
                            }
                        }
                        ReencryptItem::Denied { record_id, error } => {
                            if record_id != want {
                                return Err(ClientError::Protocol("batch answer out of order".into()));
                            }
                            report.denied.push((*record_id, error.error.clone()));
                        }
                    }
                    done += 1;
                    progress(Progress { done, total });
                }
            }
            Ok(())
        })?;
        if batch_keys.len() != kept {
            store.save(&batch_keys)?;
        }
        Ok(report)
    }

    /// One FHIR R4 `collection` Bundle of `entries` (records of `patient`
    /// this doctor fetched), as `fetch_all` writes it, and how many of its
    /// references resolve to nothing in it.
    pub fn chart_bundle(&self, patient: &PrincipalId, entries: &[StoredEntry]) -> (serde_json::Value, usize) {
        let t = now();
        let id = bundle_id(patient, &self.id(), t);
        let bundle = collection_bundle(entries, &id, &crate::time::format_instant(t));
        let unresolved = unresolved_references(&bundle).len();
        (bundle, unresolved)
    }

    /// Fetches every record of `patient` the doctor may read now, checks
    /// and decrypts each, and writes into `out` (created if missing; files
    /// mode 0600): the FHIR records as one `collection` Bundle,
    /// `bundle.json` (or `<Type>.ndjson` files), other records (PDFs,
    /// images) as `<record id>.<ext>`. The report counts what was withheld
    /// and why.
    ///
    /// One batched request per [`FETCH_CHUNK`] records: the
    /// server answers with the envelopes and each batch capsule they need
    /// once; this client opens each batch key once and decrypts the
    /// records of a chunk while the next chunk is on its way.
    pub fn fetch_all(
        &self,
        patient: &PrincipalId,
        out: &Path,
        format: FetchFormat,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<FetchAllReport, ClientError> {
        let p = self.patient(patient)?;
        let grants = self.active_grants()?.remove(patient).unwrap_or_default();
        if grants.is_empty() {
            return Err(ClientError::Invalid(format!(
                "patient {patient} has no active grant to this doctor"
            )));
        }
        // The owner's keys, checked and decoded once for the whole chart.
        let owner_keys = p.patient_keys()?;
        // The server lists only what a grant in force covers (need to know);
        // each served header is checked again here before it is written.
        let ids: Vec<RecordId> = self.http.all_records_of(&p.id)?.into_iter().map(|r| r.record_id).collect();
        fs::create_dir_all(out).map_err(ClientError::io(out))?;
        let fetched = self.fetch_from(&p, &owner_keys, &ids, progress)?;
        let mut report =
            FetchAllReport { denied: fetched.denied, failed: fetched.failed, ..FetchAllReport::default() };
        let me = self.id();
        let t = now();
        let mut entries: Vec<StoredEntry> = Vec::new();
        for f in fetched.fetched {
            let h = &f.record.header;
            let id = h.record_id();
            let decisions: Vec<_> = grants.iter().map(|g| authorize(g, &me, h, None, t)).collect();
            if decisions.iter().all(|d| d.is_err()) {
                let sensitive = decisions.iter().any(|d| matches!(d, Err(Denial::SensitiveExcluded)));
                let why = if sensitive {
                    Denial::SensitiveExcluded.code()
                } else {
                    decisions.iter().find_map(|d| d.as_ref().err()).map_or("no_grant", |d| d.code())
                };
                *report.withheld.entry(why.to_owned()).or_default() += 1;
            } else if f.record.is_fhir() {
                match f.record.fhir_entry() {
                    Ok(e) => entries.push(e),
                    Err(e) => report.failed.push((id, e.to_string())),
                }
            } else {
                let path = out.join(f.record.file_name());
                write_record_file(&path, &f.record.export_bytes())?;
                report.files.push(WrittenRecord { record_id: id, category: h.category().to_string(), path });
            }
        }
        report.resources = entries.len();
        for e in &entries {
            *report.by_type.entry(e.resource_type().to_owned()).or_default() += 1;
        }
        match format {
            FetchFormat::Bundle => {
                let (bundle, unresolved) = self.chart_bundle(patient, &entries);
                report.unresolved_references = unresolved;
                let mut bytes = serde_json::to_vec_pretty(&bundle)
                    .map_err(|e| ClientError::Invalid(format!("the Bundle does not serialize: {e}")))?;
                bytes.push(b'\n');
                let path = out.join("bundle.json");
                write_record_file(&path, &zeroize::Zeroizing::new(bytes))?;
                report.bundle = Some(path);
            }
            FetchFormat::Ndjson => {
                for (rt, lines) in ndjson_by_type(&entries) {
                    let path = out.join(format!("{rt}.ndjson"));
                    write_record_file(&path, &zeroize::Zeroizing::new(lines))?;
                    report.ndjson.push(path);
                }
            }
        }
        Ok(report)
    }
}

/// The doctor's opened batch keys, sealed (see [`BatchKeyStore`]).
const BATCH_KEYS_FILE: &str = "batch-keys.sealed";
/// Most batch keys kept (the oldest are dropped first).
const MAX_KEPT_BATCH_KEYS: usize = 4096;

/// The batch keys a doctor opened, kept in the profile so that a later
/// fetch of the same batches opens no capsule again: one file, AES-256-GCM
/// under a key derived with HKDF-SHA256 from the doctor's signing key seed
/// (so only this profile's keys open it), the encoded keys concatenated as
/// plaintext. Secret: the keys are zeroized in memory, never printed.
pub(crate) struct BatchKeyStore {
    path: PathBuf,
    key: zeroize::Zeroizing<[u8; 32]>,
}

impl BatchKeyStore {
    pub(crate) fn new(dir: &Path, sk: &SigningKey) -> Self {
        let seed = sk.to_seed();
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, seed.as_ref());
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        hk.expand(crate::domain::BATCH_KEY_STORE, key.as_mut())
            .unwrap_or_else(|_| unreachable!("HKDF-SHA256 always yields 32 bytes"));
        Self { path: dir.join(BATCH_KEYS_FILE), key }
    }

    /// The kept keys (none if the file does not exist yet).
    pub(crate) fn load(&self) -> Result<BTreeMap<CapsuleId, BatchKey>, ClientError> {
        use aes_gcm::aead::{Aead, KeyInit};
        let mut out = BTreeMap::new();
        if !self.path.exists() {
            return Ok(out);
        }
        let limit = (12 + MAX_KEPT_BATCH_KEYS * BATCH_KEY_LEN + 16) as u64;
        let bytes = crate::keystore::read_limited(&self.path, limit)?;
        let corrupt = || ClientError::profile(&self.path, "the sealed batch keys do not open (corrupt file)");
        if bytes.len() < 12 {
            return Err(corrupt());
        }
        let (nonce, ct) = bytes.split_at(12);
        let cipher = aes_gcm::Aes256Gcm::new(self.key.as_ref().into());
        let plain = zeroize::Zeroizing::new(
            cipher.decrypt(aes_gcm::Nonce::from_slice(nonce), ct).map_err(|_| corrupt())?,
        );
        if plain.len() % BATCH_KEY_LEN != 0 {
            return Err(corrupt());
        }
        for chunk in plain.chunks(BATCH_KEY_LEN) {
            let key = BatchKey::from_bytes(chunk).map_err(|_| corrupt())?;
            out.insert(key.capsule_id(), key);
        }
        Ok(out)
    }

    /// Seals `keys` (at most [`MAX_KEPT_BATCH_KEYS`]) into the file, mode
    /// 0600.
    pub(crate) fn save(&self, keys: &BTreeMap<CapsuleId, BatchKey>) -> Result<(), ClientError> {
        use aes_gcm::aead::{Aead, KeyInit};
        use rand::RngCore as _;
        let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(keys.len() * BATCH_KEY_LEN));
        for k in keys.values().take(MAX_KEPT_BATCH_KEYS) {
            plain.extend_from_slice(&k.to_bytes());
        }
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let cipher = aes_gcm::Aes256Gcm::new(self.key.as_ref().into());
        let ct = cipher
            .encrypt(aes_gcm::Nonce::from_slice(&nonce), plain.as_slice())
            .map_err(|_| ClientError::Invalid("sealing the batch keys failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        crate::keystore::write_private(&self.path, &out)
    }
}

/// Records per batched fetch: small enough that the first records are
/// decrypted while later chunks are on their way.
const FETCH_CHUNK: usize = 256;

/// The patient whose records a fetch opens, checked once: the verified
/// directory entry's signing key, the decoded PRE keys, and the threshold
/// each of the patient's grants to this doctor signs.
#[derive(Clone, Copy)]
struct Owner<'a> {
    id: &'a PrincipalId,
    signing_key: &'a VerifyingKey,
    keys: &'a PatientPublicKeys,
    thresholds: &'a BTreeMap<GrantId, Threshold>,
}

/// Opens a delivered batch capsule: the owner's signature on the capsule,
/// that it is the capsule and grant asked for, every fragment's proof, and
/// at least `threshold` distinct verified fragments, where `threshold` is
/// the one the patient signed in the grant the capsule came under, never
/// one the proxy's answer implies.
fn open_delivered(
    pre: &PreSecretKey,
    owner_vk: &VerifyingKey,
    owner_keys: &PatientPublicKeys,
    threshold: Threshold,
    d: &DeliveredCapsule,
) -> Result<BatchKey, ClientError> {
    let capsule = SignedCapsule::from_bytes(d.capsule.as_bytes())
        .map_err(|e| ClientError::Protocol(format!("capsule {}: {e}", d.capsule_id)))?;
    if capsule.id() != d.capsule_id {
        return Err(ClientError::Verification(format!("capsule {} carries another id", d.capsule_id)));
    }
    let re = ReencryptedCapsule::from_bytes(d.reencrypted.as_bytes())
        .map_err(|e| ClientError::Protocol(format!("capsule {}: {e}", d.capsule_id)))?;
    decrypt_batch_key_as_delegate(pre, owner_vk, owner_keys, &capsule, &re, threshold)
        .map_err(|_| ClientError::Verification(format!("capsule {} does not open", d.capsule_id)))
}

/// The Bundle's id: not derived from the records (it names this export,
/// by patient, doctor and time).
fn bundle_id(patient: &PrincipalId, doctor: &PrincipalId, t: Timestamp) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::new()
        .chain_update(crate::domain::FETCH_ALL_BUNDLE_ID)
        .chain_update(patient.as_bytes())
        .chain_update(doctor.as_bytes())
        .chain_update(t.unix_seconds().to_be_bytes())
        .finalize();
    hex::encode(&d[..16])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use medrelay_crypto::{generate_batch, KeyClass, PatientSecretKeys};

    use super::*;

    /// Review finding F7: the doctor opens a delivered capsule with the
    /// threshold of the grant it came under. A proxy answer with one
    /// fragment (made with a 1-of-1 key) opens under a 1-of-1 grant and is
    /// refused under a grant that says 2-of-2 or 2-of-3, though every
    /// fragment in it verifies.
    #[test]
    fn a_capsule_opens_only_with_the_grants_threshold_of_fragments() {
        use medrelay_crypto::{generate_reencryption_key, reencrypt_capsule};
        use medrelay_wire::B64;
        let patient = SigningKey::generate(&mut OsRng);
        let secret = PatientSecretKeys::generate(&mut OsRng);
        let public = secret.public_keys();
        let doctor = PreSecretKey::generate(&mut OsRng);
        let class = KeyClass::Laboratory;
        let batch = generate_batch(&mut OsRng, &patient, &public, class).unwrap();
        let rk = generate_reencryption_key(
            &mut OsRng,
            &secret,
            patient.principal_id(),
            class,
            &doctor.public_key(),
            Threshold::ONE_OF_ONE,
        )
        .verify(&patient.verifying_key(), &public, &doctor.public_key())
        .map_err(|(e, _)| e)
        .unwrap();
        let re = reencrypt_capsule(&mut OsRng, &rk, &patient.verifying_key(), batch.capsule()).unwrap();
        let d = DeliveredCapsule {
            capsule_id: batch.capsule_id(),
            grant_id: GrantId::from_bytes([4; 16]),
            capsule: B64(batch.capsule().to_bytes()),
            reencrypted: B64(re.to_bytes()),
        };
        let vk = patient.verifying_key();
        let opened = open_delivered(&doctor, &vk, &public, Threshold::ONE_OF_ONE, &d).unwrap();
        assert_eq!(opened.to_bytes().as_slice(), batch.key().to_bytes().as_slice());
        for (t, n) in [(2, 2), (2, 3)] {
            let grant = Threshold::new(t, n).unwrap();
            assert!(
                matches!(open_delivered(&doctor, &vk, &public, grant, &d), Err(ClientError::Verification(_))),
                "one fragment opened a {t}-of-{n} grant's capsule"
            );
        }
    }

    /// Opened batch keys are kept sealed: they round-trip through the
    /// profile's file, the file holds no key byte in the clear, and another
    /// profile's key or a flipped bit does not open it.
    #[test]
    fn opened_batch_keys_are_kept_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let doctor = SigningKey::generate(&mut OsRng);
        let patient = SigningKey::generate(&mut OsRng);
        let public = PatientSecretKeys::generate(&mut OsRng).public_keys();
        let mut keys = BTreeMap::new();
        for class in [KeyClass::Laboratory, KeyClass::General] {
            let batch = generate_batch(&mut OsRng, &patient, &public, class).unwrap();
            let key = BatchKey::from_bytes(&batch.key().to_bytes()).unwrap();
            keys.insert(key.capsule_id(), key);
        }
        let store = BatchKeyStore::new(dir.path(), &doctor);
        assert!(store.load().unwrap().is_empty(), "no file yet");
        store.save(&keys).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.len(), 2);
        for (id, k) in &keys {
            assert_eq!(loaded[id].to_bytes().as_slice(), k.to_bytes().as_slice());
        }
        let file = std::fs::read(dir.path().join(BATCH_KEYS_FILE)).unwrap();
        for k in keys.values() {
            let secret = &k.to_bytes()[BATCH_KEY_LEN - 32..];
            assert!(!file.windows(32).any(|w| w == secret), "a batch key in the clear");
        }
        let other = BatchKeyStore::new(dir.path(), &SigningKey::generate(&mut OsRng));
        assert!(matches!(other.load(), Err(ClientError::Profile { .. })));
        let mut tampered = file.clone();
        tampered[20] ^= 1;
        std::fs::write(dir.path().join(BATCH_KEYS_FILE), &tampered).unwrap();
        assert!(matches!(store.load(), Err(ClientError::Profile { .. })));
    }
}
