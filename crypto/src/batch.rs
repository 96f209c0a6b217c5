//! Batches: one batch key per (owner, key class, batch), wrapped in one
//! hybrid capsule.
//!
//! The owner draws two fresh 32-byte shares, encapsulates one under the
//! class's Umbral key and one under its lattice key ([`Capsule`]), signs the
//! capsule once, and derives the batch key
//! `HKDF-SHA256(ikm = umbral share || lattice share, info = HKDF_BATCH_KEY ||
//! owner id || key class)`. Every record of the batch is then sealed with a
//! data key derived from the batch key (see [`crate::encrypt_record`]), so a
//! batch of a thousand records costs one capsule (46 KiB, one public-key
//! encapsulation per scheme) instead of a thousand.
//!
//! Opening: the owner decapsulates both shares with the class secret key
//! ([`decrypt_batch_key_as_owner`]); a delegate combines the proxy's
//! re-encryption of the capsule with its own PRE secret key
//! ([`decrypt_batch_key_as_delegate`]). Both check the owner's signature on
//! the capsule first.

use std::fmt;

use hkdf::Hkdf;
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::capsule::{Capsule, SignedCapsule, UMBRAL_SHARE_CT_LEN};
use crate::category::KeyClass;
use crate::domain;
use crate::encoding::{Decoder, Encoder};
use crate::error::{CryptoError, DecodeError};
use crate::ids::{CapsuleId, PrincipalId};
use crate::keys::{PatientPublicKeys, PatientSecretKeys, PreSecretKey};
use crate::lattice;
use crate::rekey::{ReencryptedCapsule, Threshold};
use crate::signing::{SigningKey, VerifyingKey};

const KEY_MAGIC: &[u8; 4] = b"MRBK";
const KEY_VERSION: u8 = 1;
/// Exact length of [`BatchKey::to_bytes`].
pub const BATCH_KEY_LEN: usize = 5 + 32 + 32 + 1 + 32;

struct BatchKeyInner {
    capsule: CapsuleId,
    owner: PrincipalId,
    key_class: KeyClass,
    secret: [u8; 32],
}

impl Drop for BatchKeyInner {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

/// A batch's 32-byte key, with the capsule, owner and key class it belongs
/// to. Secret: zeroized on drop, on the heap, printed as its capsule id
/// only.
pub struct BatchKey(Box<BatchKeyInner>);

impl BatchKey {
    fn derive(
        capsule: CapsuleId,
        owner: PrincipalId,
        key_class: KeyClass,
        umbral_share: &[u8; 32],
        lattice_share: &[u8; 32],
    ) -> Self {
        let mut ikm = Zeroizing::new([0u8; 64]);
        ikm[..32].copy_from_slice(umbral_share);
        ikm[32..].copy_from_slice(lattice_share);
        let hk = Hkdf::<Sha256>::new(None, ikm.as_ref());
        let mut inner = Box::new(BatchKeyInner { capsule, owner, key_class, secret: [0u8; 32] });
        hk.expand_multi_info(
            &[domain::HKDF_BATCH_KEY, owner.as_bytes(), &[key_class.code()]],
            &mut inner.secret,
        )
        .unwrap_or_else(|_| unreachable!("HKDF-SHA256 always yields 32 bytes (limit 8160)"));
        Self(inner)
    }

    /// The capsule that wraps this key.
    pub fn capsule_id(&self) -> CapsuleId {
        self.0.capsule
    }

    /// The batch's owner.
    pub fn owner(&self) -> PrincipalId {
        self.0.owner
    }

    /// The batch's key class.
    pub fn key_class(&self) -> KeyClass {
        self.0.key_class
    }

    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.0.secret
    }

    /// The key with its capsule id, owner and class (magic `MRBK`, version
    /// 1), for a client's sealed keystore.
    ///
    /// **Warning:** these are secret bytes: store them only encrypted (the
    /// doctor client keeps them in its keystore, sealed under a key derived
    /// from its own secret keys).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut e = Encoder::with_capacity(KEY_MAGIC, KEY_VERSION, BATCH_KEY_LEN);
        e.fixed(self.0.capsule.as_bytes())
            .fixed(self.0.owner.as_bytes())
            .u8(self.0.key_class.code())
            .fixed(&self.0.secret);
        Zeroizing::new(e.finish())
    }

    /// Reads [`Self::to_bytes`] back.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(bytes, KEY_MAGIC, &[KEY_VERSION], BATCH_KEY_LEN)?;
        let capsule = CapsuleId::from_bytes(d.array()?);
        let owner = PrincipalId::from_bytes(d.array()?);
        let key_class = KeyClass::from_code(d.u8()?)?;
        let mut inner = Box::new(BatchKeyInner { capsule, owner, key_class, secret: [0u8; 32] });
        inner.secret.copy_from_slice(d.take(32)?);
        d.finish()?;
        Ok(Self(inner))
    }
}

impl fmt::Debug for BatchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchKey")
            .field("capsule", &self.0.capsule)
            .field("key_class", &self.0.key_class)
            .finish_non_exhaustive()
    }
}

/// A batch being sealed by its owner: the batch key and its signed capsule.
#[derive(Debug)]
pub struct Batch {
    key: BatchKey,
    capsule: SignedCapsule,
}

impl Batch {
    /// The batch key (records are sealed with keys derived from it).
    pub fn key(&self) -> &BatchKey {
        &self.key
    }

    /// The signed capsule to upload with the batch's records.
    pub fn capsule(&self) -> &SignedCapsule {
        &self.capsule
    }

    /// The capsule's id.
    pub fn capsule_id(&self) -> CapsuleId {
        self.capsule.id()
    }

    /// The key class.
    pub fn key_class(&self) -> KeyClass {
        self.capsule.key_class()
    }
}

fn share_from(bytes: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let mut share = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(CryptoError::Decryption);
    }
    share.copy_from_slice(bytes);
    Ok(share)
}

/// Starts a batch of `owner`'s records of key class `class`: draws a fresh
/// share for each scheme, encapsulates them under the class's public keys,
/// signs the capsule ([`domain::SIG_CAPSULE`]) and derives the batch key.
///
/// Costs one Umbral and one lattice encapsulation (about 2 ms) whatever the
/// batch's size. Fails only if Umbral's encapsulation fails.
pub fn generate_batch<R: RngCore + CryptoRng>(
    rng: &mut R,
    owner: &SigningKey,
    owner_keys: &PatientPublicKeys,
    class: KeyClass,
) -> Result<Batch, CryptoError> {
    let pk = owner_keys.class(class);
    let mut umbral_share = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(umbral_share.as_mut());
    let mut lattice_share = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(lattice_share.as_mut());
    let (umbral, umbral_ct) = umbral_pre::encrypt_with_rng(rng, pk.umbral(), umbral_share.as_ref())
        .map_err(|_| CryptoError::InvalidParameter("umbral encapsulation failed"))?;
    debug_assert_eq!(umbral_ct.len(), UMBRAL_SHARE_CT_LEN);
    let lattice = lattice::encrypt_lattice_share(rng, pk.lattice(), &lattice_share);
    let owner_id = owner.principal_id();
    let capsule = Capsule { owner: owner_id, key_class: class, umbral, umbral_share: umbral_ct, lattice };
    let capsule = SignedCapsule::sign(capsule, |bytes| owner.sign(domain::SIG_CAPSULE, bytes));
    let key = BatchKey::derive(capsule.id(), owner_id, class, &umbral_share, &lattice_share);
    Ok(Batch { key, capsule })
}

/// Opens a batch key with the owner's secret keys, after checking the
/// owner's signature on the capsule with `owner_vk`. Every failure is the
/// one opaque [`CryptoError::Decryption`].
pub fn decrypt_batch_key_as_owner(
    owner: &PatientSecretKeys,
    owner_vk: &VerifyingKey,
    capsule: &SignedCapsule,
) -> Result<BatchKey, CryptoError> {
    capsule.verify_owner(owner_vk).map_err(|_| CryptoError::Decryption)?;
    let c = capsule.capsule();
    let sk = owner.class_secret_key(c.key_class());
    let mut umbral_plain = umbral_pre::decrypt_original(sk.umbral(), &c.umbral, &c.umbral_share)
        .map_err(|_| CryptoError::Decryption)?;
    let umbral_share = share_from(&umbral_plain);
    umbral_plain.zeroize();
    let umbral_share = umbral_share?;
    let lattice_share = lattice::decrypt_lattice_share(sk.lattice(), &c.lattice);
    Ok(BatchKey::derive(capsule.id(), c.owner(), c.key_class(), &umbral_share, &lattice_share))
}

/// The id of the key fragment a capsule fragment was made with (bytes
/// 66..98 of umbral-pre's documented simple encoding of a capsule fragment).
fn cfrag_kfrag_id(cfrag: &umbral_pre::VerifiedCapsuleFrag) -> Option<[u8; 32]> {
    cfrag.to_bytes_simple().get(66..98)?.try_into().ok()
}

/// Opens a batch key as a delegate from the proxy's re-encryption of its
/// capsule toward `delegate`.
///
/// `threshold` is the grant's (the patient signed it), never the proxy's.
/// Checks, before decrypting: the owner's signature on the capsule
/// (`owner_vk`), that the re-encryption is of this capsule and class, and
/// each Umbral capsule fragment's proof against the owner's class key, the
/// owner's fragment-signing key and the delegate's key; fragments made with
/// the same key fragment count once, and at least `threshold.threshold()`
/// distinct ones must verify. Every failure is the one opaque
/// [`CryptoError::Decryption`].
pub fn decrypt_batch_key_as_delegate(
    delegate: &PreSecretKey,
    owner_vk: &VerifyingKey,
    owner_keys: &PatientPublicKeys,
    capsule: &SignedCapsule,
    reencrypted: &ReencryptedCapsule,
    threshold: Threshold,
) -> Result<BatchKey, CryptoError> {
    capsule.verify_owner(owner_vk).map_err(|_| CryptoError::Decryption)?;
    let c = capsule.capsule();
    let class = c.key_class();
    if reencrypted.key_class != class || reencrypted.capsule != capsule.id() {
        return Err(CryptoError::Decryption);
    }
    let class_pk = owner_keys.class(class);
    let signer = owner_keys.umbral_verifying_key().inner();
    let delegate_umbral_pk = delegate.umbral().public_key();
    let mut ids = std::collections::BTreeSet::new();
    let verified: Vec<umbral_pre::VerifiedCapsuleFrag> = reencrypted
        .cfrags
        .iter()
        .filter_map(|cf| cf.clone().verify(&c.umbral, signer, class_pk.umbral(), &delegate_umbral_pk).ok())
        .filter(|v| cfrag_kfrag_id(v).is_some_and(|id| ids.insert(id)))
        .collect();
    if verified.len() < usize::from(threshold.threshold()) {
        return Err(CryptoError::Decryption);
    }
    let mut umbral_plain = umbral_pre::decrypt_reencrypted(
        delegate.umbral(),
        class_pk.umbral(),
        &c.umbral,
        verified,
        &c.umbral_share,
    )
    .map_err(|_| CryptoError::Decryption)?;
    let umbral_share = share_from(&umbral_plain);
    umbral_plain.zeroize();
    let umbral_share = umbral_share?;
    let lattice_share = lattice::decrypt_reencrypted_lattice_share(delegate.lattice(), &reencrypted.lattice);
    Ok(BatchKey::derive(capsule.id(), c.owner(), class, &umbral_share, &lattice_share))
}
