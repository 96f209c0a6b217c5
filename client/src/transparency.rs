//! Checking what the server says against the signed audit log, and
//! checking directory entries against their owners' signatures.
//!
//! # Threat model
//!
//! The server may lie. A client pins the log's note verifier key when its
//! profile is created (trust on first use) and from then on accepts only
//! checkpoints signed by that key, each proven consistent with the last
//! checkpoint the client stored. A server that rewrote, dropped or reordered
//! history cannot produce such a proof and the client stops with
//! [`ClientError::LogIntegrity`]. Entries are accepted only with an
//! inclusion proof against a verified checkpoint, or, when the whole log is
//! downloaded (auditors), only if they hash to the signed root.
//!
//! The log proves without publishing: its leaves are salted commitments to
//! the events, and the server gives an entry's event and salt only to those
//! the event is about and to auditors. A client recomputes the leaf from
//! what it was given ([`LeafOpening::leaf_hash`]), so a server cannot show
//! it an event other than the one the signed tree commits to.
//!
//! A directory entry is accepted only if its id is the hash of its signing
//! key and its registration signature covers its role, name and PRE keys, so
//! the server cannot swap a doctor's or patient's PRE keys without also
//! holding their signing key.

use medrelay_crypto::{domain, PatientPublicKeys, PrePublicKey, PrincipalId, VerifyingKey};
use medrelay_dp::Schema;
use medrelay_policy::{
    root_from_leaves, Checkpoint, ConsistencyProof, EventSalt, InclusionProof, LeafOpening, LogEvent,
    LogVerifier, MerkleHash,
};
use medrelay_wire::dp::SchemaInfo;
use medrelay_wire::{
    limits, registration_message, CheckpointResponse, LogEntry, PrincipalInfo, ProofResponse, Role,
};
use sha2::{Digest as _, Sha256};

use crate::http::Http;
use crate::keystore::Profile;
use crate::session::Progress;
use crate::ClientError;

/// Parses a pinned verifier key.
pub fn log_verifier(key: &str) -> Result<LogVerifier, ClientError> {
    LogVerifier::from_verifier_key(key.trim())
        .map_err(|e| ClientError::Verification(format!("log verifier key: {e}")))
}

/// Verifies a checkpoint answer: signature by the pinned key, and the
/// answer's size and root fields equal to the signed ones.
pub fn verify_checkpoint(
    verifier: &LogVerifier,
    resp: &CheckpointResponse,
) -> Result<Checkpoint, ClientError> {
    let c = verifier
        .verify_checkpoint(&resp.checkpoint)
        .map_err(|e| ClientError::LogIntegrity(format!("checkpoint signature does not verify: {e}")))?;
    if c.tree_size != resp.tree_size || c.root_hash.as_bytes()[..] != resp.root_hash.as_bytes()[..] {
        return Err(ClientError::LogIntegrity("checkpoint fields differ from the signed note".into()));
    }
    Ok(c)
}

fn hashes(p: &ProofResponse) -> Result<Vec<MerkleHash>, ClientError> {
    if p.path.len() > medrelay_policy::MAX_PROOF_HASHES {
        return Err(ClientError::Protocol("proof too long".into()));
    }
    p.path
        .iter()
        .map(|h| {
            MerkleHash::from_slice(h.as_bytes())
                .map_err(|_| ClientError::Protocol("proof hash length".into()))
        })
        .collect()
}

/// Proves that `new` extends `old` (same origin, consistency proof from the
/// server).
pub fn prove_consistency(http: &Http, old: &Checkpoint, new: &Checkpoint) -> Result<(), ClientError> {
    if old.origin != new.origin {
        return Err(ClientError::LogIntegrity(format!(
            "log origin changed from {:?} to {:?}",
            old.origin, new.origin
        )));
    }
    if new.tree_size < old.tree_size {
        return Err(ClientError::LogIntegrity(format!(
            "the log shrank from {} to {} entries",
            old.tree_size, new.tree_size
        )));
    }
    if new.tree_size == old.tree_size {
        if new.root_hash != old.root_hash {
            return Err(ClientError::LogIntegrity(format!(
                "two different roots for the same size {}: history was rewritten",
                new.tree_size
            )));
        }
        return Ok(());
    }
    if old.tree_size == 0 {
        // Every tree extends the empty tree.
        return Ok(());
    }
    let p = http.consistency(old.tree_size, new.tree_size)?;
    let proof = ConsistencyProof { old_size: p.from, new_size: p.tree_size, hashes: hashes(&p)? };
    new.verify_extends(old, &proof).map_err(|_| {
        ClientError::LogIntegrity(format!(
            "the log of size {} is not an extension of the one of size {} this client saw: history was rewritten",
            new.tree_size, old.tree_size
        ))
    })
}

/// A verified advance of the stored checkpoint.
#[derive(Clone, Debug)]
pub struct CheckpointUpdate {
    /// The checkpoint stored before (if any).
    pub previous: Option<Checkpoint>,
    /// The newest checkpoint, now stored.
    pub current: Checkpoint,
    /// Its signed note, as stored.
    pub note: String,
}

/// Fetches the newest checkpoint, verifies its signature with the profile's
/// pinned key, proves it consistent with the stored one, runs `check` on
/// it, and only then stores it.
pub fn advance_checkpoint(
    http: &Http,
    profile: &Profile,
    check: impl FnOnce(&Checkpoint) -> Result<(), ClientError>,
) -> Result<CheckpointUpdate, ClientError> {
    let verifier = log_verifier(&profile.info().log_key)?;
    let previous = match profile.load_checkpoint()? {
        Some(note) => Some(verifier.verify_checkpoint(&note).map_err(|e| {
            ClientError::profile(profile.dir(), format!("stored checkpoint does not verify: {e}"))
        })?),
        None => None,
    };
    let resp = http.checkpoint()?;
    let current = verify_checkpoint(&verifier, &resp)?;
    if let Some(old) = &previous {
        prove_consistency(http, old, &current)?;
    }
    check(&current)?;
    profile.save_checkpoint(&resp.checkpoint)?;
    Ok(CheckpointUpdate { previous, current, note: resp.checkpoint })
}

/// An entry as served: its salt and event bytes, size-checked (the event is
/// decoded by the caller, after the entry is proven).
pub fn entry_opening(e: &LogEntry) -> Result<LeafOpening, ClientError> {
    let salt = EventSalt::from_slice(e.salt.as_bytes())
        .map_err(|_| ClientError::Protocol(format!("log entry {}: salt is not 32 bytes", e.index)))?;
    LeafOpening::from_parts(salt, e.event.as_bytes().to_vec())
        .map_err(|err| ClientError::Protocol(format!("log entry {}: {err}", e.index)))
}

/// Verifies that `entry` (event and salt) opens the leaf at `index` under
/// `checkpoint`.
pub fn verify_inclusion(
    http: &Http,
    checkpoint: &Checkpoint,
    index: u64,
    entry: &LeafOpening,
) -> Result<(), ClientError> {
    let p = http.inclusion(index, checkpoint.tree_size)?;
    if p.from != index {
        return Err(ClientError::LogIntegrity(format!(
            "inclusion proof for entry {} instead of {index}",
            p.from
        )));
    }
    let proof = InclusionProof { leaf_index: p.from, tree_size: p.tree_size, hashes: hashes(&p)? };
    checkpoint.verify_inclusion(&entry.leaf_hash(), &proof).map_err(|_| {
        ClientError::LogIntegrity(format!(
            "log entry {index} is not in the signed log (inclusion proof fails)"
        ))
    })
}

/// Downloads every entry of the tree `checkpoint` signs, in order, and
/// checks that they hash to its root. Needs an identity entitled to every
/// entry: an auditor's.
pub fn download_log(
    http: &Http,
    checkpoint: &Checkpoint,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<LeafOpening>, ClientError> {
    let size = checkpoint.tree_size;
    let mut entries = Vec::with_capacity(usize::try_from(size.min(1 << 20)).unwrap_or(0));
    let mut start = 0;
    while start < size {
        let end = size.min(start + limits::MAX_LOG_RANGE);
        let page = http.log_entries(start, end)?;
        if page.entries.len() as u64 != end - start {
            return Err(ClientError::Protocol(format!(
                "asked for entries {start}..{end}, got {}",
                page.entries.len()
            )));
        }
        for (i, e) in page.entries.into_iter().enumerate() {
            if e.index != start + i as u64 {
                return Err(ClientError::Protocol(format!("entry {} out of order", e.index)));
            }
            entries.push(entry_opening(&e)?);
        }
        start = end;
        progress(start, size);
    }
    let leaves: Vec<MerkleHash> = entries.iter().map(LeafOpening::leaf_hash).collect();
    if root_from_leaves(&leaves) != checkpoint.root_hash {
        return Err(ClientError::LogIntegrity(format!(
            "the {size} entries the server serves do not hash to the signed root: a stored entry was altered"
        )));
    }
    Ok(entries)
}

/// A directory entry whose registration signature verified.
#[derive(Clone, Debug)]
pub struct VerifiedPrincipal {
    /// Id.
    pub id: PrincipalId,
    /// Role.
    pub role: Role,
    /// Display name.
    pub name: String,
    /// Ed25519 key (its hash is the id).
    pub signing_key: VerifyingKey,
    /// Encoded PRE public keys (format depends on the role).
    pub pre_public_keys: Vec<u8>,
}

impl VerifiedPrincipal {
    /// A patient's per-class PRE public keys.
    pub fn patient_keys(&self) -> Result<PatientPublicKeys, ClientError> {
        if self.role != Role::Patient {
            return Err(ClientError::Invalid(format!("{} is a {}, not a patient", self.id, self.role)));
        }
        PatientPublicKeys::from_bytes(&self.pre_public_keys)
            .map_err(|e| ClientError::Verification(format!("patient {} PRE keys: {e}", self.id)))
    }

    /// A doctor's PRE public key.
    pub fn doctor_key(&self) -> Result<PrePublicKey, ClientError> {
        if self.role != Role::Doctor {
            return Err(ClientError::Invalid(format!("{} is a {}, not a doctor", self.id, self.role)));
        }
        PrePublicKey::from_bytes(&self.pre_public_keys)
            .map_err(|e| ClientError::Verification(format!("doctor {} PRE key: {e}", self.id)))
    }
}

/// Checks a directory answer for `id`: the id is its signing key's hash,
/// and the registration signature covers role, name and PRE keys.
pub fn verify_principal(id: &PrincipalId, info: PrincipalInfo) -> Result<VerifiedPrincipal, ClientError> {
    if info.id != *id || info.signing_key.principal_id() != *id {
        return Err(ClientError::Verification(format!(
            "the directory answered for {id} with another principal"
        )));
    }
    let msg = registration_message(info.role, &info.name, &info.signing_key, info.pre_public_keys.as_bytes());
    info.signing_key
        .verify(domain::SIG_REGISTRATION, &msg, &info.signature)
        .map_err(|_| ClientError::Verification(format!("registration signature of {id} does not verify")))?;
    Ok(VerifiedPrincipal {
        id: *id,
        role: info.role,
        name: info.name,
        signing_key: info.signing_key,
        pre_public_keys: info.pre_public_keys.into_bytes(),
    })
}

/// Fetches and verifies a principal; `Server { code: "not_found" }` if
/// unknown.
pub fn fetch_principal(http: &Http, id: &PrincipalId) -> Result<VerifiedPrincipal, ClientError> {
    verify_principal(id, http.principal(id)?)
}

/// A DP summary schema as the server serves it, checked against the log:
/// its canonical JSON hashes to the SHA-256 that the `schema added` entry
/// at `info.log_index` records under the same name, and that entry is in
/// the signed log (inclusion proof against a checkpoint consistent with the
/// one this profile stored). A server cannot show a patient a schema other
/// than the one the operator installed and auditors can see.
pub fn verified_schema(
    http: &Http,
    profile: &Profile,
    info: &SchemaInfo,
    name: &str,
) -> Result<Schema, ClientError> {
    let schema = crate::dp::parse_schema(info, name)?;
    let canonical =
        serde_json::to_vec(&schema).map_err(|e| ClientError::Protocol(format!("schema {name}: {e}")))?;
    let digest: [u8; 32] = Sha256::digest(&canonical).into();
    if hex::encode(digest) != info.schema_sha256 {
        return Err(ClientError::Verification(format!(
            "schema {name}: the served document does not hash to its stated SHA-256"
        )));
    }
    let update = advance_checkpoint(http, profile, |_| Ok(()))?;
    match proven_event(http, &update.current, info.log_index)? {
        LogEvent::SchemaAdded { schema: logged, schema_sha256, .. }
            if logged == name && schema_sha256 == digest => {}
        _ => {
            return Err(ClientError::Verification(format!(
                "schema {name}: log entry {} does not record this schema",
                info.log_index
            )))
        }
    }
    Ok(schema)
}

/// The event at log `index`, fetched, opened and proven included in
/// `checkpoint`'s tree (an undecodable event is a verification failure).
pub(crate) fn proven_event(
    http: &Http,
    checkpoint: &Checkpoint,
    index: u64,
) -> Result<LogEvent, ClientError> {
    let page = http.log_entries(index, index.saturating_add(1))?;
    let [entry] = page.entries.as_slice() else {
        // One entry asked, one expected.
        return Err(ClientError::Protocol(format!(
            "asked for log entry {index}, got {}",
            page.entries.len()
        )));
    };
    if entry.index != index {
        return Err(ClientError::Protocol(format!("asked for log entry {index}, got {}", entry.index)));
    }
    let opening = entry_opening(entry)?;
    verify_inclusion(http, checkpoint, index, &opening)?;
    opening.event().map_err(|e| ClientError::Verification(format!("log entry {index} does not decode: {e}")))
}

/// The log entries about this profile's principal (`/log/mine`: for a
/// patient everything about them and their records, for a doctor their
/// grants, accesses and refusals), each proven in the log: the stored
/// checkpoint is advanced (signature + consistency) and every entry's leaf,
/// recomputed from its event and salt, is checked by an inclusion proof
/// against it. Returns the events with their indices, and the checkpoint.
pub fn verified_history(
    http: &Http,
    profile: &Profile,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Vec<(u64, LogEvent)>, Checkpoint), ClientError> {
    let mut entries = Vec::new();
    let mut from = 0;
    loop {
        let page = http.log_mine(from, limits::MAX_LIST_ITEMS)?;
        let n = page.entries.len();
        for e in page.entries {
            if e.index < from {
                return Err(ClientError::Protocol("log entries out of order".into()));
            }
            from = e.index + 1;
            entries.push(e);
        }
        if n < limits::MAX_LIST_ITEMS {
            break;
        }
    }
    let update = advance_checkpoint(http, profile, |_| Ok(()))?;
    let total = entries.len() as u64;
    let mut events = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let opening = entry_opening(e)?;
        verify_inclusion(http, &update.current, e.index, &opening)?;
        let event = opening
            .event()
            .map_err(|err| ClientError::LogIntegrity(format!("entry {} does not decode: {err}", e.index)))?;
        events.push((e.index, event));
        progress(Progress { done: i as u64 + 1, total });
    }
    Ok((events, update.current))
}

#[cfg(test)]
mod tests {
    use super::*;
    use medrelay_crypto::SigningKey;
    use medrelay_policy::{LogSigner, MemoryNodeStore, MerkleTree};
    use medrelay_wire::B64;

    fn signer(seed: u8) -> LogSigner {
        LogSigner::new("test.medrelay/log", &SigningKey::from_seed(&[seed; 32])).unwrap()
    }

    fn checkpoint(s: &LogSigner, leaves: &[&[u8]]) -> (CheckpointResponse, Checkpoint) {
        let mut tree = MerkleTree::new(MemoryNodeStore::new());
        for l in leaves {
            tree.append(l).unwrap();
        }
        let note = s.sign_checkpoint(tree.size().unwrap(), tree.root().unwrap()).unwrap();
        let c = s.verifier().verify_checkpoint(&note).unwrap();
        let resp = CheckpointResponse {
            tree_size: c.tree_size,
            root_hash: B64(c.root_hash.as_bytes().to_vec()),
            checkpoint: note,
        };
        (resp, c)
    }

    fn offline() -> Http {
        Http::new(&crate::ServerOptions::new("http://127.0.0.1:9")).unwrap()
    }

    #[test]
    fn checkpoints_must_be_signed_by_the_pinned_key_and_match_their_fields() {
        let (resp, _) = checkpoint(&signer(1), &[b"a", b"b"]);
        let pinned = log_verifier(&signer(1).verifier().to_verifier_key()).unwrap();
        assert_eq!(verify_checkpoint(&pinned, &resp).unwrap().tree_size, 2);
        let other = log_verifier(&signer(2).verifier().to_verifier_key()).unwrap();
        assert!(matches!(verify_checkpoint(&other, &resp), Err(ClientError::LogIntegrity(_))));
        let mut lying = resp.clone();
        lying.tree_size = 3;
        assert!(matches!(verify_checkpoint(&pinned, &lying), Err(ClientError::LogIntegrity(_))));
        assert!(log_verifier("not a key").is_err());
    }

    #[test]
    fn a_shrunk_or_forked_log_is_an_integrity_failure_without_asking_the_server() {
        let s = signer(1);
        let (_, two) = checkpoint(&s, &[b"a", b"b"]);
        let (_, forked) = checkpoint(&s, &[b"a", b"x"]);
        let (_, one) = checkpoint(&s, &[b"a"]);
        let (_, empty) = checkpoint(&s, &[]);
        let http = offline();
        assert!(prove_consistency(&http, &two, &two).is_ok());
        assert!(prove_consistency(&http, &empty, &two).is_ok());
        let e = prove_consistency(&http, &two, &forked).unwrap_err();
        assert!(e.to_string().starts_with("LOG INTEGRITY FAILURE: two different roots"), "{e}");
        let e = prove_consistency(&http, &two, &one).unwrap_err();
        assert!(e.to_string().contains("shrank"), "{e}");
        let mut renamed = two.clone();
        renamed.origin = "elsewhere/log".into();
        assert!(matches!(prove_consistency(&http, &one, &renamed), Err(ClientError::LogIntegrity(_))));
    }

    #[test]
    fn directory_entries_must_carry_their_registration_signature() {
        let sk = SigningKey::from_seed(&[5; 32]);
        let vk = sk.verifying_key();
        let keys = b"pre keys".to_vec();
        let msg = registration_message(Role::Doctor, "Dr A", &vk, &keys);
        let info = PrincipalInfo {
            id: sk.principal_id(),
            role: Role::Doctor,
            name: "Dr A".into(),
            signing_key: vk,
            pre_public_keys: B64(keys),
            signature: sk.sign(domain::SIG_REGISTRATION, &msg),
            registered_at: medrelay_crypto::Timestamp(1),
            log_index: 0,
        };
        let id = sk.principal_id();
        assert_eq!(verify_principal(&id, info.clone()).unwrap().name, "Dr A");
        // A server that swaps the PRE keys, renames, or answers for another id.
        let mut swapped = info.clone();
        swapped.pre_public_keys = B64(b"server keys".to_vec());
        assert!(matches!(verify_principal(&id, swapped), Err(ClientError::Verification(_))));
        let mut renamed = info.clone();
        renamed.name = "Dr B".into();
        assert!(matches!(verify_principal(&id, renamed), Err(ClientError::Verification(_))));
        let other = SigningKey::from_seed(&[6; 32]).principal_id();
        assert!(matches!(verify_principal(&other, info), Err(ClientError::Verification(_))));
    }
}
