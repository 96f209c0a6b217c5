//! Patient-signed grants and revocations.
//!
//! A patient signs the canonical encoding of a [`Grant`] with
//! `domain::SIG_GRANT`, producing a [`SignedGrant`]: the wire and storage
//! form (body bytes + signature). Nothing can use a signed grant until
//! [`SignedGrant::verify`] has checked the signature *and* that the signing
//! key belongs to the grant's patient; it consumes the unverified value and
//! returns a [`VerifiedGrant`] (never deserializable), the only type
//! [`crate::authorize`] accepts. Revocations work the same way.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use medrelay_crypto::encoding::{Decoder, Encoder};
use medrelay_crypto::{
    domain, GrantId, PrincipalId, Signature, SigningKey, Threshold, Timestamp, VerifyingKey,
};

use crate::domain::{GRANT_MAGIC, REVOCATION_MAGIC, SIGNED_GRANT_MAGIC, SIGNED_REVOCATION_MAGIC};
use crate::error::PolicyError;
use crate::scope::{Scope, MAX_SCOPE_LEN};

const VERSION: u8 = 1;
/// Version of the grant body: 2 carries the threshold and fragment count of
/// the re-encryption keys and the digests of the keys the grant authorizes.
const BODY_VERSION: u8 = 2;
/// Most re-encryption key digests in a grant (one per key class).
pub const MAX_REKEY_DIGESTS: usize = 8;
/// Largest encoded grant body.
pub const MAX_GRANT_LEN: usize = MAX_SCOPE_LEN + 256 + 1 + MAX_REKEY_DIGESTS * 32;
/// Largest encoded signed grant.
pub const MAX_SIGNED_GRANT_LEN: usize = MAX_GRANT_LEN + 128;
const MAX_REVOCATION_LEN: usize = 128;
/// Largest encoded signed revocation.
pub const MAX_SIGNED_REVOCATION_LEN: usize = 256;

/// Why the doctor may read (HL7 v3 PurposeOfUse, simplified).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// Treatment (HL7 `TREAT`).
    Treatment,
    /// Emergency treatment (HL7 `ETREAT`).
    Emergency,
    /// Care management and coordination (HL7 `CAREMGT`).
    CareManagement,
    /// Research (HL7 `HRESCH`).
    Research,
    /// Requested by the patient, e.g. a second opinion (HL7 `PATRQT`).
    PatientRequest,
}

impl Purpose {
    /// Every purpose, in code order.
    pub const ALL: [Purpose; 5] = [
        Purpose::Treatment,
        Purpose::Emergency,
        Purpose::CareManagement,
        Purpose::Research,
        Purpose::PatientRequest,
    ];

    /// The one-byte code used in encodings.
    pub const fn code(self) -> u8 {
        match self {
            Purpose::Treatment => 0,
            Purpose::Emergency => 1,
            Purpose::CareManagement => 2,
            Purpose::Research => 3,
            Purpose::PatientRequest => 4,
        }
    }

    /// The purpose with the given code.
    pub fn from_code(code: u8) -> Result<Self, PolicyError> {
        Self::ALL.get(usize::from(code)).copied().ok_or(PolicyError::Malformed("purpose of use code"))
    }

    /// The textual name (`treatment`, `emergency`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Purpose::Treatment => "treatment",
            Purpose::Emergency => "emergency",
            Purpose::CareManagement => "care-management",
            Purpose::Research => "research",
            Purpose::PatientRequest => "patient-request",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Purpose {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or(PolicyError::Malformed("purpose of use"))
    }
}

/// A patient's delegation to a doctor: who, what, why and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    grant_id: GrantId,
    patient: PrincipalId,
    doctor: PrincipalId,
    scope: Scope,
    purpose: Purpose,
    not_before: Timestamp,
    not_after: Timestamp,
    created_at: Timestamp,
    threshold: Threshold,
    rekey_digests: Vec<[u8; 32]>,
}

impl Grant {
    /// Builds a grant valid in `[not_before, not_after)`. Fails if the window
    /// is empty or the patient grants to themself. (The scope is never
    /// empty: [`Scope`] cannot be built empty.)
    #[expect(clippy::too_many_arguments, reason = "one argument per grant field; a builder adds nothing")]
    pub fn new(
        grant_id: GrantId,
        patient: PrincipalId,
        doctor: PrincipalId,
        scope: Scope,
        purpose: Purpose,
        not_before: Timestamp,
        not_after: Timestamp,
        created_at: Timestamp,
    ) -> Result<Self, PolicyError> {
        if not_after <= not_before {
            return Err(PolicyError::InvalidGrant("validity window is empty (not_after <= not_before)"));
        }
        if patient == doctor {
            return Err(PolicyError::InvalidGrant("patient and doctor are the same principal"));
        }
        Ok(Self {
            grant_id,
            patient,
            doctor,
            scope,
            purpose,
            not_before,
            not_after,
            created_at,
            threshold: Threshold::ONE_OF_ONE,
            rekey_digests: Vec::new(),
        })
    }

    /// The grant, with re-encryption keys of `threshold` (fragments needed
    /// of fragments issued; 1-of-1 unless set). Signed with the grant
    /// (review finding F7): the server stores only keys of this threshold
    /// and fragment count, and the doctor's client needs this many
    /// verified fragments from the proxy, whatever the proxy answers.
    pub fn with_threshold(mut self, threshold: Threshold) -> Self {
        self.threshold = threshold;
        self
    }

    /// Threshold and fragment count of the grant's re-encryption keys.
    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    /// The grant, authorizing exactly the re-encryption keys with these
    /// digests (medrelay-crypto `ReencryptionKey::digest`, one per key class
    /// of the scope; review finding F2): the server stores a grant's keys
    /// only if they are the ones the patient signed for. Kept sorted.
    /// Fails if there are more than [`MAX_REKEY_DIGESTS`] or one repeats.
    pub fn with_rekey_digests(mut self, digests: Vec<[u8; 32]>) -> Result<Self, PolicyError> {
        let mut digests = digests;
        digests.sort_unstable();
        if digests.len() > MAX_REKEY_DIGESTS || digests.windows(2).any(|w| w[0] == w[1]) {
            return Err(PolicyError::InvalidGrant("too many or repeated re-encryption key digests"));
        }
        self.rekey_digests = digests;
        Ok(self)
    }

    /// The digests of the re-encryption keys the grant authorizes, sorted.
    pub fn rekey_digests(&self) -> &[[u8; 32]] {
        &self.rekey_digests
    }

    /// The grant id.
    pub fn grant_id(&self) -> GrantId {
        self.grant_id
    }
    /// The granting patient.
    pub fn patient(&self) -> PrincipalId {
        self.patient
    }
    /// The doctor granted access.
    pub fn doctor(&self) -> PrincipalId {
        self.doctor
    }
    /// What the grant reaches.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }
    /// Why.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }
    /// Start of validity (inclusive).
    pub fn not_before(&self) -> Timestamp {
        self.not_before
    }
    /// End of validity (exclusive).
    pub fn not_after(&self) -> Timestamp {
        self.not_after
    }
    /// When the patient created the grant.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// The canonical encoding the patient signs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::new(GRANT_MAGIC, BODY_VERSION);
        e.fixed(self.grant_id.as_bytes())
            .fixed(self.patient.as_bytes())
            .fixed(self.doctor.as_bytes())
            .u8(self.purpose.code())
            .u64(self.not_before.unix_seconds())
            .u64(self.not_after.unix_seconds())
            .u64(self.created_at.unix_seconds())
            .str(&self.scope.to_string())
            .u8(self.threshold.threshold())
            .u8(self.threshold.shares());
        // At most MAX_REKEY_DIGESTS (8): fits a u8.
        e.u8(u8::try_from(self.rekey_digests.len()).unwrap_or(u8::MAX));
        for d in &self.rekey_digests {
            e.fixed(d);
        }
        e.finish()
    }

    /// Decodes a grant body (only canonical encodings are accepted).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PolicyError> {
        let mut d = Decoder::open(bytes, GRANT_MAGIC, &[BODY_VERSION], MAX_GRANT_LEN)?;
        let grant_id = GrantId::from_bytes(d.array()?);
        let patient = PrincipalId::from_bytes(d.array()?);
        let doctor = PrincipalId::from_bytes(d.array()?);
        let purpose = Purpose::from_code(d.u8()?)?;
        let not_before = Timestamp(d.u64()?);
        let not_after = Timestamp(d.u64()?);
        let created_at = Timestamp(d.u64()?);
        let scope_text = d.str(MAX_SCOPE_LEN)?;
        let threshold = Threshold::new(d.u8()?, d.u8()?)
            .map_err(|_| PolicyError::Malformed("grant threshold (1 <= threshold <= fragments <= 16)"))?;
        let n = usize::from(d.u8()?);
        if n > MAX_REKEY_DIGESTS {
            return Err(PolicyError::Malformed("too many re-encryption key digests"));
        }
        let mut digests = Vec::with_capacity(n);
        for _ in 0..n {
            digests.push(d.array::<32>()?);
        }
        d.finish()?;
        if digests.windows(2).any(|w| w[0] >= w[1]) {
            return Err(PolicyError::Malformed("re-encryption key digests are not sorted and distinct"));
        }
        let scope = Scope::parse(scope_text)?;
        if scope.to_string() != scope_text {
            return Err(PolicyError::Malformed("grant scope is not in canonical form"));
        }
        let grant = Self::new(grant_id, patient, doctor, scope, purpose, not_before, not_after, created_at)?;
        Ok(Self { threshold, rekey_digests: digests, ..grant })
    }

    /// Signs the grant with the patient's key. Fails with
    /// [`PolicyError::SignerMismatch`] if `key` is not the patient's.
    pub fn sign(&self, key: &SigningKey) -> Result<SignedGrant, PolicyError> {
        if key.principal_id() != self.patient {
            return Err(PolicyError::SignerMismatch);
        }
        let body = self.to_bytes();
        let signature = key.sign(domain::SIG_GRANT, &body);
        Ok(SignedGrant { body, signature })
    }
}

/// A grant as received: body bytes and signature, *not yet verified*.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedGrant {
    body: Vec<u8>,
    signature: Signature,
}

impl SignedGrant {
    /// Builds from the JSON/wire parts (body bytes and signature).
    pub fn from_parts(body: Vec<u8>, signature: Signature) -> Result<Self, PolicyError> {
        if body.len() > MAX_GRANT_LEN {
            return Err(PolicyError::Malformed("grant body too large"));
        }
        Ok(Self { body, signature })
    }

    /// The signed body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The patient's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The patient the body *claims*: for looking up the key to verify with.
    /// Not authenticated.
    pub fn unverified_patient(&self) -> Result<PrincipalId, PolicyError> {
        Ok(Grant::from_bytes(&self.body)?.patient)
    }

    /// Encoding: magic, version, body, signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::new(SIGNED_GRANT_MAGIC, VERSION);
        e.bytes(&self.body).fixed(&self.signature.to_bytes());
        e.finish()
    }

    /// Decodes (without verifying).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PolicyError> {
        let mut d = Decoder::open(bytes, SIGNED_GRANT_MAGIC, &[VERSION], MAX_SIGNED_GRANT_LEN)?;
        let body = d.bytes(MAX_GRANT_LEN)?.to_vec();
        let signature = Signature::from_bytes(d.take(64)?)?;
        d.finish()?;
        Ok(Self { body, signature })
    }

    /// Verifies the signature with `patient_key` and that the key is the
    /// grant's patient's; consumes the grant and returns the verified form,
    /// or the error and the grant back.
    #[expect(
        clippy::result_large_err,
        reason = "the unverified value is handed back on failure, as umbral-pre does"
    )]
    pub fn verify(self, patient_key: &VerifyingKey) -> Result<VerifiedGrant, (PolicyError, SignedGrant)> {
        let grant = match Grant::from_bytes(&self.body) {
            Ok(g) => g,
            Err(e) => return Err((e, self)),
        };
        if patient_key.principal_id() != grant.patient {
            return Err((PolicyError::SignerMismatch, self));
        }
        if patient_key.verify(domain::SIG_GRANT, &self.body, &self.signature).is_err() {
            return Err((PolicyError::VerificationFailed, self));
        }
        Ok(VerifiedGrant { grant, signed: self })
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SignedJson {
    body: String,
    signature: Signature,
}

impl serde::Serialize for SignedGrant {
    /// `{"body": base64 canonical bytes, "signature": base64}`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SignedJson { body: B64.encode(&self.body), signature: self.signature }.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for SignedGrant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let j = SignedJson::deserialize(d)?;
        if j.body.len() > MAX_GRANT_LEN * 4 / 3 + 4 {
            return Err(serde::de::Error::custom("grant body too large"));
        }
        let body =
            B64.decode(j.body).map_err(|_| serde::de::Error::custom("invalid base64 in grant body"))?;
        Self::from_parts(body, j.signature).map_err(serde::de::Error::custom)
    }
}

/// A grant whose patient signature has been checked. Only
/// [`SignedGrant::verify`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedGrant {
    grant: Grant,
    signed: SignedGrant,
}

impl VerifiedGrant {
    /// The grant.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The signed form (to store, log, or send to the doctor).
    pub fn signed(&self) -> &SignedGrant {
        &self.signed
    }
}

impl std::ops::Deref for VerifiedGrant {
    type Target = Grant;
    fn deref(&self) -> &Grant {
        &self.grant
    }
}

/// A patient's withdrawal of a grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    grant_id: GrantId,
    patient: PrincipalId,
    revoked_at: Timestamp,
}

impl Revocation {
    /// Revokes `grant_id`, owned by `patient`.
    pub fn new(grant_id: GrantId, patient: PrincipalId, revoked_at: Timestamp) -> Self {
        Self { grant_id, patient, revoked_at }
    }
    /// The revoked grant.
    pub fn grant_id(&self) -> GrantId {
        self.grant_id
    }
    /// The patient revoking.
    pub fn patient(&self) -> PrincipalId {
        self.patient
    }
    /// When.
    pub fn revoked_at(&self) -> Timestamp {
        self.revoked_at
    }

    /// The canonical encoding the patient signs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::new(REVOCATION_MAGIC, VERSION);
        e.fixed(self.grant_id.as_bytes()).fixed(self.patient.as_bytes()).u64(self.revoked_at.unix_seconds());
        e.finish()
    }

    /// Decodes a revocation body.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PolicyError> {
        let mut d = Decoder::open(bytes, REVOCATION_MAGIC, &[VERSION], MAX_REVOCATION_LEN)?;
        let grant_id = GrantId::from_bytes(d.array()?);
        let patient = PrincipalId::from_bytes(d.array()?);
        let revoked_at = Timestamp(d.u64()?);
        d.finish()?;
        Ok(Self { grant_id, patient, revoked_at })
    }

    /// Signs with the patient's key ([`PolicyError::SignerMismatch`] for
    /// another key).
    pub fn sign(&self, key: &SigningKey) -> Result<SignedRevocation, PolicyError> {
        if key.principal_id() != self.patient {
            return Err(PolicyError::SignerMismatch);
        }
        let body = self.to_bytes();
        let signature = key.sign(domain::SIG_REVOCATION, &body);
        Ok(SignedRevocation { body, signature })
    }
}

/// A revocation as received, not yet verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRevocation {
    body: Vec<u8>,
    signature: Signature,
}

impl SignedRevocation {
    /// Builds from the wire parts.
    pub fn from_parts(body: Vec<u8>, signature: Signature) -> Result<Self, PolicyError> {
        if body.len() > MAX_REVOCATION_LEN {
            return Err(PolicyError::Malformed("revocation body too large"));
        }
        Ok(Self { body, signature })
    }
    /// The signed body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
    /// The patient's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }
    /// The grant id the body claims (not authenticated).
    pub fn unverified_grant_id(&self) -> Result<GrantId, PolicyError> {
        Ok(Revocation::from_bytes(&self.body)?.grant_id)
    }

    /// Encoding: magic, version, body, signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::new(SIGNED_REVOCATION_MAGIC, VERSION);
        e.bytes(&self.body).fixed(&self.signature.to_bytes());
        e.finish()
    }

    /// Decodes (without verifying).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PolicyError> {
        let mut d = Decoder::open(bytes, SIGNED_REVOCATION_MAGIC, &[VERSION], MAX_SIGNED_REVOCATION_LEN)?;
        let body = d.bytes(MAX_REVOCATION_LEN)?.to_vec();
        let signature = Signature::from_bytes(d.take(64)?)?;
        d.finish()?;
        Ok(Self { body, signature })
    }

    /// Verifies against the patient's key and that the key is the
    /// revocation's patient's.
    #[expect(
        clippy::result_large_err,
        reason = "the unverified value is handed back on failure, as umbral-pre does"
    )]
    pub fn verify(
        self,
        patient_key: &VerifyingKey,
    ) -> Result<VerifiedRevocation, (PolicyError, SignedRevocation)> {
        let rev = match Revocation::from_bytes(&self.body) {
            Ok(r) => r,
            Err(e) => return Err((e, self)),
        };
        if patient_key.principal_id() != rev.patient {
            return Err((PolicyError::SignerMismatch, self));
        }
        if patient_key.verify(domain::SIG_REVOCATION, &self.body, &self.signature).is_err() {
            return Err((PolicyError::VerificationFailed, self));
        }
        Ok(VerifiedRevocation { revocation: rev, signed: self })
    }
}

impl serde::Serialize for SignedRevocation {
    /// `{"body": base64 canonical bytes, "signature": base64}`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SignedJson { body: B64.encode(&self.body), signature: self.signature }.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for SignedRevocation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let j = SignedJson::deserialize(d)?;
        if j.body.len() > MAX_REVOCATION_LEN * 2 {
            return Err(serde::de::Error::custom("revocation body too large"));
        }
        let body =
            B64.decode(j.body).map_err(|_| serde::de::Error::custom("invalid base64 in revocation body"))?;
        Self::from_parts(body, j.signature).map_err(serde::de::Error::custom)
    }
}

/// A revocation whose signature has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRevocation {
    revocation: Revocation,
    signed: SignedRevocation,
}

impl VerifiedRevocation {
    /// The revocation.
    pub fn revocation(&self) -> &Revocation {
        &self.revocation
    }
    /// The signed form.
    pub fn signed(&self) -> &SignedRevocation {
        &self.signed
    }
}

impl std::ops::Deref for VerifiedRevocation {
    type Target = Revocation;
    fn deref(&self) -> &Revocation {
        &self.revocation
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use medrelay_crypto::DecodeError;

    fn keys() -> (SigningKey, SigningKey) {
        (SigningKey::from_seed(&[1; 32]), SigningKey::from_seed(&[2; 32]))
    }

    fn grant(patient: &SigningKey, doctor: &SigningKey) -> Grant {
        Grant::new(
            GrantId::from_bytes([9; 16]),
            patient.principal_id(),
            doctor.principal_id(),
            "Condition,Observation?category=laboratory".parse().unwrap(),
            Purpose::Treatment,
            Timestamp(1000),
            Timestamp(2000),
            Timestamp(900),
        )
        .unwrap()
    }

    #[test]
    fn sign_verify_round_trip() {
        let (p, d) = keys();
        let g = grant(&p, &d);
        let signed = g.sign(&p).unwrap();
        let decoded = SignedGrant::from_bytes(&signed.to_bytes()).unwrap();
        assert_eq!(decoded, signed);
        let json = serde_json::to_string(&signed).unwrap();
        let from_json: SignedGrant = serde_json::from_str(&json).unwrap();
        assert_eq!(from_json.unverified_patient().unwrap(), p.principal_id());
        let v = from_json.verify(&p.verifying_key()).unwrap();
        assert_eq!(v.grant(), &g);
        assert_eq!(v.doctor(), d.principal_id());
        assert_eq!(Grant::from_bytes(&g.to_bytes()).unwrap(), g);
    }

    /// Review finding F2: the signed body carries the digests of the
    /// re-encryption keys, sorted; unsorted, repeated or too many digests
    /// are refused when building and when decoding.
    #[test]
    fn rekey_digests_are_signed_sorted_and_bounded() {
        let (p, d) = keys();
        let g = grant(&p, &d).with_rekey_digests(vec![[3; 32], [1; 32]]).unwrap();
        assert_eq!(g.rekey_digests(), &[[1; 32], [3; 32]]);
        let v = g.sign(&p).unwrap().verify(&p.verifying_key()).unwrap();
        assert_eq!(v.grant().rekey_digests(), g.rekey_digests());
        assert_ne!(g.to_bytes(), grant(&p, &d).to_bytes(), "the digests are in the signed body");
        assert!(grant(&p, &d).with_rekey_digests(vec![[1; 32], [1; 32]]).is_err());
        assert!(grant(&p, &d).with_rekey_digests(vec![[0; 32]; MAX_REKEY_DIGESTS + 1]).is_err());
        // Unsorted on the wire: swap the two digests at the end of the body.
        let mut body = g.to_bytes();
        let n = body.len();
        let (a, b) = (body[n - 64..n - 32].to_vec(), body[n - 32..].to_vec());
        body[n - 64..n - 32].copy_from_slice(&b);
        body[n - 32..].copy_from_slice(&a);
        assert!(matches!(Grant::from_bytes(&body), Err(PolicyError::Malformed(_))));
    }

    /// Review finding F7: the threshold is in the signed body (1-of-1
    /// unless set); a threshold of zero, above the fragment count or over
    /// the crypto crate's limit does not decode.
    #[test]
    fn threshold_is_signed_and_validated() {
        let (p, d) = keys();
        assert_eq!(grant(&p, &d).threshold(), Threshold::ONE_OF_ONE);
        let two_of_three = Threshold::new(2, 3).unwrap();
        let g = grant(&p, &d).with_threshold(two_of_three).with_rekey_digests(vec![[5; 32]]).unwrap();
        assert_ne!(g.to_bytes(), grant(&p, &d).with_rekey_digests(vec![[5; 32]]).unwrap().to_bytes());
        let v = g.sign(&p).unwrap().verify(&p.verifying_key()).unwrap();
        assert_eq!(v.threshold(), two_of_three);
        let body = |t: u8, n: u8| {
            let mut e = Encoder::new(GRANT_MAGIC, BODY_VERSION);
            e.fixed(g.grant_id().as_bytes())
                .fixed(g.patient().as_bytes())
                .fixed(g.doctor().as_bytes())
                .u8(0)
                .u64(1000)
                .u64(2000)
                .u64(900)
                .str(&g.scope().to_string())
                .u8(t)
                .u8(n)
                .u8(0);
            e.finish()
        };
        assert_eq!(Grant::from_bytes(&body(2, 3)).unwrap().threshold(), two_of_three);
        for (t, n) in [(0, 1), (2, 1), (1, 17), (0, 0)] {
            assert!(
                matches!(Grant::from_bytes(&body(t, n)), Err(PolicyError::Malformed(m)) if m.contains("threshold")),
                "{t}-of-{n} decoded"
            );
        }
    }

    #[test]
    fn wrong_keys_and_tampering_are_rejected() {
        let (p, d) = keys();
        let g = grant(&p, &d);
        assert_eq!(g.sign(&d), Err(PolicyError::SignerMismatch));
        let signed = g.sign(&p).unwrap();
        // The doctor's key: not the patient.
        let (e, back) = signed.clone().verify(&d.verifying_key()).unwrap_err();
        assert_eq!(e, PolicyError::SignerMismatch);
        assert_eq!(back, signed);
        // Tampered body (doctor id changed), still decodable.
        let mut body = signed.body().to_vec();
        body[5 + 16 + 32] ^= 1;
        let forged = SignedGrant::from_parts(body, *signed.signature()).unwrap();
        assert_eq!(forged.verify(&p.verifying_key()).unwrap_err().0, PolicyError::VerificationFailed);
        // A revocation signature is not a grant signature (domain separation).
        let sig = p.sign(domain::SIG_REVOCATION, signed.body());
        let cross = SignedGrant::from_parts(signed.body().to_vec(), sig).unwrap();
        assert_eq!(cross.verify(&p.verifying_key()).unwrap_err().0, PolicyError::VerificationFailed);
    }

    #[test]
    fn invalid_grants_are_construction_errors() {
        let (p, d) = keys();
        let g = grant(&p, &d);
        let mk = |nb, na, doctor| {
            Grant::new(
                g.grant_id(),
                g.patient(),
                doctor,
                g.scope().clone(),
                g.purpose(),
                Timestamp(nb),
                Timestamp(na),
                g.created_at(),
            )
        };
        assert!(matches!(mk(2000, 2000, g.doctor()), Err(PolicyError::InvalidGrant(_))));
        assert!(matches!(mk(2000, 1000, g.doctor()), Err(PolicyError::InvalidGrant(_))));
        assert!(matches!(mk(1000, 2000, g.patient()), Err(PolicyError::InvalidGrant(_))));
    }

    #[test]
    fn decoders_reject_bad_bytes() {
        let (p, d) = keys();
        let g = grant(&p, &d);
        let body = g.to_bytes();
        let signed = g.sign(&p).unwrap().to_bytes();
        for n in 0..body.len() {
            assert!(Grant::from_bytes(&body[..n]).is_err());
        }
        for n in 0..signed.len() {
            assert!(SignedGrant::from_bytes(&signed[..n]).is_err());
        }
        let mut t = signed.clone();
        t.push(0);
        assert_eq!(SignedGrant::from_bytes(&t), Err(PolicyError::Decode(DecodeError::TrailingBytes)));
        let mut v = body.clone();
        v[4] = 9;
        assert_eq!(
            Grant::from_bytes(&v),
            Err(PolicyError::Decode(DecodeError::UnsupportedVersion { found: 9 }))
        );
        assert!(matches!(
            SignedGrant::from_bytes(&vec![0; MAX_SIGNED_GRANT_LEN + 1]),
            Err(PolicyError::Decode(DecodeError::TooLarge { .. }))
        ));
        // Non-canonical scope text in a body is rejected.
        let mut e = Encoder::new(GRANT_MAGIC, BODY_VERSION);
        e.fixed(g.grant_id().as_bytes())
            .fixed(g.patient().as_bytes())
            .fixed(g.doctor().as_bytes())
            .u8(0)
            .u64(1000)
            .u64(2000)
            .u64(900)
            .str("Observation?category=laboratory,Condition")
            .u8(1)
            .u8(1)
            .u8(0);
        assert_eq!(
            Grant::from_bytes(&e.finish()),
            Err(PolicyError::Malformed("grant scope is not in canonical form"))
        );
        // Bad purpose code.
        let mut bad = body.clone();
        bad[5 + 16 + 64] = 77;
        assert_eq!(Grant::from_bytes(&bad), Err(PolicyError::Malformed("purpose of use code")));
    }

    #[test]
    fn revocation_decoders_reject_bad_bytes() {
        let (p, _) = keys();
        let r = Revocation::new(GrantId::from_bytes([9; 16]), p.principal_id(), Timestamp(1500));
        let body = r.to_bytes();
        assert_eq!(Revocation::from_bytes(&body).unwrap(), r);
        for n in 0..body.len() {
            assert!(Revocation::from_bytes(&body[..n]).is_err());
        }
        let mut t = body.clone();
        t.push(1);
        assert_eq!(Revocation::from_bytes(&t), Err(PolicyError::Decode(DecodeError::TrailingBytes)));
        let mut v = body.clone();
        v[4] = 0;
        assert_eq!(
            Revocation::from_bytes(&v),
            Err(PolicyError::Decode(DecodeError::UnsupportedVersion { found: 0 }))
        );
        assert_eq!(
            Revocation::from_bytes(&[0; 129]),
            Err(PolicyError::Decode(DecodeError::TooLarge { limit: 128, actual: 129 }))
        );
        let signed = r.sign(&p).unwrap().to_bytes();
        let mut t = signed.clone();
        t.push(1);
        assert_eq!(SignedRevocation::from_bytes(&t), Err(PolicyError::Decode(DecodeError::TrailingBytes)));
        let mut v = signed.clone();
        v[4] = 7;
        assert_eq!(
            SignedRevocation::from_bytes(&v),
            Err(PolicyError::Decode(DecodeError::UnsupportedVersion { found: 7 }))
        );
        assert!(matches!(
            SignedRevocation::from_bytes(&[0; MAX_SIGNED_REVOCATION_LEN + 1]),
            Err(PolicyError::Decode(DecodeError::TooLarge { .. }))
        ));
        // Wrong type: a signed grant is not a signed revocation.
        let (p2, d2) = keys();
        let g = grant(&p2, &d2).sign(&p2).unwrap().to_bytes();
        assert_eq!(SignedRevocation::from_bytes(&g), Err(PolicyError::Decode(DecodeError::WrongMagic)));
        assert!(SignedRevocation::from_parts(vec![0; 200], *r.sign(&p).unwrap().signature()).is_err());
    }

    #[test]
    fn grant_body_limits() {
        let (p, d) = keys();
        let body = grant(&p, &d).to_bytes();
        let mut t = body.clone();
        t.push(0);
        assert_eq!(Grant::from_bytes(&t), Err(PolicyError::Decode(DecodeError::TrailingBytes)));
        assert!(matches!(
            Grant::from_bytes(&vec![0; MAX_GRANT_LEN + 1]),
            Err(PolicyError::Decode(DecodeError::TooLarge { .. }))
        ));
        let sig = *grant(&p, &d).sign(&p).unwrap().signature();
        assert_eq!(
            SignedGrant::from_parts(vec![0; MAX_GRANT_LEN + 1], sig),
            Err(PolicyError::Malformed("grant body too large"))
        );
        // A garbage body decodes as a SignedGrant but never verifies.
        let junk = SignedGrant::from_parts(vec![1, 2, 3], sig).unwrap();
        assert!(matches!(junk.verify(&p.verifying_key()), Err((PolicyError::Decode(_), _))));
    }

    #[test]
    fn revocations_sign_verify_and_reject() {
        let (p, d) = keys();
        let r = Revocation::new(GrantId::from_bytes([9; 16]), p.principal_id(), Timestamp(1500));
        assert_eq!(r.sign(&d), Err(PolicyError::SignerMismatch));
        let s = r.sign(&p).unwrap();
        let s2 = SignedRevocation::from_bytes(&s.to_bytes()).unwrap();
        let json: SignedRevocation = serde_json::from_str(&serde_json::to_string(&s2).unwrap()).unwrap();
        assert_eq!(json.unverified_grant_id().unwrap(), r.grant_id());
        let v = json.verify(&p.verifying_key()).unwrap();
        assert_eq!(v.revocation(), &r);
        assert_eq!(s.clone().verify(&d.verifying_key()).unwrap_err().0, PolicyError::SignerMismatch);
        // A grant signature over the revocation bytes does not pass.
        let cross =
            SignedRevocation::from_parts(s.body().to_vec(), p.sign(domain::SIG_GRANT, s.body())).unwrap();
        assert_eq!(cross.verify(&p.verifying_key()).unwrap_err().0, PolicyError::VerificationFailed);
        let bytes = s.to_bytes();
        for n in 0..bytes.len() {
            assert!(SignedRevocation::from_bytes(&bytes[..n]).is_err());
        }
    }
}
