//! The patient's operations: keys, FHIR import and file upload (encrypted
//! here, only ciphertext leaves), reading own records, grants and
//! revocations (signed here), and the verified access history.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use medrelay_crypto::{
    decrypt_record_as_owner, encrypt_record, generate_batch, generate_reencryption_key, Batch, GrantId,
    KeyClass, KeyFile, PatientPublicKeys, PatientSecretKeys, PrincipalId, RecordCategory, RecordEnvelope,
    RecordHeader, RecordId, SensitivityLabel, SignedCapsule, SigningKey, Threshold, Timestamp,
    MAX_ENVELOPE_LEN,
};
use medrelay_dp::{derive_summary, Summary, SummaryDoc};
use medrelay_policy::{Grant, LogEvent, Purpose, RefusedObject, Revocation, Scope, SignedGrant};
use medrelay_wire::dp::{SchemaInfo, SummaryReceipt};
use medrelay_wire::{limits, CreateGrantRequest, GrantReceipt, RevokeRequest, Role, B64};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

use crate::dp::{clamp_summary, SummaryPreview};
use crate::http::{Http, ServerOptions};
use crate::keystore::{read_limited, Passphrase, Profile};
use crate::session::{
    create_profile, is_fhir_media_type, media_type_for, open_profile, Connect, GrantSummary, Identity,
    NewPrincipal, OpenedRecord, Progress,
};
use crate::time::now;
use crate::transparency::{fetch_principal, verified_history, verified_schema, VerifiedPrincipal};
use crate::ClientError;

/// The local record index file in the profile.
pub(crate) const RECORDS_FILE: &str = "records.json";
/// Largest file `upload` accepts (the envelope must fit the server's limit).
pub const MAX_UPLOAD_BYTES: u64 = 900 * 1024;
/// Upload batches stay under this many envelope bytes (the JSON body limit
/// is [`limits::MAX_BODY_BYTES`], and base64 adds a third).
const BATCH_BYTES: usize = 5 * 1024 * 1024;
/// Threshold of the re-encryption keys this client issues, signed in each
/// grant: one proxy holds the whole key (the service runs one PRE proxy).
const GRANT_THRESHOLD: Threshold = Threshold::ONE_OF_ONE;

/// What the patient client remembers about a record it uploaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRecord {
    /// Category, display form.
    pub category: String,
    /// Media type.
    pub media_type: String,
    /// Where it came from (file, and `Type/id` for FHIR).
    pub source: String,
    /// Why it carries each of its sensitivity labels (`label: reason`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// A record as `records` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordRow {
    /// Record id.
    pub record_id: RecordId,
    /// Key class.
    pub key_class: KeyClass,
    /// Category (from the local index; `None` for records uploaded from
    /// another machine).
    pub category: Option<String>,
    /// Where it came from.
    pub source: Option<String>,
    /// Envelope size in bytes.
    pub size: u64,
    /// When it was created.
    pub created_at: Timestamp,
}

/// One item of the access history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryItem {
    /// Log index.
    pub index: u64,
    /// When.
    pub at: Timestamp,
    /// Event kind (`re-encryption served`, `access denied`, …).
    pub kind: String,
    /// The record concerned.
    pub record: Option<RecordId>,
    /// The doctor concerned.
    pub doctor: Option<PrincipalId>,
    /// The grant concerned.
    pub grant: Option<GrantId>,
    /// Details (denial reason, key class, scope).
    pub detail: String,
    /// How many identical refusals the entry stands for (1 except for a
    /// coalesced refusal).
    pub count: u32,
}

/// What `history` returns: items, each proven in the log, and the
/// checkpoint they were proven against.
#[derive(Clone, Debug, Serialize)]
pub struct History {
    /// Items in log order.
    pub items: Vec<HistoryItem>,
    /// Size of the verified checkpoint.
    pub tree_size: u64,
}

/// A patient profile, opened.
pub struct Patient {
    pub(crate) profile: Profile,
    pub(crate) sk: Arc<SigningKey>,
    pub(crate) keys: PatientSecretKeys,
    pub(crate) http: Http,
}

impl std::fmt::Debug for Patient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patient").field("principal", &self.profile.info().principal).finish_non_exhaustive()
    }
}

fn record_error<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> ClientError {
    move |e| ClientError::Invalid(format!("{what}: {e}"))
}

impl Patient {
    /// Creates keys in `dir`, registers them on the server, and opens the
    /// new profile.
    pub fn init(
        dir: &Path,
        server: &ServerOptions,
        name: &str,
        passphrase: &Passphrase,
    ) -> Result<Self, ClientError> {
        let keys = KeyFile::new_patient(&mut OsRng);
        let secret =
            keys.patient_keys().ok_or_else(|| ClientError::Protocol("not a patient key file".into()))?;
        let public = secret.public_keys().to_bytes();
        let (profile, http, sk) = create_profile(
            NewPrincipal { dir, server, role: Role::Patient, name, enrollment_token: None, passphrase },
            &keys,
            public,
        )?;
        Ok(Self { profile, sk, keys: secret, http })
    }

    /// Opens the profile in `dir`.
    pub fn open(dir: &Path, connect: &Connect, passphrase: &Passphrase) -> Result<Self, ClientError> {
        let (profile, keys, http, sk) = open_profile(dir, Role::Patient, connect, passphrase)?;
        let keys = keys.patient_keys().ok_or_else(|| ClientError::profile(dir, "not a patient key file"))?;
        Ok(Self { profile, sk, keys, http })
    }

    /// Id and fingerprints.
    pub fn whoami(&self) -> Identity {
        Identity::new(&self.profile, &self.sk, Some(self.keys.public_keys().fingerprint()))
    }

    /// The principal id.
    pub fn id(&self) -> PrincipalId {
        self.profile.info().principal
    }

    pub(crate) fn index(&self) -> Result<BTreeMap<String, LocalRecord>, ClientError> {
        Ok(self.profile.read_state(RECORDS_FILE)?.unwrap_or_default())
    }

    pub(crate) fn existing_ids(&self) -> Result<BTreeSet<RecordId>, ClientError> {
        Ok(self.http.all_records_of(&self.id())?.into_iter().map(|r| r.record_id).collect())
    }

    /// Starts a batch of records of `class`: one signed hybrid capsule,
    /// uploaded with the batch's first envelopes.
    pub(crate) fn new_batch(
        &self,
        sk: &SigningKey,
        public: &PatientPublicKeys,
        class: KeyClass,
    ) -> Result<Batch, ClientError> {
        generate_batch(&mut OsRng, sk, public, class).map_err(record_error("starting a batch"))
    }

    /// Encrypts and signs one record under a batch of its key class.
    pub(crate) fn seal_with(
        &self,
        sk: &SigningKey,
        batch: &Batch,
        id: RecordId,
        category: RecordCategory,
        media_type: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let header = RecordHeader::new(id, self.id(), category, media_type, now())
            .map_err(record_error("record header"))?;
        let env = encrypt_record(&mut OsRng, sk, batch, header, body).map_err(record_error("encrypting"))?;
        let bytes = env.to_bytes();
        if bytes.len() > limits::MAX_ENVELOPE_BYTES {
            return Err(ClientError::Invalid(format!(
                "record too large: {} bytes encrypted, the server takes at most {}",
                bytes.len(),
                limits::MAX_ENVELOPE_BYTES
            )));
        }
        Ok(bytes)
    }

    /// Uploads the batch capsules and the envelopes sealed under them in
    /// bounded requests (the capsules go with the first; each request is
    /// one transaction on the server); returns the ids stored.
    pub(crate) fn upload_sealed(
        &self,
        capsules: &[&SignedCapsule],
        sealed: Vec<(RecordId, Vec<u8>)>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Vec<RecordId>, ClientError> {
        let mut stored = Vec::with_capacity(sealed.len());
        let mut batch: Vec<(RecordId, Vec<u8>)> = Vec::new();
        let mut bytes = 0;
        let mut pending: Vec<B64> = capsules.iter().map(|c| B64(c.to_bytes())).collect();
        let mut flush = |batch: &mut Vec<(RecordId, Vec<u8>)>, stored: &mut Vec<RecordId>| {
            if batch.is_empty() {
                return Ok::<(), ClientError>(());
            }
            let ids: Vec<RecordId> = batch.iter().map(|(id, _)| *id).collect();
            let resp = self.http.upload_records(
                std::mem::take(&mut pending),
                batch.drain(..).map(|(_, b)| B64(b)).collect(),
            )?;
            let got: Vec<RecordId> = resp.receipts.iter().map(|r| r.record_id).collect();
            if got != ids {
                return Err(ClientError::Protocol("upload receipts do not match the records sent".into()));
            }
            stored.extend(ids);
            progress(stored.len() as u64);
            Ok(())
        };
        for (id, env) in sealed {
            if batch.len() == limits::MAX_BATCH_RECORDS
                || (bytes + env.len() > BATCH_BYTES && !batch.is_empty())
            {
                flush(&mut batch, &mut stored)?;
                bytes = 0;
            }
            bytes += env.len();
            batch.push((id, env));
        }
        flush(&mut batch, &mut stored)?;
        Ok(stored)
    }

    /// Encrypts and uploads any file (PDF, image, …) as a
    /// `DocumentReference` with the given category code and labels. The
    /// record id comes from the content, so uploading the same file twice
    /// is reported as already present (`Ok(None)`).
    pub fn upload(
        &self,
        path: &Path,
        category_code: &str,
        labels: &[SensitivityLabel],
    ) -> Result<Option<RecordId>, ClientError> {
        let body = zeroize::Zeroizing::new(read_limited(path, MAX_UPLOAD_BYTES).map_err(|e| match e {
            ClientError::Profile { .. } => {
                ClientError::Invalid(format!("{}: larger than {MAX_UPLOAD_BYTES} bytes", path.display()))
            }
            other => other,
        })?);
        self.upload_bytes(&path.display().to_string(), &body, category_code, labels)
    }

    /// [`Patient::upload`] for a file already in memory (the web app's
    /// upload), named `name` (its extension gives the media type).
    pub fn upload_bytes(
        &self,
        name: &str,
        body: &[u8],
        category_code: &str,
        labels: &[SensitivityLabel],
    ) -> Result<Option<RecordId>, ClientError> {
        if body.len() as u64 > MAX_UPLOAD_BYTES {
            return Err(ClientError::Invalid(format!("{name}: larger than {MAX_UPLOAD_BYTES} bytes")));
        }
        let category =
            RecordCategory::new("DocumentReference", [category_code.to_owned()], labels.iter().copied())
                .map_err(record_error("category"))?;
        let id = medrelay_fhir::file_record_id(&self.id(), body);
        if self.existing_ids()?.contains(&id) {
            return Ok(None);
        }
        let media_type = media_type_for(Path::new(name));
        let local = LocalRecord {
            category: category.to_string(),
            media_type: media_type.into(),
            source: name.to_owned(),
            labels: labels.iter().map(|l| format!("{l}: given on upload")).collect(),
        };
        let batch = self.new_batch(&self.sk, &self.keys.public_keys(), category.key_class())?;
        let sealed = self.seal_with(&self.sk, &batch, id, category, media_type, body)?;
        self.upload_sealed(&[batch.capsule()], vec![(id, sealed)], &mut |_| ())?;
        let mut index = self.index()?;
        index.insert(id.to_string(), local);
        self.profile.write_state(RECORDS_FILE, &index)?;
        Ok(Some(id))
    }

    /// Own records on the server, with local details where known.
    pub fn records(&self) -> Result<Vec<RecordRow>, ClientError> {
        let index = self.index()?;
        let list = self.http.all_records_of(&self.id())?;
        Ok(list
            .into_iter()
            .filter(|r| r.owner == self.id())
            .map(|r| {
                let local = index.get(&r.record_id.to_string());
                RecordRow {
                    record_id: r.record_id,
                    key_class: r.key_class,
                    category: local.map(|l| l.category.clone()),
                    source: local.map(|l| l.source.clone()),
                    size: r.size,
                    created_at: r.created_at,
                }
            })
            .collect())
    }

    /// Downloads and decrypts one of the patient's own records.
    pub fn read(&self, id: &RecordId) -> Result<OpenedRecord, ClientError> {
        let (bytes, capsule) = self.http.envelope(id)?;
        let env = RecordEnvelope::from_bytes(&bytes, MAX_ENVELOPE_LEN)
            .map_err(|e| ClientError::Protocol(format!("record {id}: {e}")))?;
        let capsule =
            capsule.ok_or_else(|| ClientError::Protocol(format!("record {id} came without its capsule")))?;
        let capsule = SignedCapsule::from_bytes(&capsule)
            .map_err(|e| ClientError::Protocol(format!("record {id}'s capsule: {e}")))?;
        if env.header().record_id() != *id || env.header().owner() != self.id() {
            return Err(ClientError::Verification(format!(
                "the server answered for {id} with another record"
            )));
        }
        let body = decrypt_record_as_owner(&self.keys, &self.sk.verifying_key(), &capsule, &env)
            .map_err(|_| ClientError::Decryption(*id))?;
        Ok(OpenedRecord { header: env.header().clone(), body })
    }

    /// Looks a doctor up and checks the directory entry (registration
    /// signature, role), so the caller can show the key fingerprint before
    /// granting.
    pub fn doctor(&self, id: &PrincipalId) -> Result<VerifiedPrincipal, ClientError> {
        let d = fetch_principal(&self.http, id).map_err(|e| match e {
            // The server shows a patient doctors only, and answers the same
            // for an unknown id and for any other principal.
            ClientError::Server { code, .. } if code == "not_found" || code == "forbidden" => {
                ClientError::Invalid(format!("unknown doctor id {id}: no doctor with this id on the server"))
            }
            other => other,
        })?;
        d.doctor_key()?;
        Ok(d)
    }

    /// Signs a grant for `doctor` (from [`Patient::doctor`]) valid for
    /// `valid_for_secs` from now, makes one re-encryption key per key class
    /// the scope reaches, and uploads both.
    pub fn grant(
        &self,
        doctor: &VerifiedPrincipal,
        scope: &Scope,
        valid_for_secs: u64,
        purpose: Purpose,
    ) -> Result<GrantSummary, ClientError> {
        let doctor_key = doctor.doctor_key()?;
        // A type no record can have would make that part of the scope reach
        // nothing, silently: refuse it here, before anything is signed.
        for (rt, _) in scope.entries() {
            if !medrelay_fhir::types::is_record_type(rt) {
                return Err(ClientError::Invalid(format!(
                    "the scope names {rt:?}, which is not a FHIR R4 resource type that records have \
                     (check the spelling; e.g. Observation, Condition, Claim, ExplanationOfBenefit)"
                )));
            }
        }
        // The re-encryption keys first: the signed grant names their digests.
        let keys: Vec<_> = scope
            .key_classes()
            .into_iter()
            .map(|class| {
                generate_reencryption_key(
                    &mut OsRng,
                    &self.keys,
                    self.id(),
                    class,
                    &doctor_key,
                    GRANT_THRESHOLD,
                )
            })
            .collect();
        let t = now();
        let grant = Grant::new(
            GrantId::random(&mut OsRng),
            self.id(),
            doctor.id,
            scope.clone(),
            purpose,
            t,
            t.plus_seconds(valid_for_secs),
            t,
        )
        .and_then(|g| {
            g.with_threshold(GRANT_THRESHOLD).with_rekey_digests(keys.iter().map(|k| k.digest()).collect())
        })
        .map_err(record_error("grant"))?;
        let signed = grant.sign(&self.sk).map_err(record_error("signing the grant"))?;
        let rekeys = keys.iter().map(|k| B64(k.to_bytes())).collect();
        let receipt =
            self.http.create_grant(&CreateGrantRequest { grant: B64(signed.to_bytes()), rekeys })?;
        if receipt.grant_id != grant.grant_id() {
            return Err(ClientError::Protocol("the receipt names another grant".into()));
        }
        Ok(GrantSummary::new(&grant, false))
    }

    /// The patient's grants, each signature checked against the patient's
    /// own key (a grant the patient did not sign is a server fault).
    pub fn grants(&self) -> Result<Vec<GrantSummary>, ClientError> {
        let vk = self.sk.verifying_key();
        self.http
            .grants_of_patient(&self.id())?
            .grants
            .into_iter()
            .map(|g| {
                let signed = SignedGrant::from_bytes(g.grant.as_bytes())
                    .map_err(|e| ClientError::Protocol(format!("grant {}: {e}", g.grant_id)))?;
                let verified = signed.verify(&vk).map_err(|_| {
                    ClientError::Verification(format!("grant {} is not signed by this patient", g.grant_id))
                })?;
                if verified.grant().grant_id() != g.grant_id {
                    return Err(ClientError::Verification(format!(
                        "grant {} carries another id",
                        g.grant_id
                    )));
                }
                Ok(GrantSummary::new(verified.grant(), g.revoked))
            })
            .collect()
    }

    /// Signs and uploads a revocation; the server deletes the grant's
    /// re-encryption keys.
    pub fn revoke(&self, id: &GrantId) -> Result<GrantReceipt, ClientError> {
        let rev =
            Revocation::new(*id, self.id(), now()).sign(&self.sk).map_err(record_error("revocation"))?;
        let r = self.http.revoke(id, &RevokeRequest { revocation: B64(rev.to_bytes()) })?;
        if r.grant_id != *id {
            return Err(ClientError::Protocol("the receipt names another grant".into()));
        }
        Ok(r)
    }

    /// Every logged event about the patient (registrations, records, grants,
    /// revocations, accesses served and denied, refusals of the patient's
    /// own requests). The stored checkpoint is advanced (signature +
    /// consistency), and every item is proven to be in the log by an
    /// inclusion proof against it.
    pub fn history(&self, progress: &mut dyn FnMut(Progress)) -> Result<History, ClientError> {
        let (events, checkpoint) = verified_history(&self.http, &self.profile, progress)?;
        let items = events.iter().map(|(i, e)| history_item(*i, e)).collect();
        Ok(History { items, tree_size: checkpoint.tree_size })
    }

    /// The installed DP summary schemas.
    pub fn schemas(&self) -> Result<Vec<SchemaInfo>, ClientError> {
        Ok(self.http.dp_schemas()?.schemas)
    }

    /// What [`Patient::contribute`] would submit for `schema`: fetches the
    /// schema, downloads and decrypts the patient's own FHIR records (here;
    /// other files are skipped), derives the summary and clamps numeric
    /// values into the schema's public bounds (naming the fields it
    /// clamped). Nothing is sent.
    pub fn summary(&self, schema: &str) -> Result<SummaryPreview, ClientError> {
        // The schema decides what is derived from the records: use it only
        // if it is the one the operator installed and logged.
        let schema_def = verified_schema(&self.http, &self.profile, &self.http.dp_schema(schema)?, schema)?;
        let fail = |reason: String| ClientError::Summary { schema: schema.to_owned(), reason };
        let index = self.index()?;
        let mut resources = Vec::new();
        for row in self.http.all_records_of(&self.id())? {
            if row.owner != self.id() {
                continue;
            }
            // Files this client uploaded as non-FHIR are not downloaded.
            if index.get(&row.record_id.to_string()).is_some_and(|l| !is_fhir_media_type(&l.media_type)) {
                continue;
            }
            let record = self.read(&row.record_id)?;
            if !record.is_fhir() {
                continue;
            }
            let entry = record.fhir_entry().map_err(|e| fail(format!("record {}: {e}", row.record_id)))?;
            resources.push(entry.resource);
        }
        let derived = derive_summary(&schema_def, &resources).map_err(|e| fail(e.to_string()))?;
        let records_used = resources.len();
        drop(resources);
        let mut doc = derived.to_doc(&schema_def);
        let clamped = clamp_summary(&schema_def, &mut doc);
        Summary::validate(&schema_def, &doc).map_err(|e| fail(e.to_string()))?;
        Ok(SummaryPreview { schema: schema.to_owned(), doc, records_used, clamped })
    }

    /// Submits a summary from [`Patient::summary`] (after the patient saw
    /// it). A new submission replaces the patient's earlier one.
    pub fn contribute(&self, preview: &SummaryPreview) -> Result<SummaryReceipt, ClientError> {
        if preview.doc.schema != preview.schema {
            return Err(ClientError::Summary {
                schema: preview.schema.clone(),
                reason: format!("the summary is for schema {:?}", preview.doc.schema),
            });
        }
        let receipt = self.http.dp_put_summary(&preview.schema, &preview.doc)?;
        self.check_receipt(&receipt, &preview.schema)?;
        Ok(receipt)
    }

    /// Deletes the patient's summary for `schema`; later queries no longer
    /// see it. [`ClientError::NoSummary`] if there is none.
    pub fn withdraw(&self, schema: &str) -> Result<SummaryReceipt, ClientError> {
        let receipt = self.http.dp_delete_summary(schema)?;
        self.check_receipt(&receipt, schema)?;
        Ok(receipt)
    }

    /// The summary the server holds for the patient in `schema`, if any.
    pub fn stored_summary(&self, schema: &str) -> Result<Option<SummaryDoc>, ClientError> {
        match self.http.dp_own_summary(schema) {
            Ok(doc) => Ok(Some(doc)),
            Err(ClientError::NoSummary(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn check_receipt(&self, receipt: &SummaryReceipt, schema: &str) -> Result<(), ClientError> {
        if receipt.patient != self.id() || receipt.schema != schema {
            return Err(ClientError::Protocol("the receipt names another patient or schema".into()));
        }
        Ok(())
    }
}

/// A log event as a history line.
pub fn history_item(index: u64, event: &LogEvent) -> HistoryItem {
    let mut item = HistoryItem {
        index,
        at: event.timestamp(),
        kind: event.kind().to_owned(),
        record: None,
        doctor: None,
        grant: None,
        detail: String::new(),
        count: event.count(),
    };
    let times = |count: u32| if count > 1 { format!(" (×{count})") } else { String::new() };
    match event {
        LogEvent::PrincipalRegistered { principal, role, .. } => {
            item.detail = format!("{principal} registered as {role}");
        }
        LogEvent::RecordPublished { header, size, .. } => {
            item.record = Some(header.record_id());
            item.detail = format!("{} ({} bytes)", header.category(), size);
        }
        LogEvent::GrantCreated { grant, .. } => {
            if let Ok(g) = Grant::from_bytes(grant.body()) {
                item.grant = Some(g.grant_id());
                item.doctor = Some(g.doctor());
                item.detail = format!("scope {} for {}", g.scope(), g.purpose());
            }
        }
        LogEvent::GrantRevoked { revocation, .. } => {
            if let Ok(r) = Revocation::from_bytes(revocation.body()) {
                item.grant = Some(r.grant_id());
            }
        }
        LogEvent::ReencryptionServed { grant, record, doctor, key_class, .. } => {
            item.grant = Some(*grant);
            item.record = Some(*record);
            item.doctor = Some(*doctor);
            item.detail = format!("key class {key_class}");
        }
        LogEvent::AccessDenied { doctor, record, reason, count, .. } => {
            item.record = Some(*record);
            item.doctor = Some(*doctor);
            item.detail = format!("denied: {}{}", reason.code(), times(*count));
        }
        LogEvent::RequestRefused { principal, what, reason, count, .. } => {
            match what {
                RefusedObject::Record(r) | RefusedObject::Envelope(r) => item.record = Some(*r),
                RefusedObject::Grant(g)
                | RefusedObject::ReencryptionKeys(g)
                | RefusedObject::Revocation(g) => item.grant = Some(*g),
                _ => {}
            }
            item.detail = format!("{principal} refused {what}: {}{}", reason.code(), times(*count));
        }
        _ => {}
    }
    item
}

/// Private studies (see [`crate::study`]).
impl Patient {
    /// The studies the leader offers.
    pub fn studies(&self) -> Result<Vec<medrelay_wire::study::StudyInfo>, ClientError> {
        Ok(self.http.studies()?.studies)
    }

    /// Study `name`, checked against the signed log (definition and schema).
    pub fn study(&self, name: &str) -> Result<crate::study::VerifiedStudy, ClientError> {
        crate::study::verified_study(&self.http, &self.profile, name)
    }

    /// Contributes `preview` (from [`Patient::summary`] for the study's
    /// schema, seen by the patient) to a verified study: one report, its
    /// two shares sealed to the two aggregators. The summary never leaves
    /// in the clear.
    pub fn study_contribute(
        &self,
        study: &crate::study::VerifiedStudy,
        preview: &SummaryPreview,
    ) -> Result<medrelay_wire::study::UploadReportsResponse, ClientError> {
        let report = crate::study::seal_contribution(study, preview, crate::time::now().unix_seconds())?;
        let resp = self.http.upload_study_reports(study.definition().name(), vec![report])?;
        if let Some(r) = resp.refused.first() {
            return Err(ClientError::Server {
                status: 409,
                code: r.code.clone(),
                message: format!("the leader refused the report: {}", r.code),
            });
        }
        Ok(resp)
    }
}
