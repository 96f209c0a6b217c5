//! An aggregator's secrets: its HPKE key (a file in the data directory,
//! made at `init`) and the token the two aggregators share (a file the two
//! operators exchange out of band: the helper accepts only requests that
//! carry it, and each study's Prio3 verification key is derived from it).

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use hkdf::Hkdf;
use medrelay_crypto::domain;
use medrelay_crypto::encoding::{Decoder, Encoder};
use medrelay_crypto::hpke::HpkeSecretKey;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::serve::{io_err, write_private, ServeError};

const HPKE_KEY_FILE: &str = "aggregator-hpke.key";
const HPKE_KEY_MAGIC: &[u8; 4] = b"MRHK";
/// Shortest accepted aggregator token (43 characters: 32 random bytes in
/// unpadded base64url, what `aggregator token` prints).
pub const MIN_TOKEN_LEN: usize = 43;
const MAX_TOKEN_LEN: usize = 256;

fn key_path(data: &Path) -> PathBuf {
    data.join(HPKE_KEY_FILE)
}

/// Creates the aggregator's HPKE key (mode 0600) unless it exists; returns
/// whether it made one.
pub fn create_aggregator_key(data: &Path) -> Result<bool, ServeError> {
    let path = key_path(data);
    if path.exists() {
        return Ok(false);
    }
    let sk = HpkeSecretKey::generate(&mut OsRng);
    let mut e = Encoder::new(HPKE_KEY_MAGIC, 1);
    e.fixed(&sk.to_bytes()[..]);
    let blob = Zeroizing::new(e.finish());
    write_private(&path, &blob, "aggregator HPKE key")?;
    Ok(true)
}

/// Loads the HPKE key made by `init`.
pub fn load_aggregator_key(data: &Path) -> Result<HpkeSecretKey, ServeError> {
    let path = key_path(data);
    if !path.exists() {
        return Err(ServeError::Init(
            "no aggregator HPKE key: run `medrelay-server init` (or `aggregator key`) on this data directory",
        ));
    }
    let blob = Zeroizing::new(fs::read(&path).map_err(io_err("reading the aggregator HPKE key"))?);
    let corrupt = || ServeError::Init("corrupt aggregator HPKE key");
    let mut d = Decoder::open(&blob, HPKE_KEY_MAGIC, &[1], 64).map_err(|_| corrupt())?;
    let seed = Zeroizing::new(d.array::<32>().map_err(|_| corrupt())?);
    d.finish().map_err(|_| corrupt())?;
    HpkeSecretKey::from_bytes(&seed).map_err(|_| corrupt())
}

/// The secret the two aggregators share. `Debug` shows nothing.
#[derive(Clone)]
pub struct AggregatorToken(Zeroizing<String>);

impl std::fmt::Debug for AggregatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AggregatorToken(..)")
    }
}

impl AggregatorToken {
    /// A token from text: 43-256 printable ASCII characters without spaces.
    pub fn new(text: &str) -> Result<Self, ServeError> {
        let t = text.trim();
        if t.len() < MIN_TOKEN_LEN || t.len() > MAX_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ServeError::Argument(format!(
                "the aggregator token must be {MIN_TOKEN_LEN}-{MAX_TOKEN_LEN} printable characters \
                 (make one with `medrelay-server aggregator token`)"
            )));
        }
        Ok(Self(Zeroizing::new(t.to_owned())))
    }

    /// Reads a token file (at most 1 KiB).
    pub fn from_file(path: &Path) -> Result<Self, ServeError> {
        let mut text = Zeroizing::new(String::new());
        fs::File::open(path)
            .and_then(|f| f.take(1024).read_to_string(&mut text))
            .map_err(io_err(format!("reading the aggregator token {}", path.display())))?;
        Self::new(&text)
    }

    /// A fresh random token (32 bytes, base64url).
    pub fn generate() -> Self {
        Self(crate::policy::auth::random_token())
    }

    /// The token text (to send as a bearer token, or print once).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token (constant time over the hashes).
    pub fn matches(&self, presented: &str) -> bool {
        let a: [u8; 32] = Sha256::digest(self.0.as_bytes()).into();
        let b: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        a.ct_eq(&b).into()
    }

    /// The Prio3 verification key of a study: HKDF-SHA256 of the token,
    /// salted with the study's hash. Both aggregators derive the same key;
    /// clients never learn it.
    pub fn verify_key(&self, study_sha256: &[u8; 32]) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(Some(study_sha256), self.0.as_bytes());
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is always a valid HKDF-SHA256 output length.
        if hk.expand(domain::HKDF_STUDY_VERIFY_KEY, out.as_mut()).is_err() {
            tracing::error!("HKDF refused a 32-byte output");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_hpke_key_is_made_once_private_and_checked_on_load() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load_aggregator_key(dir.path()), Err(ServeError::Init(_))));
        assert!(create_aggregator_key(dir.path()).unwrap());
        let pk = load_aggregator_key(dir.path()).unwrap().public_key();
        assert!(!create_aggregator_key(dir.path()).unwrap(), "never overwritten");
        assert_eq!(load_aggregator_key(dir.path()).unwrap().public_key(), pk);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(key_path(dir.path())).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let good = fs::read(key_path(dir.path())).unwrap();
        for bad in [good[..good.len() - 1].to_vec(), [good.clone(), vec![0]].concat()] {
            fs::write(key_path(dir.path()), &bad).unwrap();
            assert!(matches!(load_aggregator_key(dir.path()), Err(ServeError::Init(_))));
        }
    }

    #[test]
    fn tokens_are_checked_compared_in_constant_time_and_never_printed() {
        assert!(AggregatorToken::new("short").is_err());
        assert!(AggregatorToken::new(&"a b".repeat(20)).is_err());
        let t = AggregatorToken::generate();
        assert!(t.expose().len() >= MIN_TOKEN_LEN);
        assert!(t.matches(t.expose()));
        assert!(!t.matches("something else"));
        assert_eq!(format!("{t:?}"), "AggregatorToken(..)");
        let again = AggregatorToken::new(&format!("  {}\n", t.expose())).unwrap();
        assert_eq!(*again.verify_key(&[1; 32]), *t.verify_key(&[1; 32]));
        assert_ne!(*t.verify_key(&[1; 32]), *t.verify_key(&[2; 32]));
    }
}
