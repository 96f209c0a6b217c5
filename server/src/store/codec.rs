//! Versioned binary encodings of stored values.

use medrelay_crypto::encoding::{Decoder, Encoder};
use medrelay_crypto::{
    DecodeError, GrantId, PrincipalId, RecordHeader, RecordId, Signature, Timestamp, VerifyingKey,
    MAX_HEADER_LEN,
};
use medrelay_wire::{limits, Role};

use super::StoreError;

const V1: u8 = 1;
const V2: u8 = 2;
/// Largest stored metadata value (anything but envelopes and key material).
const MAX_META: usize = limits::MAX_PRE_PUBLIC_KEYS_BYTES + 4096;

fn corrupt(what: &'static str) -> impl Fn(DecodeError) -> StoreError {
    move |_| StoreError::Corrupt(what)
}

fn role(d: &mut Decoder<'_>) -> Result<Role, DecodeError> {
    Role::from_code(d.u8()?).ok_or(DecodeError::Invalid("role"))
}

/// An outstanding authentication challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Who must sign it.
    pub principal: PrincipalId,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

impl Challenge {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(b"MSCH", V1);
        e.fixed(self.principal.as_bytes()).u64(self.expires_at.0);
        e.finish()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        (|| -> Result<Self, DecodeError> {
            let mut d = Decoder::open(b, b"MSCH", &[V1], 64)?;
            let principal = PrincipalId::from_bytes(d.array()?);
            let expires_at = Timestamp(d.u64()?);
            d.finish()?;
            Ok(Self { principal, expires_at })
        })()
        .map_err(corrupt("challenge"))
    }
}

/// A bearer-token session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Authenticated principal.
    pub principal: PrincipalId,
    /// Its role.
    pub role: Role,
    /// When the token expires.
    pub expires_at: Timestamp,
}

impl Session {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(b"MSSE", V1);
        e.fixed(self.principal.as_bytes()).u8(self.role.code()).u64(self.expires_at.0);
        e.finish()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        (|| -> Result<Self, DecodeError> {
            let mut d = Decoder::open(b, b"MSSE", &[V1], 64)?;
            let principal = PrincipalId::from_bytes(d.array()?);
            let role = role(&mut d)?;
            let expires_at = Timestamp(d.u64()?);
            d.finish()?;
            Ok(Self { principal, role, expires_at })
        })()
        .map_err(corrupt("session"))
    }
}

/// An operator-issued one-time enrollment token (stored hashed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrollment {
    /// Role it enrolls.
    pub role: Role,
    /// Name the operator gave.
    pub name: String,
    /// When it expires.
    pub expires_at: Timestamp,
}

impl Enrollment {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(b"MSEN", V1);
        e.u8(self.role.code()).str(&self.name).u64(self.expires_at.0);
        e.finish()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        (|| -> Result<Self, DecodeError> {
            let mut d = Decoder::open(b, b"MSEN", &[V1], 512)?;
            let role = role(&mut d)?;
            let name = d.str(limits::MAX_NAME_LEN)?.to_owned();
            let expires_at = Timestamp(d.u64()?);
            d.finish()?;
            Ok(Self { role, name, expires_at })
        })()
        .map_err(corrupt("enrollment"))
    }
}

/// A registered principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPrincipal {
    /// Role.
    pub role: Role,
    /// Display name.
    pub name: String,
    /// Signing key (the id derives from it).
    pub signing_key: VerifyingKey,
    /// Encoded PRE public keys.
    pub pre_public_keys: Vec<u8>,
    /// Registration signature.
    pub signature: Signature,
    /// Registration time.
    pub registered_at: Timestamp,
    /// Log index of the registration event (set by the store).
    pub log_index: u64,
}

impl StoredPrincipal {
    /// The principal id.
    pub fn id(&self) -> PrincipalId {
        self.signing_key.principal_id()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(b"MSPR", V1, 256 + self.pre_public_keys.len());
        e.u8(self.role.code())
            .str(&self.name)
            .fixed(&self.signing_key.to_bytes())
            .bytes(&self.pre_public_keys)
            .fixed(&self.signature.to_bytes())
            .u64(self.registered_at.0)
            .u64(self.log_index);
        e.finish()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        (|| -> Result<Self, DecodeError> {
            let mut d = Decoder::open(b, b"MSPR", &[V1], MAX_META)?;
            let role = role(&mut d)?;
            let name = d.str(limits::MAX_NAME_LEN)?.to_owned();
            let signing_key = VerifyingKey::from_bytes(d.take(32)?)?;
            let pre_public_keys = d.bytes(limits::MAX_PRE_PUBLIC_KEYS_BYTES)?.to_vec();
            let signature = Signature::from_bytes(d.take(64)?)?;
            let registered_at = Timestamp(d.u64()?);
            let log_index = d.u64()?;
            d.finish()?;
            Ok(Self { role, name, signing_key, pre_public_keys, signature, registered_at, log_index })
        })()
        .map_err(corrupt("principal"))
    }
}

/// Metadata of a stored record: its owner-signed header (id, owner,
/// category and labels, key class, created-at; checked at upload), which is
/// what access is decided on without opening the envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    /// The record's header, as signed by its owner.
    pub header: RecordHeader,
    /// Envelope size in bytes.
    pub size: u64,
    /// Log index of the `record published` event (set by the store).
    pub log_index: u64,
}

impl RecordMeta {
    /// The record id.
    pub fn record_id(&self) -> RecordId {
        self.header.record_id()
    }

    /// The owner.
    pub fn owner(&self) -> PrincipalId {
        self.header.owner()
    }

    /// Version 2 (version 1 had no header; such stores are refused at open
    /// because their log predates leaf commitments).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(b"MSRM", V2);
        e.bytes(&self.header.to_bytes()).u64(self.size).u64(self.log_index);
        e.finish()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        (|| -> Result<Self, DecodeError> {
            let mut d = Decoder::open(b, b"MSRM", &[V2], MAX_HEADER_LEN + 64)?;
            let header = RecordHeader::from_bytes(d.bytes(MAX_HEADER_LEN)?)?;
            let size = d.u64()?;
            let log_index = d.u64()?;
            d.finish()?;
            Ok(Self { header, size, log_index })
        })()
        .map_err(corrupt("record metadata"))
    }
}

/// A stored grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredGrant {
    /// Grant id.
    pub grant_id: GrantId,
    /// Patient who signed it.
    pub patient: PrincipalId,
    /// Doctor it authorizes.
    pub doctor: PrincipalId,
    /// The encoded signed grant.
    pub grant: Vec<u8>,
    /// The encoded signed revocation, once revoked.
    pub revocation: Option<Vec<u8>>,
}

impl StoredGrant {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(b"MSGR", V1, 128 + self.grant.len());
        e.fixed(self.grant_id.as_bytes()).fixed(self.patient.as_bytes()).fixed(self.doctor.as_bytes());
        e.bytes(&self.grant);
        match &self.revocation {
            Some(r) => e.u8(1).bytes(r),
            None => e.u8(0),
        };
        e.finish()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        (|| -> Result<Self, DecodeError> {
            let mut d = Decoder::open(
                b,
                b"MSGR",
                &[V1],
                limits::MAX_GRANT_BYTES + limits::MAX_REVOCATION_BYTES + 256,
            )?;
            let grant_id = GrantId::from_bytes(d.array()?);
            let patient = PrincipalId::from_bytes(d.array()?);
            let doctor = PrincipalId::from_bytes(d.array()?);
            let grant = d.bytes(limits::MAX_GRANT_BYTES)?.to_vec();
            let revocation = match d.u8()? {
                0 => None,
                1 => Some(d.bytes(limits::MAX_REVOCATION_BYTES)?.to_vec()),
                _ => return Err(DecodeError::Invalid("revocation flag")),
            };
            d.finish()?;
            Ok(Self { grant_id, patient, doctor, grant, revocation })
        })()
        .map_err(corrupt("grant"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use medrelay_crypto::SigningKey;
    use rand_chacha::rand_core::SeedableRng;

    fn principal() -> StoredPrincipal {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let sk = SigningKey::generate(&mut rng);
        StoredPrincipal {
            role: Role::Doctor,
            name: "Dr A".into(),
            signing_key: sk.verifying_key(),
            pre_public_keys: vec![9; 40],
            signature: sk.sign(b"x", b"y"),
            registered_at: Timestamp(5),
            log_index: 7,
        }
    }

    /// Every stored type: round trip, every truncation, trailing bytes and a
    /// wrong version are typed `Corrupt` errors.
    #[test]
    fn decoders_reject_truncated_trailing_and_wrong_version() {
        let p = principal();
        let g = StoredGrant {
            grant_id: GrantId::from_bytes([1; 16]),
            patient: PrincipalId::from_bytes([2; 32]),
            doctor: PrincipalId::from_bytes([3; 32]),
            grant: vec![4; 10],
            revocation: Some(vec![5; 3]),
        };
        let category = medrelay_crypto::RecordCategory::new(
            "Observation",
            ["laboratory".to_owned()],
            [medrelay_crypto::SensitivityLabel::Genetics],
        )
        .unwrap();
        let header = RecordHeader::new(
            RecordId::from_bytes([6; 16]),
            PrincipalId::from_bytes([7; 32]),
            category,
            "application/fhir+json",
            Timestamp(8),
        )
        .unwrap();
        let m = RecordMeta { header, size: 9, log_index: 10 };
        assert_eq!(m.header.key_class(), medrelay_crypto::KeyClass::Genetics);
        let c = Challenge { principal: PrincipalId::from_bytes([1; 32]), expires_at: Timestamp(2) };
        let s = Session {
            principal: PrincipalId::from_bytes([1; 32]),
            role: Role::Auditor,
            expires_at: Timestamp(3),
        };
        let en = Enrollment { role: Role::Analyst, name: "n".into(), expires_at: Timestamp(4) };

        assert_eq!(StoredPrincipal::decode(&p.encode()).unwrap(), p);
        assert_eq!(StoredGrant::decode(&g.encode()).unwrap(), g);
        assert_eq!(RecordMeta::decode(&m.encode()).unwrap(), m);
        assert_eq!(Challenge::decode(&c.encode()).unwrap(), c);
        assert_eq!(Session::decode(&s.encode()).unwrap(), s);
        assert_eq!(Enrollment::decode(&en.encode()).unwrap(), en);

        type Dec = fn(&[u8]) -> Result<(), StoreError>;
        let cases: Vec<(Vec<u8>, Dec)> = vec![
            (p.encode(), |b| StoredPrincipal::decode(b).map(drop)),
            (g.encode(), |b| StoredGrant::decode(b).map(drop)),
            (m.encode(), |b| RecordMeta::decode(b).map(drop)),
            (c.encode(), |b| Challenge::decode(b).map(drop)),
            (s.encode(), |b| Session::decode(b).map(drop)),
            (en.encode(), |b| Enrollment::decode(b).map(drop)),
        ];
        for (blob, dec) in cases {
            for n in 0..blob.len() {
                assert!(matches!(dec(&blob[..n]), Err(StoreError::Corrupt(_))), "prefix {n} accepted");
            }
            let mut long = blob.clone();
            long.push(0);
            assert!(matches!(dec(&long), Err(StoreError::Corrupt(_))));
            let mut other = blob.clone();
            other[4] = if other[4] == V1 { V2 } else { 3 };
            assert!(matches!(dec(&other), Err(StoreError::Corrupt(_))));
        }
    }
}
