//! Leaves that commit to events: the log proves without publishing.
//!
//! A leaf of the audit log is not the event itself but a hiding commitment
//! to it:
//!
//! ```text
//! leaf data  = SHA-256(LEAF_COMMITMENT_DOMAIN || salt || event bytes)   (32 bytes)
//! leaf hash  = SHA-256(0x00 || leaf data)                                (RFC 6962, unchanged)
//! ```
//!
//! `salt` is 32 bytes the server draws at random for each event and keeps
//! with it; `event bytes` is the canonical [`LogEvent`] encoding. The tree,
//! its checkpoints and its proofs are plain RFC 6962 / RFC 9162 over these
//! leaf hashes, so anyone may fetch checkpoints, proofs and leaf hashes: with
//! a fresh 256-bit salt per event, a leaf reveals nothing about its event,
//! not even whether two leaves hold the same event. Whoever is entitled to an
//! event (see [`LogEvent::audience`]) receives its [`LeafOpening`] (salt and
//! event bytes), recomputes the leaf hash and checks an inclusion proof
//! against a signed checkpoint; the commitment binds, so a server cannot
//! open a leaf to another event than the one it committed to.
//!
//! The opening's stored and wire form is versioned (`MRLO`, version 1), and
//! so is the event inside it, so event kinds can be added (e.g. batched
//! access events) without touching the commitment.

use std::fmt;

use medrelay_crypto::encoding::{Decoder, Encoder};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::domain::{LEAF_COMMITMENT_DOMAIN, LEAF_OPENING_MAGIC};
use crate::error::PolicyError;
use crate::event::{LogEvent, MAX_EVENT_LEN};
use crate::merkle::{hash_leaf, MerkleHash};

const VERSION: u8 = 1;
/// Length of an event salt, in bytes.
pub const SALT_LEN: usize = 32;
/// Largest encoded [`LeafOpening`].
pub const MAX_OPENING_LEN: usize = MAX_EVENT_LEN + SALT_LEN + 16;

/// The random salt a leaf commits with. Not secret on its own, but it is
/// what keeps the leaf hiding: anyone holding it can test guesses of the
/// event against the public leaf, so it goes only to those entitled to the
/// event. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct EventSalt([u8; SALT_LEN]);

impl EventSalt {
    /// A fresh salt from `rng`.
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut b = [0u8; SALT_LEN];
        rng.fill_bytes(&mut b);
        Self(b)
    }

    /// Wraps salt bytes (as received with an entry).
    pub const fn from_bytes(bytes: [u8; SALT_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses a salt of exactly [`SALT_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, PolicyError> {
        Ok(Self(bytes.try_into().map_err(|_| PolicyError::Malformed("event salt length"))?))
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; SALT_LEN] {
        &self.0
    }
}

impl fmt::Debug for EventSalt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventSalt(..)")
    }
}

/// The leaf data of an event: `SHA-256(LEAF_COMMITMENT_DOMAIN || salt ||
/// event bytes)`.
pub fn leaf_commitment(salt: &EventSalt, event_bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(LEAF_COMMITMENT_DOMAIN);
    h.update(salt.as_bytes());
    h.update(event_bytes);
    h.finalize().into()
}

/// An event with the salt its leaf commits with: what the server stores for
/// each log entry, and what it gives to those entitled to the event.
#[derive(Clone, PartialEq, Eq)]
pub struct LeafOpening {
    salt: EventSalt,
    event: Vec<u8>,
}

impl fmt::Debug for LeafOpening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeafOpening").field("event_len", &self.event.len()).finish_non_exhaustive()
    }
}

impl LeafOpening {
    /// Validates and encodes `event` and draws its salt from `rng` (the
    /// server's append path).
    pub fn seal<R: RngCore + CryptoRng>(event: &LogEvent, rng: &mut R) -> Result<Self, PolicyError> {
        Ok(Self { salt: EventSalt::random(rng), event: event.to_bytes()? })
    }

    /// An opening as received: a salt and event bytes (at most
    /// [`MAX_EVENT_LEN`]; the event itself is decoded by [`LeafOpening::event`]).
    pub fn from_parts(salt: EventSalt, event: Vec<u8>) -> Result<Self, PolicyError> {
        if event.len() > MAX_EVENT_LEN {
            return Err(PolicyError::Malformed("log event: too long"));
        }
        Ok(Self { salt, event })
    }

    /// The salt.
    pub fn salt(&self) -> &EventSalt {
        &self.salt
    }

    /// The canonical event bytes.
    pub fn event_bytes(&self) -> &[u8] {
        &self.event
    }

    /// Decodes and validates the event.
    pub fn event(&self) -> Result<LogEvent, PolicyError> {
        LogEvent::from_bytes(&self.event)
    }

    /// The leaf data: the commitment ([`leaf_commitment`]).
    pub fn leaf_data(&self) -> [u8; 32] {
        leaf_commitment(&self.salt, &self.event)
    }

    /// The RFC 6962 leaf hash of [`LeafOpening::leaf_data`]: what the public
    /// tree holds and inclusion proofs start from.
    pub fn leaf_hash(&self) -> MerkleHash {
        hash_leaf(&self.leaf_data())
    }

    /// The versioned encoding: `MRLO`, version, salt, length-prefixed event.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(LEAF_OPENING_MAGIC, VERSION, SALT_LEN + 4 + self.event.len());
        e.fixed(self.salt.as_bytes()).bytes(&self.event);
        e.finish()
    }

    /// Decodes [`LeafOpening::to_bytes`] (size-limited; the event is not
    /// decoded here).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PolicyError> {
        let mut d = Decoder::open(bytes, LEAF_OPENING_MAGIC, &[VERSION], MAX_OPENING_LEN)?;
        let salt = EventSalt(d.array()?);
        let event = d.bytes(MAX_EVENT_LEN)?.to_vec();
        d.finish()?;
        Ok(Self { salt, event })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use medrelay_crypto::Timestamp;
    use rand_chacha::rand_core::SeedableRng;

    fn event() -> LogEvent {
        LogEvent::SchemaAdded { at: Timestamp(5), schema: "health-basics".into(), schema_sha256: [7; 32] }
    }

    #[test]
    fn the_leaf_is_a_salted_commitment_and_hashes_as_rfc6962() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let a = LeafOpening::seal(&event(), &mut rng).unwrap();
        let b = LeafOpening::seal(&event(), &mut rng).unwrap();
        // Same event, fresh salts: unrelated leaves.
        assert_eq!(a.event_bytes(), b.event_bytes());
        assert_ne!(a.leaf_data(), b.leaf_data());
        // The documented construction, recomputed independently.
        let mut h = Sha256::new();
        h.update(b"medrelay/log-leaf-commitment/v1\0");
        h.update(a.salt().as_bytes());
        h.update(a.event_bytes());
        let data: [u8; 32] = h.finalize().into();
        assert_eq!(a.leaf_data(), data);
        assert_eq!(a.leaf_hash(), hash_leaf(&data));
        // The leaf data does not contain the event.
        assert!(!a.leaf_data().windows(8).any(|w| a.event_bytes().windows(8).any(|x| x == w)));
        assert_eq!(a.event().unwrap(), event());
    }

    #[test]
    fn openings_round_trip_and_reject_bad_bytes() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let a = LeafOpening::seal(&event(), &mut rng).unwrap();
        let bytes = a.to_bytes();
        assert_eq!(LeafOpening::from_bytes(&bytes).unwrap(), a);
        for n in 0..bytes.len() {
            assert!(LeafOpening::from_bytes(&bytes[..n]).is_err(), "truncated at {n}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(LeafOpening::from_bytes(&trailing).is_err());
        let mut version = bytes.clone();
        version[4] = 2;
        assert!(LeafOpening::from_bytes(&version).is_err());
        // Another salt or one changed event byte opens another leaf.
        let other =
            LeafOpening::from_parts(EventSalt::from_bytes([0; 32]), a.event_bytes().to_vec()).unwrap();
        assert_ne!(other.leaf_hash(), a.leaf_hash());
        let mut ev = a.event_bytes().to_vec();
        *ev.last_mut().unwrap() ^= 1;
        let changed = LeafOpening::from_parts(a.salt().clone(), ev).unwrap();
        assert_ne!(changed.leaf_hash(), a.leaf_hash());
        assert!(LeafOpening::from_parts(a.salt().clone(), vec![0; MAX_EVENT_LEN + 1]).is_err());
        assert!(EventSalt::from_slice(&[0; 31]).is_err());
        assert_eq!(format!("{:?}", a.salt()), "EventSalt(..)");
    }
}
