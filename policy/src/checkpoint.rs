//! Signed checkpoints: the C2SP `tlog-checkpoint` body in a C2SP
//! `signed-note`, signed with Ed25519 by the server's log key.
//!
//! A checkpoint note looks like this:
//!
//! ```text
//! medrelay.example/log
//! 42
//! 7JJ+6KpcClo2wqV0TJ9Xb3y1dQ5rJ5zM1eX3vW0AbCc=
//!
//! — medrelay.example/log Az3grlPF...base64(key id || signature)...
//! ```
//!
//! The signature is a plain Ed25519 signature over the note text (through its
//! final newline), as the signed-note spec requires, so standard tools (Go
//! `sumdb/note`, transparency-dev witnesses) can verify it. Key id =
//! `SHA-256(name || 0x0A || 0x01 || public key)[:4]`.
//!
//! The log key must be used only to sign notes. It is a
//! [`medrelay_crypto::SigningKey`], whose other signatures are domain
//! separated by a framing that starts with a control byte; note texts contain
//! no control bytes other than newline, so a note signature can never be
//! mistaken for one of those, nor the other way round.
//!
//! medrelay uses the log's origin as the key name, so a verifier checks both
//! the signature and that the checkpoint's origin is the log it trusts.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use medrelay_crypto::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::domain::NOTE_SIG_TYPE_ED25519;
use crate::error::PolicyError;
use crate::merkle::{
    empty_root, verify_consistency, verify_inclusion, ConsistencyProof, InclusionProof, MerkleHash,
};
use crate::tree::MAX_TREE_SIZE;

/// Largest signed note accepted (checked before parsing).
pub const MAX_NOTE_LEN: usize = 16 * 1024;
/// Most signature lines a note may carry (the Go reference's limit).
pub const MAX_NOTE_SIGNATURES: usize = 100;
/// Longest key name / origin, in bytes.
pub const MAX_KEY_NAME_LEN: usize = 256;
/// Most extension lines accepted in a checkpoint body.
pub const MAX_EXTENSION_LINES: usize = 16;

const SIG_LINE_PREFIX: &str = "\u{2014} ";

/// A tree head: the C2SP `tlog-checkpoint` body.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Checkpoint {
    /// The log's origin (e.g. `medrelay.example/log`).
    pub origin: String,
    /// Number of leaves.
    pub tree_size: u64,
    /// The Merkle tree hash of those leaves.
    pub root_hash: MerkleHash,
    /// Optional extension lines, kept in order (none are produced by medrelay).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: `<origin>\n<size>\n<base64 root>\n` then extension lines.
    pub fn to_note_text(&self) -> String {
        let mut s =
            format!("{}\n{}\n{}\n", self.origin, self.tree_size, B64.encode(self.root_hash.as_bytes()));
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a note text (already verified) as a checkpoint body, strictly:
    /// non-empty origin, canonical decimal size, canonical base64 of 32
    /// bytes, non-empty extension lines.
    pub fn from_note_text(text: &str) -> Result<Self, PolicyError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(PolicyError::InvalidCheckpoint("text does not end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        check_key_name(origin).map_err(|_| PolicyError::InvalidCheckpoint("origin line"))?;
        let size_line = lines.next().ok_or(PolicyError::InvalidCheckpoint("missing tree size line"))?;
        let tree_size = parse_decimal(size_line).ok_or(PolicyError::InvalidCheckpoint("tree size"))?;
        if tree_size > MAX_TREE_SIZE {
            return Err(PolicyError::InvalidCheckpoint("tree size too large"));
        }
        let root_line = lines.next().ok_or(PolicyError::InvalidCheckpoint("missing root hash line"))?;
        let root = B64.decode(root_line).map_err(|_| PolicyError::InvalidCheckpoint("root hash base64"))?;
        let root_hash =
            MerkleHash::from_slice(&root).map_err(|_| PolicyError::InvalidCheckpoint("root hash length"))?;
        if B64.encode(root_hash.as_bytes()) != root_line {
            return Err(PolicyError::InvalidCheckpoint("root hash base64 not canonical"));
        }
        check_empty_root(tree_size, &root_hash)?;
        let mut extensions = Vec::new();
        for line in lines {
            if line.is_empty() {
                return Err(PolicyError::InvalidCheckpoint("empty extension line"));
            }
            if extensions.len() == MAX_EXTENSION_LINES {
                return Err(PolicyError::InvalidCheckpoint("too many extension lines"));
            }
            extensions.push(line.to_owned());
        }
        Ok(Self { origin: origin.to_owned(), tree_size, root_hash, extensions })
    }
}

impl Checkpoint {
    /// Verifies that `leaf_hash` is in the tree this checkpoint signs: the
    /// proof must be for exactly this tree size (a proof's own size field is
    /// not bound by the hashes alone) and must reach this root.
    pub fn verify_inclusion(
        &self,
        leaf_hash: &MerkleHash,
        proof: &InclusionProof,
    ) -> Result<(), PolicyError> {
        if proof.tree_size != self.tree_size {
            return Err(PolicyError::ProofInvalid);
        }
        verify_inclusion(leaf_hash, proof, &self.root_hash)
    }

    /// Verifies that this checkpoint's tree extends `older`'s (same origin,
    /// proof between exactly their two sizes).
    pub fn verify_extends(&self, older: &Checkpoint, proof: &ConsistencyProof) -> Result<(), PolicyError> {
        if older.origin != self.origin
            || proof.old_size != older.tree_size
            || proof.new_size != self.tree_size
        {
            return Err(PolicyError::ProofInvalid);
        }
        verify_consistency(proof, &older.root_hash, &self.root_hash)
    }
}

/// The tree of size 0 has exactly one root, `SHA-256()` (RFC 9162 §2.1.1):
/// a checkpoint of size 0 with any other root commits to nothing a verifier
/// could check, so it is malformed (as transparency-dev treats it).
fn check_empty_root(tree_size: u64, root_hash: &MerkleHash) -> Result<(), PolicyError> {
    if tree_size == 0 && *root_hash != empty_root() {
        return Err(PolicyError::InvalidCheckpoint("size 0 with a root other than the empty root"));
    }
    Ok(())
}

fn parse_decimal(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}

/// A valid key name: non-empty, at most [`MAX_KEY_NAME_LEN`] bytes, no
/// Unicode whitespace, no `+`, no control characters.
fn check_key_name(name: &str) -> Result<(), PolicyError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_KEY_NAME_LEN
        && !name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(PolicyError::InvalidCheckpoint("key name"))
    }
}

/// The note text rules: ends in a newline, no control characters other than
/// newline, no blank line inside (so the signature block is unambiguous).
fn check_note_text(text: &str) -> Result<(), PolicyError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(PolicyError::InvalidCheckpoint("text does not end in a newline"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(PolicyError::InvalidCheckpoint("control character in text"));
    }
    if text.starts_with('\n') || text.contains("\n\n") {
        return Err(PolicyError::InvalidCheckpoint("blank line in text"));
    }
    Ok(())
}

fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', NOTE_SIG_TYPE_ED25519]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The log's note signer: a key name (the log origin) and an Ed25519 key.
pub struct LogSigner {
    name: String,
    key: Box<ed25519_dalek::SigningKey>,
    key_id: [u8; 4],
}

impl fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogSigner(..)")
    }
}

impl LogSigner {
    /// A signer named `name` (the log origin) using `key`, which must serve
    /// only as the log key. Fails if the name is not a valid key name.
    pub fn new(name: &str, key: &SigningKey) -> Result<Self, PolicyError> {
        check_key_name(name)?;
        let seed = key.to_seed();
        // `ed25519_dalek::SigningKey` zeroizes on drop (feature `zeroize`).
        let key = Box::new(ed25519_dalek::SigningKey::from_bytes(&seed));
        let key_id = key_id(name, key.verifying_key().as_bytes());
        Ok(Self { name: name.to_owned(), key, key_id })
    }

    /// The key name (= the log origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier.
    pub fn verifier(&self) -> LogVerifier {
        LogVerifier { name: self.name.clone(), key: self.key.verifying_key(), key_id: self.key_id }
    }

    /// Signs a note text (which must follow the signed-note rules) and
    /// returns the signed note.
    pub fn sign_note(&self, text: &str) -> Result<String, PolicyError> {
        check_note_text(text)?;
        let sig = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(&sig.to_bytes());
        let note = format!("{text}\n{SIG_LINE_PREFIX}{} {}\n", self.name, B64.encode(blob));
        if note.len() > MAX_NOTE_LEN {
            return Err(PolicyError::InvalidCheckpoint("note too large"));
        }
        Ok(note)
    }

    /// Signs the checkpoint of a tree of `tree_size` leaves with root
    /// `root_hash`, with this signer's name as origin. Size 0 must come with
    /// the empty root.
    pub fn sign_checkpoint(&self, tree_size: u64, root_hash: MerkleHash) -> Result<String, PolicyError> {
        check_empty_root(tree_size, &root_hash)?;
        let cp = Checkpoint { origin: self.name.clone(), tree_size, root_hash, extensions: Vec::new() };
        self.sign_note(&cp.to_note_text())
    }
}

/// Verifies notes and checkpoints signed by one log key.
#[derive(Clone, PartialEq, Eq)]
pub struct LogVerifier {
    name: String,
    key: ed25519_dalek::VerifyingKey,
    key_id: [u8; 4],
}

impl fmt::Debug for LogVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogVerifier({})", self.to_verifier_key())
    }
}

impl LogVerifier {
    /// A verifier for key name `name` and the log's public key.
    pub fn new(name: &str, key: &VerifyingKey) -> Result<Self, PolicyError> {
        check_key_name(name)?;
        let bytes = key.to_bytes();
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| PolicyError::Malformed("log public key"))?;
        Ok(Self { name: name.to_owned(), key, key_id: key_id(name, &bytes) })
    }

    /// The key name (= the log origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log's public key.
    pub fn public_key(&self) -> Result<VerifyingKey, PolicyError> {
        Ok(VerifyingKey::from_bytes(self.key.as_bytes())?)
    }

    /// The standard verifier key text `<name>+<hex key id>+<base64(0x01 || key)>`
    /// (what auditors configure).
    pub fn to_verifier_key(&self) -> String {
        let mut material = Vec::with_capacity(33);
        material.push(NOTE_SIG_TYPE_ED25519);
        material.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.key_id), B64.encode(material))
    }

    /// Parses a verifier key text; checks the type byte, key length, the key
    /// itself and that the key id matches.
    pub fn from_verifier_key(vkey: &str) -> Result<Self, PolicyError> {
        if vkey.len() > MAX_KEY_NAME_LEN + 64 {
            return Err(PolicyError::Malformed("verifier key: too long"));
        }
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(PolicyError::Malformed("verifier key: expected name+id+key"));
        };
        check_key_name(name).map_err(|_| PolicyError::Malformed("verifier key: name"))?;
        let mut id = [0u8; 4];
        if id_hex.len() != 8 || hex::decode_to_slice(id_hex, &mut id).is_err() {
            return Err(PolicyError::Malformed("verifier key: key id"));
        }
        let material = B64.decode(material).map_err(|_| PolicyError::Malformed("verifier key: base64"))?;
        let Some((&NOTE_SIG_TYPE_ED25519, key)) = material.split_first() else {
            return Err(PolicyError::Malformed("verifier key: not an Ed25519 key"));
        };
        let key =
            VerifyingKey::from_bytes(key).map_err(|_| PolicyError::Malformed("verifier key: public key"))?;
        let v = Self::new(name, &key)?;
        if v.key_id != id {
            return Err(PolicyError::Malformed("verifier key: key id does not match key"));
        }
        Ok(v)
    }

    /// Opens a signed note: parses it strictly and verifies this key's
    /// signature; returns the note text. Signature lines of other keys are
    /// ignored (as the spec requires); the first line carrying this key's
    /// name and key id decides.
    ///
    /// Malformed notes give [`PolicyError::InvalidCheckpoint`] naming the
    /// problem; a missing or wrong signature gives the opaque
    /// [`PolicyError::VerificationFailed`].
    pub fn open_note<'a>(&self, note: &'a str) -> Result<&'a str, PolicyError> {
        if note.len() > MAX_NOTE_LEN {
            return Err(PolicyError::InvalidCheckpoint("note too large"));
        }
        if note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(PolicyError::InvalidCheckpoint("control character in note"));
        }
        let split = note.rfind("\n\n").ok_or(PolicyError::InvalidCheckpoint("no signature block"))?;
        let (text, sigs) = (&note[..=split], &note[split + 2..]);
        check_note_text(text)?;
        let sigs = sigs
            .strip_suffix('\n')
            .ok_or(PolicyError::InvalidCheckpoint("signature block does not end in a newline"))?;
        let mut found = None;
        for (i, line) in sigs.split('\n').enumerate() {
            if i == MAX_NOTE_SIGNATURES {
                return Err(PolicyError::InvalidCheckpoint("too many signatures"));
            }
            let rest = line
                .strip_prefix(SIG_LINE_PREFIX)
                .ok_or(PolicyError::InvalidCheckpoint("malformed signature line"))?;
            let (name, b64) =
                rest.split_once(' ').ok_or(PolicyError::InvalidCheckpoint("malformed signature line"))?;
            check_key_name(name).map_err(|_| PolicyError::InvalidCheckpoint("signature key name"))?;
            let blob = B64.decode(b64).map_err(|_| PolicyError::InvalidCheckpoint("signature base64"))?;
            if blob.len() < 5 {
                return Err(PolicyError::InvalidCheckpoint("signature too short"));
            }
            if found.is_none() && name == self.name && blob[..4] == self.key_id {
                found = Some(blob);
            }
        }
        let blob = found.ok_or(PolicyError::VerificationFailed)?;
        let sig =
            ed25519_dalek::Signature::from_slice(&blob[4..]).map_err(|_| PolicyError::VerificationFailed)?;
        self.key.verify_strict(text.as_bytes(), &sig).map_err(|_| PolicyError::VerificationFailed)?;
        Ok(text)
    }

    /// Verifies a signed checkpoint from this log: the signature, then the
    /// body, then that the origin is this log's name.
    pub fn verify_checkpoint(&self, note: &str) -> Result<Checkpoint, PolicyError> {
        let text = self.open_note(note)?;
        let cp = Checkpoint::from_note_text(text)?;
        if cp.origin != self.name {
            return Err(PolicyError::InvalidCheckpoint("origin is not this log"));
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::merkle::hash_leaf;
    use rand_chacha::rand_core::SeedableRng;

    // golang.org/x/mod/sumdb/note reference vector.
    const GO_SKEY_B64: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str =
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const GO_SIG: &str =
        "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";

    fn go_signer() -> LogSigner {
        let raw = B64.decode(GO_SKEY_B64).unwrap();
        assert_eq!(raw[0], 1);
        let seed: [u8; 32] = raw[1..].try_into().unwrap();
        LogSigner::new("PeterNeumann", &SigningKey::from_seed(&seed)).unwrap()
    }

    fn signer() -> LogSigner {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        LogSigner::new("medrelay.example/log", &SigningKey::generate(&mut rng)).unwrap()
    }

    #[test]
    fn matches_the_go_sumdb_note_vector() {
        let s = go_signer();
        assert_eq!(s.verifier().to_verifier_key(), GO_VKEY);
        let note = s.sign_note(GO_TEXT).unwrap();
        assert_eq!(note, format!("{GO_TEXT}\n\u{2014} PeterNeumann {GO_SIG}\n"));
        let v = LogVerifier::from_verifier_key(GO_VKEY).unwrap();
        assert_eq!(v.open_note(&note).unwrap(), GO_TEXT);
        let altered = note.replace("cryptography", "cryptographY");
        assert_eq!(v.open_note(&altered), Err(PolicyError::VerificationFailed));
    }

    #[test]
    fn checkpoint_round_trip() {
        let s = signer();
        let root = hash_leaf(b"x");
        let note = s.sign_checkpoint(42, root).unwrap();
        assert!(note.starts_with("medrelay.example/log\n42\n"));
        let v = LogVerifier::from_verifier_key(&s.verifier().to_verifier_key()).unwrap();
        let cp = v.verify_checkpoint(&note).unwrap();
        assert_eq!(
            cp,
            Checkpoint { origin: s.name().into(), tree_size: 42, root_hash: root, extensions: vec![] }
        );
        assert_eq!(cp.to_note_text(), v.open_note(&note).unwrap());
    }

    #[test]
    fn altered_checkpoints_are_rejected() {
        let s = signer();
        let v = s.verifier();
        let note = s.sign_checkpoint(42, hash_leaf(b"x")).unwrap();
        // Size changed.
        assert_eq!(
            v.verify_checkpoint(&note.replacen("\n42\n", "\n43\n", 1)),
            Err(PolicyError::VerificationFailed)
        );
        // Every single-character change of the signature line's base64 fails.
        let sig_start = note.rfind(' ').unwrap() + 1;
        for i in sig_start..note.len() - 1 {
            let mut bytes = note.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            if altered != note {
                assert!(v.verify_checkpoint(&altered).is_err(), "altered at {i}");
            }
        }
        // Another key's signature under the same name is not accepted.
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
        let other = LogSigner::new(s.name(), &SigningKey::generate(&mut rng)).unwrap();
        let forged = other.sign_checkpoint(42, hash_leaf(b"x")).unwrap();
        assert_eq!(v.verify_checkpoint(&forged), Err(PolicyError::VerificationFailed));
        // A checkpoint of another origin, even validly signed, is rejected.
        let text = "other.example/log\n1\n".to_string() + &B64.encode([0u8; 32]) + "\n";
        let foreign = s.sign_note(&text).unwrap();
        assert!(matches!(v.verify_checkpoint(&foreign), Err(PolicyError::InvalidCheckpoint(_))));
    }

    #[test]
    fn unknown_signatures_are_ignored_but_needed_one_is_required() {
        let s = signer();
        let v = s.verifier();
        let note = s.sign_checkpoint(3, hash_leaf(b"y")).unwrap();
        let cosigned = format!("{note}\u{2014} witness.example {}\n", B64.encode([9u8; 68]));
        v.verify_checkpoint(&cosigned).unwrap();
        let split = note.rfind("\n\n").unwrap();
        let only_other = format!("{}\n\u{2014} witness.example {}\n", &note[..=split], B64.encode([9u8; 68]));
        assert_eq!(v.verify_checkpoint(&only_other), Err(PolicyError::VerificationFailed));
    }

    #[test]
    fn malformed_notes_are_typed_errors() {
        let s = signer();
        let v = s.verifier();
        let note = s.sign_checkpoint(3, hash_leaf(b"y")).unwrap();
        let cases: Vec<String> = vec![
            String::new(),
            "no signature block\n".into(),
            note.trim_end_matches('\n').to_string(),
            note.replace('\u{2014}', "-"),
            note.replace("\n3\n", "\n3\r\n"),
            format!("{note}\n"),
            "x".repeat(MAX_NOTE_LEN + 1),
            note.replacen(" ", "  ", 1),
        ];
        for c in &cases {
            assert!(matches!(v.verify_checkpoint(c), Err(PolicyError::InvalidCheckpoint(_))), "{c:?}");
        }
        // Truncations never panic and never verify.
        for n in 0..note.len() {
            if note.is_char_boundary(n) {
                assert!(v.verify_checkpoint(&note[..n]).is_err());
            }
        }
    }

    #[test]
    fn checkpoint_bodies_are_parsed_strictly() {
        let root = B64.encode([1u8; 32]);
        // Size 0 is tied to the empty root (SHA-256 of the empty string).
        let empty = B64.encode(empty_root().as_bytes());
        assert_eq!(Checkpoint::from_note_text(&format!("o\n0\n{empty}\n")).unwrap().root_hash, empty_root());
        assert_eq!(
            Checkpoint::from_note_text(&format!("o\n0\n{root}\n")),
            Err(PolicyError::InvalidCheckpoint("size 0 with a root other than the empty root"))
        );
        Checkpoint::from_note_text(&format!("o\n1\n{empty}\n")).unwrap();
        let ext = Checkpoint::from_note_text(&format!("o\n5\n{root}\nextra line\n")).unwrap();
        assert_eq!(ext.extensions, vec!["extra line".to_string()]);
        for bad in [
            format!("o\n05\n{root}\n"),
            format!("o\n-5\n{root}\n"),
            format!("o\n\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            format!("o\n5\n{}\n", B64.encode([1u8; 31])),
            format!("o\n5\n{}\n", root.trim_end_matches('=')),
            "o\n5\n".to_string(),
            format!("\n5\n{root}\n"),
            format!("o o\n5\n{root}\n"),
            format!("o\n5\n{root}"),
        ] {
            assert!(
                matches!(Checkpoint::from_note_text(&bad), Err(PolicyError::InvalidCheckpoint(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_size_0_checkpoint_must_carry_the_empty_root() {
        let s = signer();
        let v = s.verifier();
        assert_eq!(
            s.sign_checkpoint(0, hash_leaf(b"x")),
            Err(PolicyError::InvalidCheckpoint("size 0 with a root other than the empty root"))
        );
        let cp = v.verify_checkpoint(&s.sign_checkpoint(0, empty_root()).unwrap()).unwrap();
        assert_eq!((cp.tree_size, cp.root_hash), (0, empty_root()));
        // Even validly signed by the log key, size 0 with another root is refused.
        let text = format!("{}\n0\n{}\n", s.name(), B64.encode(hash_leaf(b"x").as_bytes()));
        let note = s.sign_note(&text).unwrap();
        assert!(matches!(v.verify_checkpoint(&note), Err(PolicyError::InvalidCheckpoint(_))));
        // And nothing extends size 0 by a proof.
        let mut t = crate::tree::MerkleTree::new(crate::tree::MemoryNodeStore::new());
        t.append(b"a").unwrap();
        let one = v.verify_checkpoint(&s.sign_checkpoint(1, t.root().unwrap()).unwrap()).unwrap();
        let proof = ConsistencyProof { old_size: 0, new_size: 1, hashes: vec![] };
        assert_eq!(one.verify_extends(&cp, &proof), Err(PolicyError::ProofInvalid));
    }

    #[test]
    fn checkpoints_bind_proof_sizes() {
        use crate::tree::{MemoryNodeStore, MerkleTree};
        let s = signer();
        let v = s.verifier();
        let mut t = MerkleTree::new(MemoryNodeStore::new());
        for i in 0u8..4 {
            t.append(&[i]).unwrap();
        }
        let cp3 = v.verify_checkpoint(&s.sign_checkpoint(3, t.root_at(3).unwrap()).unwrap()).unwrap();
        let cp4 = v.verify_checkpoint(&s.sign_checkpoint(4, t.root().unwrap()).unwrap()).unwrap();
        let leaf = hash_leaf(&[0]);
        cp3.verify_inclusion(&leaf, &t.inclusion_proof(0, 3).unwrap()).unwrap();
        // PATH(0, D[3]) also has the shape of a size-4 proof; the checkpoint
        // refuses it because the sizes differ.
        let mut p = t.inclusion_proof(0, 3).unwrap();
        p.tree_size = 4;
        assert!(crate::merkle::verify_inclusion(&leaf, &p, &cp3.root_hash).is_ok());
        assert_eq!(cp3.verify_inclusion(&leaf, &p), Err(PolicyError::ProofInvalid));
        let c = t.consistency_proof(3, 4).unwrap();
        cp4.verify_extends(&cp3, &c).unwrap();
        assert_eq!(cp3.verify_extends(&cp4, &c), Err(PolicyError::ProofInvalid));
        let mut other = cp3.clone();
        other.origin = "elsewhere".into();
        assert_eq!(cp4.verify_extends(&other, &c), Err(PolicyError::ProofInvalid));
    }

    #[test]
    fn verifier_keys_are_checked() {
        let vk = signer().verifier().to_verifier_key();
        for bad in [
            vk.replacen('+', "-", 1),
            vk.replace("medrelay.example/log", ""),
            format!("{}0", vk),
            vk.replacen("+", "+0", 1),
        ] {
            assert!(LogVerifier::from_verifier_key(&bad).is_err(), "{bad}");
        }
        // Wrong key id.
        let (head, tail) = vk.split_at(vk.find('+').unwrap() + 1);
        let wrong = format!("{head}00000000{}", &tail[8..]);
        assert!(matches!(LogVerifier::from_verifier_key(&wrong), Err(PolicyError::Malformed(_))));
        assert!(LogSigner::new("has space", &SigningKey::from_seed(&[1; 32])).is_err());
        assert!(LogSigner::new("has+plus", &SigningKey::from_seed(&[1; 32])).is_err());
    }
}
