//! Principals: everyone who holds a signing key. A principal's id is derived
//! from its Ed25519 signing key, so it cannot be chosen or reused.

use std::fmt;
use std::str::FromStr;

use medrelay_crypto::encoding::{Decoder, Encoder};
use medrelay_crypto::{Fingerprint, PrincipalId, VerifyingKey};

use crate::domain::PRINCIPAL_MAGIC;
use crate::error::PolicyError;

/// Largest encoded PRE public key accepted (the lattice part is large).
pub const MAX_PRE_KEY_LEN: usize = 1 << 20;
/// Longest display name, in bytes.
pub const MAX_DISPLAY_NAME_LEN: usize = 128;
const PRINCIPAL_VERSION: u8 = 1;

/// What a principal may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Owns records; grants and revokes access.
    Patient,
    /// Reads records patients granted.
    Doctor,
    /// Asks differentially private queries.
    Analyst,
    /// Verifies the log.
    Auditor,
    /// Runs the server, enrols doctors.
    Operator,
}

impl Role {
    /// Every role, in code order.
    pub const ALL: [Role; 5] = [Role::Patient, Role::Doctor, Role::Analyst, Role::Auditor, Role::Operator];

    /// The one-byte code used in encodings.
    pub const fn code(self) -> u8 {
        match self {
            Role::Patient => 0,
            Role::Doctor => 1,
            Role::Analyst => 2,
            Role::Auditor => 3,
            Role::Operator => 4,
        }
    }

    /// The role with the given code.
    pub fn from_code(code: u8) -> Result<Self, PolicyError> {
        Self::ALL.get(usize::from(code)).copied().ok_or(PolicyError::Malformed("role code"))
    }

    /// The textual name (`patient`, `doctor`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Doctor => "doctor",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
            Role::Operator => "operator",
        }
    }

    /// Whether principals of this role hold a PRE key pair (patients encrypt
    /// under it, doctors receive re-encrypted capsules under it).
    pub const fn needs_pre_key(self) -> bool {
        matches!(self, Role::Patient | Role::Doctor)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or(PolicyError::Malformed("role name"))
    }
}

/// An encoded PRE public key, opaque to this crate (medrelay-crypto defines
/// its format); identified by its fingerprint.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PrePublicKey(Vec<u8>);

impl PrePublicKey {
    /// Wraps encoded PRE public key bytes (at most [`MAX_PRE_KEY_LEN`]).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, PolicyError> {
        if bytes.is_empty() || bytes.len() > MAX_PRE_KEY_LEN {
            return Err(PolicyError::Malformed("PRE public key length"));
        }
        Ok(Self(bytes))
    }

    /// The encoded key.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// `Fingerprint::of(b"pre", bytes)`.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(b"pre", &self.0)
    }
}

impl fmt::Debug for PrePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrePublicKey({})", self.fingerprint())
    }
}

/// A registered principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    id: PrincipalId,
    role: Role,
    signing_key: VerifyingKey,
    pre_key: Option<PrePublicKey>,
    display_name: String,
}

impl Principal {
    /// Builds a principal; the id is derived from `signing_key`. Patients and
    /// doctors must have a PRE key, other roles must not. The display name is
    /// 1 to [`MAX_DISPLAY_NAME_LEN`] bytes without control characters.
    pub fn new(
        role: Role,
        signing_key: VerifyingKey,
        pre_key: Option<PrePublicKey>,
        display_name: &str,
    ) -> Result<Self, PolicyError> {
        if role.needs_pre_key() != pre_key.is_some() {
            return Err(PolicyError::Malformed(if role.needs_pre_key() {
                "principal: patients and doctors need a PRE public key"
            } else {
                "principal: only patients and doctors have a PRE public key"
            }));
        }
        let name_ok = !display_name.trim().is_empty()
            && display_name.len() <= MAX_DISPLAY_NAME_LEN
            && !display_name.chars().any(char::is_control);
        if !name_ok {
            return Err(PolicyError::Malformed("principal: display name"));
        }
        Ok(Self {
            id: signing_key.principal_id(),
            role,
            signing_key,
            pre_key,
            display_name: display_name.to_owned(),
        })
    }

    /// The id, `SHA-256(domain || signing key)`.
    pub fn id(&self) -> PrincipalId {
        self.id
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The Ed25519 signing (verifying) key.
    pub fn signing_key(&self) -> &VerifyingKey {
        &self.signing_key
    }

    /// The PRE public key (patients and doctors).
    pub fn pre_key(&self) -> Option<&PrePublicKey> {
        self.pre_key.as_ref()
    }

    /// The display name.
    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// Canonical encoding: role, signing key, optional PRE key, display name.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::new(PRINCIPAL_MAGIC, PRINCIPAL_VERSION);
        e.u8(self.role.code()).fixed(&self.signing_key.to_bytes());
        match &self.pre_key {
            Some(k) => e.u8(1).bytes(k.as_bytes()),
            None => e.u8(0),
        };
        e.str(&self.display_name);
        e.finish()
    }

    /// Decodes and validates a principal.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PolicyError> {
        let mut d = Decoder::open(bytes, PRINCIPAL_MAGIC, &[PRINCIPAL_VERSION], MAX_PRE_KEY_LEN + 512)?;
        let role = Role::from_code(d.u8()?)?;
        let signing_key = VerifyingKey::from_bytes(d.take(32)?)?;
        let pre_key = match d.u8()? {
            0 => None,
            1 => Some(PrePublicKey::from_bytes(d.bytes(MAX_PRE_KEY_LEN)?.to_vec())?),
            _ => return Err(PolicyError::Malformed("principal: PRE key flag")),
        };
        let name = d.str(MAX_DISPLAY_NAME_LEN)?.to_owned();
        d.finish()?;
        Self::new(role, signing_key, pre_key, &name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use medrelay_crypto::{DecodeError, SigningKey};

    fn doctor() -> Principal {
        let vk = SigningKey::from_seed(&[3; 32]).verifying_key();
        Principal::new(Role::Doctor, vk, Some(PrePublicKey::from_bytes(vec![5; 100]).unwrap()), "Dr. Ada")
            .unwrap()
    }

    #[test]
    fn round_trip_and_derived_id() {
        let p = doctor();
        assert_eq!(p.id(), SigningKey::from_seed(&[3; 32]).principal_id());
        assert_eq!(Principal::from_bytes(&p.to_bytes()).unwrap(), p);
        let a = Principal::new(Role::Auditor, *p.signing_key(), None, "audit").unwrap();
        assert_eq!(Principal::from_bytes(&a.to_bytes()).unwrap(), a);
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(Role::from_code(r.code()).unwrap(), r);
        }
    }

    #[test]
    fn invalid_principals_are_rejected() {
        let p = doctor();
        assert!(Principal::new(Role::Patient, *p.signing_key(), None, "x").is_err());
        assert!(Principal::new(Role::Analyst, *p.signing_key(), p.pre_key().cloned(), "x").is_err());
        assert!(Principal::new(Role::Auditor, *p.signing_key(), None, " ").is_err());
        assert!(Principal::new(Role::Auditor, *p.signing_key(), None, "a\nb").is_err());
        assert!(Principal::new(Role::Auditor, *p.signing_key(), None, &"x".repeat(129)).is_err());
        assert!(PrePublicKey::from_bytes(vec![]).is_err());
        assert!(Role::from_code(5).is_err());
    }

    #[test]
    fn decoder_rejects_bad_bytes() {
        let bytes = doctor().to_bytes();
        for n in 0..bytes.len() {
            assert!(Principal::from_bytes(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Principal::from_bytes(&long), Err(PolicyError::Decode(DecodeError::TrailingBytes)));
        let mut v2 = bytes.clone();
        v2[4] = 2;
        assert_eq!(
            Principal::from_bytes(&v2),
            Err(PolicyError::Decode(DecodeError::UnsupportedVersion { found: 2 }))
        );
        let mut role = bytes.clone();
        role[5] = 9;
        assert_eq!(Principal::from_bytes(&role), Err(PolicyError::Malformed("role code")));
        let huge = vec![0u8; MAX_PRE_KEY_LEN + 513];
        assert!(matches!(
            Principal::from_bytes(&huge),
            Err(PolicyError::Decode(DecodeError::TooLarge { .. }))
        ));
    }
}
