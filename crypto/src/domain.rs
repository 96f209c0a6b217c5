//! Every domain-separation label used by medrelay: HKDF infos, signature
//! contexts and hash prefixes. Keeping them in one place makes it easy to check
//! that no two uses share a label.

/// Hash prefix for a principal id: `SHA-256(PRINCIPAL_ID || ed25519 public key)`.
pub const PRINCIPAL_ID: &[u8] = b"medrelay/v1/principal-id";
/// Hash prefix for public-key fingerprints: `SHA-256(FINGERPRINT || encoding)`.
pub const FINGERPRINT: &[u8] = b"medrelay/v1/fingerprint";
/// Signature context for a record envelope (header, capsule id, ciphertext hash).
pub const SIG_RECORD: &[u8] = b"medrelay/v2/sig/record";
/// Signature context for a batch capsule (its owner signs its bytes once).
pub const SIG_CAPSULE: &[u8] = b"medrelay/v2/sig/capsule";
/// Hash prefix of a capsule id: `SHA-256(CAPSULE_ID || capsule bytes)`.
pub const CAPSULE_ID: &[u8] = b"medrelay/v2/capsule-id";
/// Signature context for a grant.
pub const SIG_GRANT: &[u8] = b"medrelay/v1/sig/grant";
/// Signature context for a revocation.
pub const SIG_REVOCATION: &[u8] = b"medrelay/v1/sig/revocation";
/// Signature context for an authentication challenge response.
pub const SIG_AUTH_CHALLENGE: &[u8] = b"medrelay/v1/sig/auth-challenge";
/// Signature context for a principal's self-signed key registration.
pub const SIG_REGISTRATION: &[u8] = b"medrelay/v1/sig/registration";
/// Signature context for a DP summary submission.
pub const SIG_SUMMARY: &[u8] = b"medrelay/v1/sig/summary";
/// HKDF info for a batch key, derived from the two PRE shares of its capsule
/// (the shares are the input key material, the capsule's owner and key class
/// follow the label in the info).
pub const HKDF_BATCH_KEY: &[u8] = b"medrelay/v2/hkdf/batch-key";
/// HKDF info prefix for a record's data key, derived from its batch key; the
/// record id, `SHA-256(header bytes)` and the capsule id follow it in the info.
pub const HKDF_DATA_KEY: &[u8] = b"medrelay/v2/hkdf/data-key";
/// HKDF info prefix for deriving a key class's PRE secrets from the master secret.
pub const HKDF_KEY_CLASS: &[u8] = b"medrelay/v1/hkdf/key-class";
/// HKDF info expanding a 32-byte lattice seed into the tfhe seeds of the
/// secret key and the public key's mask.
pub const HKDF_LATTICE_KEYGEN: &[u8] = b"medrelay/v1/hkdf/lattice-keygen";
/// HKDF info for the patient's Umbral signing key (signs key fragments).
pub const HKDF_UMBRAL_SIGNER: &[u8] = b"medrelay/v1/hkdf/umbral-signer";
/// HKDF info for the Ed25519 signing key seed derived from a master secret.
pub const HKDF_SIGNING_KEY: &[u8] = b"medrelay/v1/hkdf/signing-key";
/// Associated-data label for key files (Argon2id + AES-256-GCM).
pub const KEY_FILE_AAD: &[u8] = b"medrelay/v1/key-file";
/// HKDF info for the Umbral half of a PRE key pair, derived from its 32-byte seed.
pub const HKDF_PRE_UMBRAL: &[u8] = b"medrelay/v1/hkdf/pre-umbral";
/// HKDF info for the lattice half of a PRE key pair, derived from its 32-byte seed.
pub const HKDF_PRE_LATTICE: &[u8] = b"medrelay/v1/hkdf/pre-lattice";
/// Label given to umbral-pre's `SecretKeyFactory::make_key` for every Umbral key.
pub const UMBRAL_KEY_LABEL: &[u8] = b"medrelay/v1/umbral/secret-key";
/// Fingerprint kind of a hybrid PRE public key ([`crate::PrePublicKey`]).
pub const FINGERPRINT_PRE_KEY: &[u8] = b"medrelay-pre-public-key";
/// Fingerprint kind of a patient's set of PRE public keys ([`crate::PatientPublicKeys`]).
pub const FINGERPRINT_PATIENT_KEYS: &[u8] = b"medrelay-patient-public-keys";
/// Hash prefix of a re-encryption key digest (bound into grants).
pub const REKEY_DIGEST: &[u8] = b"medrelay/v1/rekey-digest";
/// HPKE `info` prefix of a private-study report share; followed by the
/// recipient's role (`leader` or `helper`) and the study's name.
pub const HPKE_STUDY_SHARE: &[u8] = b"medrelay/v1/hpke/study-share";
/// Associated-data prefix of a private-study report share (the report id,
/// time and public share follow).
pub const STUDY_SHARE_AAD: &[u8] = b"medrelay/v1/study-share-aad";
/// Prio3 application context prefix of a private study (the study's SHA-256
/// and the measurement group follow).
pub const PRIO3_STUDY_CONTEXT: &[u8] = b"medrelay/v1/prio3/study";
/// HKDF info deriving a study's Prio3 verification key from the secret the
/// two aggregators share.
pub const HKDF_STUDY_VERIFY_KEY: &[u8] = b"medrelay/v1/hkdf/study-verify-key";
