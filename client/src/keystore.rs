//! The profile directory: where a principal's keys and client state live.
//!
//! ```text
//! <profile>/            0700   default $HOME/.medrelay/<role>
//!   profile.json        0600   server URL, principal id, role, name, pinned log key (plaintext, no secret)
//!   keys.mrkf           0600   the secret keys: medrelay-crypto KeyFile (Argon2id + AES-256-GCM)
//!   checkpoint.txt      0600   the last log checkpoint this client verified (signed note)
//!   records.json        0600   patient only: local index of imported records (ids, categories, sources)
//! ```
//!
//! The passphrase comes from `MEDRELAY_PASSPHRASE` or a terminal prompt
//! (`rpassword`, never echoed). It is held in a zeroizing buffer and never
//! printed. A wrong passphrase is [`ClientError::WrongPassphrase`]. A key file
//! readable by group or others is refused (as ssh does), so a copy left
//! world-readable is noticed.
//!
//! Files are written to a temporary name with mode 0600 and renamed into
//! place, so a crash never leaves a half-written profile.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use medrelay_crypto::{Argon2Params, CryptoError, KeyFile, PrincipalId};
use medrelay_wire::Role;
use rand::rngs::OsRng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::ClientError;

/// The plaintext profile file.
pub const PROFILE_FILE: &str = "profile.json";
/// The sealed key file.
pub const KEY_FILE: &str = "keys.mrkf";
/// The last verified log checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint.txt";
/// The environment variable holding the passphrase (for scripts and tests).
pub const PASSPHRASE_ENV: &str = "MEDRELAY_PASSPHRASE";
/// Shortest passphrase accepted when a profile is created.
pub const MIN_PASSPHRASE_LEN: usize = 8;
/// Longest passphrase accepted.
pub const MAX_PASSPHRASE_LEN: usize = 1024;
/// Largest state file read from a profile.
const MAX_STATE_FILE: u64 = 16 * 1024 * 1024;
/// Profile format version.
pub const PROFILE_VERSION: u32 = 1;

/// A passphrase, zeroized on drop, never printed.
pub struct Passphrase(Zeroizing<String>);

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

impl Passphrase {
    /// Wraps a passphrase: non-empty, at most [`MAX_PASSPHRASE_LEN`] bytes.
    pub fn new(text: impl Into<String>) -> Result<Self, ClientError> {
        let text = Zeroizing::new(text.into());
        if text.is_empty() {
            return Err(ClientError::Passphrase("empty passphrase".into()));
        }
        if text.len() > MAX_PASSPHRASE_LEN {
            return Err(ClientError::Passphrase(format!("longer than {MAX_PASSPHRASE_LEN} bytes")));
        }
        Ok(Self(text))
    }

    /// From `MEDRELAY_PASSPHRASE` if set, else a prompt on the terminal
    /// (asked twice when `confirm`, for a new profile).
    pub fn from_env_or_prompt(confirm: bool) -> Result<Self, ClientError> {
        if let Some(v) = std::env::var_os(PASSPHRASE_ENV) {
            let v = v
                .into_string()
                .map_err(|_| ClientError::Passphrase(format!("{PASSPHRASE_ENV} is not valid UTF-8")))?;
            return Self::new(v);
        }
        let prompt = |p: &str| {
            rpassword::prompt_password(p).map(Zeroizing::new).map_err(|e| {
                ClientError::Passphrase(format!("cannot prompt ({e}); set {PASSPHRASE_ENV} instead"))
            })
        };
        let first = prompt("Passphrase: ")?;
        if confirm {
            let second = prompt("Passphrase again: ")?;
            if *first != *second {
                return Err(ClientError::Passphrase("the two passphrases differ".into()));
            }
        }
        Self::new(first.as_str())
    }

    /// Checks the length rule for a new profile.
    pub fn check_new(&self) -> Result<(), ClientError> {
        if self.0.chars().count() < MIN_PASSPHRASE_LEN {
            return Err(ClientError::Passphrase(format!(
                "a new profile needs a passphrase of at least {MIN_PASSPHRASE_LEN} characters"
            )));
        }
        Ok(())
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The contents of `profile.json`. No secret lives here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileInfo {
    /// Format version ([`PROFILE_VERSION`]).
    pub version: u32,
    /// Server base URL given at init (overridable per command).
    pub server: String,
    /// The principal id registered.
    pub principal: PrincipalId,
    /// Its role.
    pub role: Role,
    /// The display name registered.
    pub name: String,
    /// The log's note verifier key (`name+keyid+base64`), pinned at init:
    /// every later checkpoint must be signed by it.
    pub log_key: String,
}

/// `$HOME/.medrelay/<role>`.
pub fn default_profile_dir(role: Role) -> Result<PathBuf, ClientError> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ClientError::Invalid("HOME is not set: pass --profile DIR".into()))?;
    Ok(PathBuf::from(home).join(".medrelay").join(role.as_str()))
}

/// An opened profile directory.
#[derive(Debug)]
pub struct Profile {
    dir: PathBuf,
    info: ProfileInfo,
}

/// Writes `bytes` to `path` atomically with mode 0600 (key files, state,
/// and decrypted records written by the CLIs).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    let tmp = path.with_extension("tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(ClientError::io(&tmp))?;
    #[cfg(unix)]
    {
        // An existing temp file keeps its old mode: force 0600.
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(ClientError::io(&tmp))?;
    }
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(ClientError::io(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(ClientError::io(path))
}

/// Reads a file of at most `limit` bytes.
pub(crate) fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, ClientError> {
    let meta = fs::metadata(path).map_err(ClientError::io(path))?;
    if meta.len() > limit {
        return Err(ClientError::profile(path, format!("larger than {limit} bytes")));
    }
    fs::read(path).map_err(ClientError::io(path))
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), ClientError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = fs::metadata(path).map_err(ClientError::io(path))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(ClientError::profile(
            path,
            format!("permissions {:o} are too open; run `chmod 600 {}`", mode & 0o777, path.display()),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), ClientError> {
    Ok(())
}

impl Profile {
    /// Creates the directory (mode 0700) for a new profile; refuses one that
    /// already holds a profile or a key file.
    pub(crate) fn prepare(dir: &Path) -> Result<(), ClientError> {
        if dir.join(PROFILE_FILE).exists() || dir.join(KEY_FILE).exists() {
            return Err(ClientError::profile(
                dir,
                "already initialized (remove it or pick another --profile)",
            ));
        }
        if dir.exists() {
            let mut entries = fs::read_dir(dir).map_err(ClientError::io(dir))?;
            if entries.next().is_some() {
                // Never take over (and chmod) a directory that holds other files.
                return Err(ClientError::profile(
                    dir,
                    "exists and is not empty; pick a new directory for the profile",
                ));
            }
        }
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            b.mode(0o700);
        }
        b.create(dir).map_err(ClientError::io(dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(ClientError::io(dir))?;
        }
        Ok(())
    }

    /// Seals `keys` under `passphrase` (Argon2id with the crypto crate's
    /// default cost) into the key file.
    pub(crate) fn write_keys(dir: &Path, keys: &KeyFile, passphrase: &Passphrase) -> Result<(), ClientError> {
        let sealed = keys
            .seal(&mut OsRng, passphrase.as_bytes(), Argon2Params::default())
            .map_err(|e| ClientError::profile(dir, format!("sealing the key file: {e}")))?;
        write_private(&dir.join(KEY_FILE), &sealed)
    }

    /// Removes what [`Profile::prepare`] and [`Profile::write_keys`] made
    /// when registration failed, so a retry can start over.
    pub(crate) fn abandon(dir: &Path) {
        let _ = fs::remove_file(dir.join(KEY_FILE));
        let _ = fs::remove_file(dir.join(PROFILE_FILE));
        let _ = fs::remove_dir(dir);
    }

    /// Writes `profile.json`, completing a new profile.
    pub(crate) fn create(dir: &Path, info: ProfileInfo) -> Result<Self, ClientError> {
        let bytes = serde_json::to_vec_pretty(&info)
            .map_err(|e| ClientError::profile(dir, format!("encoding profile: {e}")))?;
        write_private(&dir.join(PROFILE_FILE), &bytes)?;
        Ok(Self { dir: dir.to_owned(), info })
    }

    /// Opens an existing profile (no passphrase needed yet).
    pub fn open(dir: &Path) -> Result<Self, ClientError> {
        let path = dir.join(PROFILE_FILE);
        if !path.exists() {
            return Err(ClientError::profile(
                dir,
                "no profile here; run `init` first (or pass --profile DIR)",
            ));
        }
        let bytes = read_limited(&path, 64 * 1024)?;
        let info: ProfileInfo = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::profile(&path, format!("corrupt profile.json: {e}")))?;
        if info.version != PROFILE_VERSION {
            return Err(ClientError::profile(&path, format!("unsupported profile version {}", info.version)));
        }
        Ok(Self { dir: dir.to_owned(), info })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The plaintext profile.
    pub fn info(&self) -> &ProfileInfo {
        &self.info
    }

    /// Opens the key file with `passphrase`, after checking its mode.
    pub fn open_keys(&self, passphrase: &Passphrase) -> Result<KeyFile, ClientError> {
        let path = self.dir.join(KEY_FILE);
        check_private(&path)?;
        let bytes = Zeroizing::new(read_limited(&path, medrelay_crypto::MAX_KEY_FILE_LEN as u64)?);
        let keys = KeyFile::open(&bytes, passphrase.as_bytes()).map_err(|e| match e {
            CryptoError::KeyFile => ClientError::WrongPassphrase,
            other => ClientError::profile(&path, format!("corrupt key file: {other}")),
        })?;
        if keys.signing_key().principal_id() != self.info.principal {
            return Err(ClientError::profile(
                &path,
                "the key file does not belong to this profile's principal",
            ));
        }
        Ok(keys)
    }

    /// The last verified checkpoint note, if any.
    pub fn load_checkpoint(&self) -> Result<Option<String>, ClientError> {
        let path = self.dir.join(CHECKPOINT_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = read_limited(&path, medrelay_policy::MAX_NOTE_LEN as u64)?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| ClientError::profile(&path, "checkpoint file is not UTF-8"))
    }

    /// Stores a verified checkpoint note.
    pub fn save_checkpoint(&self, note: &str) -> Result<(), ClientError> {
        write_private(&self.dir.join(CHECKPOINT_FILE), note.as_bytes())
    }

    /// Reads a JSON state file of the profile, or `None` if absent.
    pub(crate) fn read_state<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ClientError> {
        let path = self.dir.join(name);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = read_limited(&path, MAX_STATE_FILE)?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClientError::profile(&path, format!("corrupt state file: {e}")))
    }

    /// Writes a JSON state file of the profile.
    pub(crate) fn write_state<T: Serialize>(&self, name: &str, value: &T) -> Result<(), ClientError> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| ClientError::profile(&self.dir, format!("encoding {name}: {e}")))?;
        write_private(&self.dir.join(name), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(principal: PrincipalId) -> ProfileInfo {
        ProfileInfo {
            version: PROFILE_VERSION,
            server: "http://127.0.0.1:1".into(),
            principal,
            role: Role::Doctor,
            name: "Dr Test".into(),
            log_key: "k+00000000+AA==".into(),
        }
    }

    fn make(dir: &Path, pass: &str) -> (Profile, KeyFile) {
        let keys = KeyFile::new_doctor(&mut OsRng);
        Profile::prepare(dir).unwrap();
        Profile::write_keys(dir, &keys, &Passphrase::new(pass).unwrap()).unwrap();
        let p = Profile::create(dir, info(keys.signing_key().principal_id())).unwrap();
        (p, keys)
    }

    #[test]
    fn keys_round_trip_and_a_wrong_passphrase_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("doctor");
        let (_, keys) = make(&dir, "correct horse");
        let p = Profile::open(&dir).unwrap();
        let back = p.open_keys(&Passphrase::new("correct horse").unwrap()).unwrap();
        assert_eq!(back.signing_key().principal_id(), keys.signing_key().principal_id());
        let before = fs::read(dir.join(KEY_FILE)).unwrap();
        let e = p.open_keys(&Passphrase::new("wrong horse").unwrap()).unwrap_err();
        assert!(matches!(e, ClientError::WrongPassphrase), "{e:?}");
        assert_eq!(e.to_string(), "wrong passphrase (or the key file was altered)");
        // Nothing changed on disk.
        assert_eq!(fs::read(dir.join(KEY_FILE)).unwrap(), before);
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private_and_an_open_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        make(&dir, "correct horse");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.join(PROFILE_FILE)), 0o600);
        fs::set_permissions(dir.join(KEY_FILE), fs::Permissions::from_mode(0o644)).unwrap();
        let e =
            Profile::open(&dir).unwrap().open_keys(&Passphrase::new("correct horse").unwrap()).unwrap_err();
        assert!(e.to_string().contains("too open"), "{e}");
    }

    #[test]
    fn a_profile_is_not_initialized_twice_and_corruption_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        make(&dir, "correct horse");
        let before = fs::read(dir.join(KEY_FILE)).unwrap();
        assert!(matches!(Profile::prepare(&dir), Err(ClientError::Profile { .. })));
        assert_eq!(fs::read(dir.join(KEY_FILE)).unwrap(), before);
        // A directory with other files is not taken over.
        let other = tmp.path().join("other");
        fs::create_dir(&other).unwrap();
        fs::write(other.join("notes.txt"), b"x").unwrap();
        assert!(Profile::prepare(&other).unwrap_err().to_string().contains("not empty"));
        assert!(other.join("notes.txt").exists());

        // A truncated key file is "corrupt", not "wrong passphrase".
        fs::write(dir.join(KEY_FILE), &before[..before.len() - 5]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(dir.join(KEY_FILE), fs::Permissions::from_mode(0o600)).unwrap();
        }
        let e =
            Profile::open(&dir).unwrap().open_keys(&Passphrase::new("correct horse").unwrap()).unwrap_err();
        assert!(e.to_string().contains("corrupt key file"), "{e}");

        fs::write(dir.join(PROFILE_FILE), b"{\"version\":1}").unwrap();
        assert!(Profile::open(&dir).unwrap_err().to_string().contains("corrupt profile.json"));
        assert!(Profile::open(&tmp.path().join("none"))
            .unwrap_err()
            .to_string()
            .contains("run `init` first"));
    }

    #[test]
    fn a_key_file_from_another_profile_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        make(&a, "correct horse");
        make(&b, "correct horse");
        fs::copy(a.join(KEY_FILE), b.join(KEY_FILE)).unwrap();
        let e = Profile::open(&b).unwrap().open_keys(&Passphrase::new("correct horse").unwrap()).unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
    }

    #[test]
    fn passphrases_are_checked_and_never_printed() {
        assert!(Passphrase::new("").is_err());
        assert!(Passphrase::new("x".repeat(MAX_PASSPHRASE_LEN + 1)).is_err());
        let p = Passphrase::new("short").unwrap();
        assert!(p.check_new().is_err());
        assert_eq!(format!("{p:?}"), "Passphrase(..)");
        assert!(Passphrase::new("long enough").unwrap().check_new().is_ok());
    }

    #[test]
    fn checkpoints_and_state_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        let (p, _) = make(&dir, "correct horse");
        assert_eq!(p.load_checkpoint().unwrap(), None);
        p.save_checkpoint("note\n").unwrap();
        assert_eq!(p.load_checkpoint().unwrap().as_deref(), Some("note\n"));
        p.write_state("x.json", &vec![1u32, 2]).unwrap();
        assert_eq!(p.read_state::<Vec<u32>>("x.json").unwrap(), Some(vec![1, 2]));
        fs::write(dir.join("x.json"), b"[").unwrap();
        assert!(p.read_state::<Vec<u32>>("x.json").is_err());
    }
}
