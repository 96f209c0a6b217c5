//! Scanning a data directory for byte strings that must never be stored:
//! record plaintext and secret keys, raw and in every encoding the server
//! could plausibly have written them in (hex, standard and URL-safe base64 at
//! any alignment).
//!
//! The demo ends with this scan, and the server's tests use it, so the claim
//! "the server never writes plaintext" is checked against the bytes on disk,
//! not against what the code intends.

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;

/// One forbidden byte string found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The file that holds it.
    pub path: PathBuf,
    /// The label of the needle (never the needle itself: it may be a secret).
    pub label: String,
}

/// What a scan looked at and what it found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Files read.
    pub files: usize,
    /// Bytes read.
    pub bytes: u64,
    /// Forbidden strings found.
    pub hits: Vec<Hit>,
}

/// A set of labelled needles, each expanded into its encodings.
#[derive(Default)]
pub struct Needles {
    forms: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Needles {
    // The needles may be secret keys: show only how many there are.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Needles").field("forms", &self.forms.len()).finish()
    }
}

impl Needles {
    /// No needles.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `needle` raw and base64-encoded at every alignment.
    pub fn text(&mut self, label: &str, needle: &[u8]) -> &mut Self {
        if needle.is_empty() {
            return self;
        }
        self.forms.push((label.to_owned(), needle.to_vec()));
        for form in base64_forms(needle) {
            // A 3-character form (a 7-byte needle at some alignments) turns
            // up in random ciphertext with probability 2^-24 per position,
            // about once per 16 MiB (and per form): a test's data directory
            // holds several MiB of keys and envelopes. From 4 characters on
            // it is 2^-32 per position.
            if form.len() >= MIN_BASE64_FORM {
                self.forms.push((format!("{label} (base64)"), form));
            }
        }
        self
    }

    /// Adds a secret: raw, lowercase hex and base64 at every alignment.
    pub fn secret(&mut self, label: &str, secret: &[u8]) -> &mut Self {
        self.text(label, secret);
        if !secret.is_empty() {
            self.forms.push((format!("{label} (hex)"), hex::encode(secret).into_bytes()));
        }
        self
    }

    /// Adds `needle` in its raw form only (for binary values such as the
    /// bytes of a number, whose short base64 fragments would match by chance).
    pub fn raw(&mut self, label: &str, needle: &[u8]) -> &mut Self {
        if !needle.is_empty() {
            self.forms.push((label.to_owned(), needle.to_vec()));
        }
        self
    }

    /// Whether `hay` contains any needle; returns the first label found.
    pub fn find_in(&self, hay: &[u8]) -> Option<&str> {
        self.forms.iter().find(|(_, n)| contains(hay, n)).map(|(l, _)| l.as_str())
    }

    /// Reads every file under `dir` (recursively) and reports each file that
    /// holds a needle.
    pub fn scan_dir(&self, dir: &Path) -> io::Result<ScanReport> {
        let mut report = ScanReport::default();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d)? {
                let path = entry?.path();
                let meta = std::fs::symlink_metadata(&path)?;
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                if !meta.is_file() {
                    continue;
                }
                let data = std::fs::read(&path)?;
                report.files += 1;
                report.bytes += data.len() as u64;
                for i in self.found_in(&data) {
                    report.hits.push(Hit { path: path.clone(), label: self.forms[i].0.clone() });
                }
            }
        }
        Ok(report)
    }
}

/// Shortest base64 form of a needle that is searched for.
const MIN_BASE64_FORM: usize = 4;
impl Needles {
    /// The indices of the forms found in `hay`. Few forms: one search each.
    /// Many forms: one pass over `hay`, looking each position up by its
    /// first bytes (a bitmap of first byte pairs, then an index of prefixes),
    /// so the cost does not grow with the number of needles.
    fn found_in(&self, hay: &[u8]) -> Vec<usize> {
        let k = self.forms.iter().map(|(_, n)| n.len()).min().unwrap_or(0).min(8);
        if self.forms.len() <= 16 || k < 2 {
            return (0..self.forms.len()).filter(|i| contains(hay, &self.forms[*i].1)).collect();
        }
        let key = |b: &[u8]| {
            let mut a = [0u8; 8];
            a[..k].copy_from_slice(&b[..k]);
            u64::from_le_bytes(a)
        };
        let mut pairs = vec![false; 1 << 16];
        let mut index: std::collections::HashMap<u64, Vec<usize>> = std::collections::HashMap::new();
        for (i, (_, n)) in self.forms.iter().enumerate() {
            pairs[usize::from(u16::from_le_bytes([n[0], n[1]]))] = true;
            index.entry(key(n)).or_default().push(i);
        }
        let mut found = vec![false; self.forms.len()];
        for pos in 0..(hay.len() + 1).saturating_sub(k) {
            if !pairs[usize::from(u16::from_le_bytes([hay[pos], hay[pos + 1]]))] {
                continue;
            }
            if let Some(candidates) = index.get(&key(&hay[pos..])) {
                for &i in candidates {
                    if !found[i] && hay[pos..].starts_with(&self.forms[i].1) {
                        found[i] = true;
                    }
                }
            }
        }
        (0..found.len()).filter(|i| found[*i]).collect()
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(hay, needle).is_some()
}

/// Base64 forms of `s` as it would appear at any alignment inside a longer
/// base64 string: for each of the three alignments, the middle part that
/// does not depend on the neighbouring bytes, in standard and URL-safe
/// alphabets.
fn base64_forms(s: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for pad in 0..3 {
        let mut v = vec![0u8; pad];
        v.extend_from_slice(s);
        let start = if pad == 0 { 0 } else { 4 };
        for enc in [
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(&v),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&v),
        ] {
            let end = enc.len().saturating_sub(4).max(start);
            out.push(enc.as_bytes()[start..end].to_vec());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const CANARY: &[u8] = b"CANARY-7f3a-not-on-disk";

    #[test]
    fn finds_raw_hex_and_base64_at_every_alignment_and_nothing_else() {
        let mut n = Needles::new();
        n.text("canary", CANARY).secret("key", &[0xAB; 32]);
        assert_eq!(n.find_in(b"xx CANARY-7f3a-not-on-disk yy"), Some("canary"));
        for prefix in ["", "a", "ab", "abc"] {
            let mut v = prefix.as_bytes().to_vec();
            v.extend_from_slice(CANARY);
            v.extend_from_slice(b"tail");
            for enc in [
                base64::engine::general_purpose::STANDARD.encode(&v),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&v),
            ] {
                assert_eq!(n.find_in(enc.as_bytes()), Some("canary (base64)"), "prefix {prefix:?}");
            }
        }
        assert_eq!(n.find_in(hex::encode([0xAB; 32]).as_bytes()), Some("key (hex)"));
        assert_eq!(n.find_in(b"CANARY-7f3a-not-on-dis"), None);
        assert_eq!(n.find_in(b""), None);
    }

    #[test]
    fn short_base64_forms_that_random_bytes_contain_are_not_searched() {
        // "Lithium" behind one byte encodes to "...dGh..." (3 characters):
        // found in random ciphertext, so not a needle; its other forms are.
        let mut n = Needles::new();
        n.text("lithium", b"Lithium");
        assert_eq!(n.find_in(b"\x01\x02dGh\x03"), None);
        assert_eq!(n.find_in(b"xxTGl0aGxx"), Some("lithium (base64)"));
        assert_eq!(n.find_in(b"xxaXRoxx"), Some("lithium (base64)"));
        assert_eq!(n.find_in(b"a Lithium level"), Some("lithium"));
    }

    #[test]
    fn scan_dir_reports_the_file_and_label_but_not_the_needle() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("clean"), b"ciphertext only").unwrap();
        let mut n = Needles::new();
        n.text("canary", CANARY);
        let clean = n.scan_dir(dir.path()).unwrap();
        assert_eq!((clean.files, clean.hits.len()), (1, 0));
        std::fs::write(dir.path().join("sub/leak"), [b"..".as_slice(), CANARY].concat()).unwrap();
        let dirty = n.scan_dir(dir.path()).unwrap();
        assert_eq!(dirty.files, 2);
        assert_eq!(dirty.hits, vec![Hit { path: dir.path().join("sub/leak"), label: "canary".into() }]);
        assert!(!format!("{n:?}").contains("CANARY"));
    }

    #[test]
    fn many_needles_are_found_in_one_pass_exactly_as_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = Needles::new();
        for i in 0..200u32 {
            n.text(&format!("value {i}"), format!("131.{i:04}27182818").as_bytes());
            n.raw(&format!("bits {i}"), &(f64::from(i) + 0.123).to_le_bytes());
        }
        let mut data = vec![7u8; 100_000];
        data[500..517].copy_from_slice(b"131.004227182818!");
        data[99_992..].copy_from_slice(&(17.0f64 + 0.123).to_le_bytes());
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"xx131.019927182818yy");
        data[40_000..40_000 + b64.len()].copy_from_slice(b64.as_bytes());
        std::fs::write(dir.path().join("f"), &data).unwrap();
        let r = n.scan_dir(dir.path()).unwrap();
        let labels: Vec<&str> = r.hits.iter().map(|h| h.label.as_str()).collect();
        // Standard and URL-safe base64 agree on this stretch: two forms match.
        assert_eq!(labels, ["bits 17", "value 42", "value 199 (base64)", "value 199 (base64)"]);
        // The same answers as the one-by-one search.
        let slow: Vec<&str> =
            n.forms.iter().filter(|(_, f)| contains(&data, f)).map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, slow);
    }
}
