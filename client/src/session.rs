//! What every role shares: creating a profile (keys, registration, pinned
//! log key, first checkpoint), opening one, identities, decrypted records
//! and grant summaries.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use medrelay_crypto::{
    domain, Fingerprint, GrantId, KeyFile, PrincipalId, RecordHeader, SigningKey, Timestamp,
};
use medrelay_policy::Grant;
use medrelay_wire::{limits, registration_message, RegisterRequest, Role, B64};
use serde::Serialize;
use zeroize::Zeroizing;

use medrelay_fhir::{EntryFormatError, StoredEntry, FHIR_ENTRY_MEDIA_TYPE, FHIR_MEDIA_TYPE};

use crate::domain::NO_PRE_KEYS;
use crate::http::{normalize_url, Http, ServerOptions};
use crate::keystore::{Passphrase, Profile, ProfileInfo, PROFILE_VERSION};
use crate::transparency::{advance_checkpoint, log_verifier};
use crate::ClientError;

/// How to reach the server when opening a profile: by default the URL
/// stored at init; `server` overrides it for one run.
#[derive(Clone, Debug, Default)]
pub struct Connect {
    /// Server URL override.
    pub server: Option<String>,
    /// Extra CA certificate file.
    pub ca_cert: Option<PathBuf>,
}

impl Connect {
    fn options(&self, profile: &Profile) -> ServerOptions {
        let mut o = ServerOptions::new(self.server.clone().unwrap_or_else(|| profile.info().server.clone()));
        o.ca_cert.clone_from(&self.ca_cert);
        o
    }
}

/// Checks a display name the way the server does.
pub fn validate_name(name: &str) -> Result<(), ClientError> {
    if name.trim().is_empty() || name.len() > limits::MAX_NAME_LEN {
        return Err(ClientError::Invalid(format!("name must be 1..={} bytes", limits::MAX_NAME_LEN)));
    }
    if name.chars().any(char::is_control) {
        return Err(ClientError::Invalid("name must not contain control characters".into()));
    }
    Ok(())
}

/// What `init` needs besides the keys.
pub(crate) struct NewPrincipal<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) server: &'a ServerOptions,
    pub(crate) role: Role,
    pub(crate) name: &'a str,
    pub(crate) enrollment_token: Option<&'a str>,
    pub(crate) passphrase: &'a Passphrase,
}

/// Creates a profile: seals the keys, pins the log key, registers the
/// public half, writes `profile.json` and stores the first verified
/// checkpoint. On failure the half-made profile is removed.
pub(crate) fn create_profile(
    p: NewPrincipal<'_>,
    keys: &KeyFile,
    pre_public_keys: Vec<u8>,
) -> Result<(Profile, Http, Arc<SigningKey>), ClientError> {
    p.passphrase.check_new()?;
    validate_name(p.name)?;
    if p.role.needs_enrollment() && p.enrollment_token.is_none_or(str::is_empty) {
        return Err(ClientError::Invalid(format!("a {} needs an operator enrollment token", p.role)));
    }
    let url = normalize_url(&p.server.url)?;
    let sk = Arc::new(keys.signing_key());
    let http = Http::new(p.server)?.with_identity(Arc::clone(&sk));
    // Reach the server before touching the disk.
    let log_key = http.log_key()?;
    log_verifier(&log_key)?;
    Profile::prepare(p.dir)?;
    let result = (|| {
        Profile::write_keys(p.dir, keys, p.passphrase)?;
        let vk = sk.verifying_key();
        let msg = registration_message(p.role, p.name, &vk, &pre_public_keys);
        let req = RegisterRequest {
            role: p.role,
            name: p.name.to_owned(),
            signing_key: vk,
            pre_public_keys: B64(pre_public_keys),
            enrollment_token: p.enrollment_token.map(str::to_owned),
            signature: sk.sign(domain::SIG_REGISTRATION, &msg),
        };
        let info = http.register(&req)?;
        if info.id != sk.principal_id() || info.role != p.role {
            return Err(ClientError::Protocol("the server registered another principal".into()));
        }
        let profile = Profile::create(
            p.dir,
            ProfileInfo {
                version: PROFILE_VERSION,
                server: url,
                principal: info.id,
                role: p.role,
                name: p.name.to_owned(),
                log_key: log_key.trim().to_owned(),
            },
        )?;
        advance_checkpoint(&http, &profile, |_| Ok(()))?;
        Ok(profile)
    })();
    match result {
        Ok(profile) => Ok((profile, http, sk)),
        Err(e) => {
            Profile::abandon(p.dir);
            Err(e)
        }
    }
}

/// An opened profile of a principal that holds only a signing key
/// (analysts and auditors): enrollment, opening, identity.
pub(crate) struct SigningSession {
    pub(crate) profile: Profile,
    pub(crate) sk: Arc<SigningKey>,
    pub(crate) http: Http,
}

impl SigningSession {
    /// Creates a signing key in `dir` and enrolls as `role` with the
    /// operator's one-time token.
    pub(crate) fn enroll(
        dir: &Path,
        server: &ServerOptions,
        role: Role,
        name: &str,
        enrollment_token: &str,
        passphrase: &Passphrase,
    ) -> Result<Self, ClientError> {
        let keys = KeyFile::new_signing_only(&mut rand::rngs::OsRng);
        let principal =
            NewPrincipal { dir, server, role, name, enrollment_token: Some(enrollment_token), passphrase };
        let (profile, http, sk) = create_profile(principal, &keys, NO_PRE_KEYS.to_vec())?;
        Ok(Self { profile, sk, http })
    }

    /// Opens the `role` profile in `dir`.
    pub(crate) fn open(
        dir: &Path,
        role: Role,
        connect: &Connect,
        passphrase: &Passphrase,
    ) -> Result<Self, ClientError> {
        let (profile, _, http, sk) = open_profile(dir, role, connect, passphrase)?;
        Ok(Self { profile, sk, http })
    }

    /// Id and signing-key fingerprint.
    pub(crate) fn identity(&self) -> Identity {
        Identity::new(&self.profile, &self.sk, None)
    }

    /// The principal id.
    pub(crate) fn id(&self) -> PrincipalId {
        self.profile.info().principal
    }
}

/// Opens a profile of `role` with `passphrase`.
pub(crate) fn open_profile(
    dir: &Path,
    role: Role,
    connect: &Connect,
    passphrase: &Passphrase,
) -> Result<(Profile, KeyFile, Http, Arc<SigningKey>), ClientError> {
    let profile = Profile::open(dir)?;
    if profile.info().role != role {
        return Err(ClientError::profile(
            dir,
            format!("this is a {} profile, not a {role} one", profile.info().role),
        ));
    }
    let keys = profile.open_keys(passphrase)?;
    let sk = Arc::new(keys.signing_key());
    let http = Http::new(&connect.options(&profile))?.with_identity(Arc::clone(&sk));
    Ok((profile, keys, http, sk))
}

/// Progress of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Items done.
    pub done: u64,
    /// Items in all.
    pub total: u64,
}

/// Who a profile is: what to hand to the other side to check.
#[derive(Clone, Debug, Serialize)]
pub struct Identity {
    /// Principal id (hex; give this to doctors or patients).
    pub id: PrincipalId,
    /// Role.
    pub role: Role,
    /// Display name.
    pub name: String,
    /// Server URL.
    pub server: String,
    /// Fingerprint of the Ed25519 signing key.
    pub signing_key_fingerprint: String,
    /// Fingerprint of the PRE public key(s), for patients and doctors.
    pub pre_key_fingerprint: Option<String>,
    /// Profile directory.
    pub profile: PathBuf,
}

impl Identity {
    pub(crate) fn new(profile: &Profile, sk: &SigningKey, pre: Option<Fingerprint>) -> Self {
        let i = profile.info();
        Self {
            id: i.principal,
            role: i.role,
            name: i.name.clone(),
            server: i.server.clone(),
            signing_key_fingerprint: sk.verifying_key().fingerprint().to_string(),
            pre_key_fingerprint: pre.map(|f| f.to_string()),
            profile: profile.dir().to_owned(),
        }
    }
}

/// A decrypted record. The body is zeroized on drop and never printed by
/// `Debug`.
pub struct OpenedRecord {
    /// The owner-signed header.
    pub header: RecordHeader,
    /// The plaintext.
    pub body: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for OpenedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedRecord")
            .field("header", &self.header)
            .field("body", &format_args!("{} bytes", self.body.len()))
            .finish()
    }
}

/// Whether records of this media type hold FHIR (an imported entry, or a
/// bare resource).
pub fn is_fhir_media_type(media_type: &str) -> bool {
    media_type == FHIR_ENTRY_MEDIA_TYPE || media_type == FHIR_MEDIA_TYPE
}

impl OpenedRecord {
    /// Whether the record is FHIR.
    pub fn is_fhir(&self) -> bool {
        is_fhir_media_type(self.header.media_type())
    }

    /// The FHIR resource with its entry data (`fullUrl`, assigned id).
    pub fn fhir_entry(&self) -> Result<StoredEntry, EntryFormatError> {
        if !self.is_fhir() {
            return Err(EntryFormatError(format!("a {} record is not FHIR", self.header.media_type())));
        }
        StoredEntry::from_body(&self.body)
    }

    /// The bytes to write out: a FHIR record as its resource, indented (the
    /// JSON value the patient published), anything else as stored.
    pub fn export_bytes(&self) -> Zeroizing<Vec<u8>> {
        if let Ok(entry) = self.fhir_entry() {
            if let Ok(mut pretty) = serde_json::to_vec_pretty(&entry.resource) {
                pretty.push(b'\n');
                return Zeroizing::new(pretty);
            }
        }
        self.body.clone()
    }

    /// A safe file name: the record id plus an extension from the media
    /// type (never anything taken from the plaintext).
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.header.record_id(), extension_for(self.header.media_type()))
    }
}

/// The file extension for a media type.
pub fn extension_for(media_type: &str) -> &'static str {
    match media_type {
        FHIR_MEDIA_TYPE | FHIR_ENTRY_MEDIA_TYPE | "application/json" => "json",
        "application/pdf" => "pdf",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "application/dicom" => "dcm",
        "text/plain" => "txt",
        "text/csv" => "csv",
        "application/xml" | "text/xml" => "xml",
        _ => "bin",
    }
}

/// The media type for a file name's extension.
pub fn media_type_for(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "dcm" => "application/dicom",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "xml" => "application/xml",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// A grant as a person reads it (from a verified signed grant).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GrantSummary {
    /// Grant id.
    pub grant_id: GrantId,
    /// The patient who signed it.
    pub patient: PrincipalId,
    /// The doctor it authorizes.
    pub doctor: PrincipalId,
    /// Scope, canonical text.
    pub scope: String,
    /// Purpose of use.
    pub purpose: String,
    /// Valid from.
    pub not_before: Timestamp,
    /// Valid until (exclusive).
    pub not_after: Timestamp,
    /// When the patient made it.
    pub created_at: Timestamp,
    /// Whether the server reports it revoked.
    pub revoked: bool,
}

impl GrantSummary {
    /// From a (verified) grant.
    pub fn new(g: &Grant, revoked: bool) -> Self {
        Self {
            grant_id: g.grant_id(),
            patient: g.patient(),
            doctor: g.doctor(),
            scope: g.scope().to_string(),
            purpose: g.purpose().to_string(),
            not_before: g.not_before(),
            not_after: g.not_after(),
            created_at: g.created_at(),
            revoked,
        }
    }

    /// Whether it authorizes anything at `now`.
    pub fn active_at(&self, now: Timestamp) -> bool {
        !self.revoked && self.not_before <= now && now < self.not_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_media_types() {
        assert!(validate_name("Dr Who").is_ok());
        assert!(validate_name(" ").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name(&"x".repeat(limits::MAX_NAME_LEN + 1)).is_err());
        assert_eq!(media_type_for(Path::new("scan.PDF")), "application/pdf");
        assert_eq!(media_type_for(Path::new("x")), "application/octet-stream");
        assert_eq!(extension_for(media_type_for(Path::new("a.jpeg"))), "jpg");
        assert_eq!(extension_for("application/x-unknown"), "bin");
    }
}
