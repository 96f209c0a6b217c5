//! Versioned binary encodings.
//!
//! Every stored or wire blob starts with a 4-byte magic naming its type and a
//! 1-byte format version. Decoding checks the size limit *before* looking at
//! anything else, then the magic and the version, and finally that no bytes
//! trail the value. Decoders never panic on untrusted bytes: every read is
//! bounds-checked and returns [`DecodeError`].

use crate::error::DecodeError;

/// Builds a versioned blob.
#[derive(Debug)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// Starts a blob with its magic and format version.
    pub fn new(magic: &[u8; 4], version: u8) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(magic);
        buf.push(version);
        Self { buf }
    }

    /// Starts a blob with a capacity hint (avoids reallocation, which would
    /// leave copies of secret bytes behind in freed memory).
    pub fn with_capacity(magic: &[u8; 4], version: u8, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 5);
        buf.extend_from_slice(magic);
        buf.push(version);
        Self { buf }
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Appends a big-endian u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a big-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a big-endian u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends bytes of a length both sides know (no prefix).
    pub fn fixed(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// Appends bytes with a u32 length prefix.
    ///
    /// # Panics
    /// Never in practice: lengths above `u32::MAX` are clamped by the caller's
    /// own size limits, which are far below 4 GiB.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.buf.extend_from_slice(bytes);
        self
    }

    /// Appends a UTF-8 string with a u16 length prefix (strings are short
    /// identifiers; callers validate their length on construction).
    pub fn str(&mut self, s: &str) -> &mut Self {
        let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.buf.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
        self
    }

    /// Finishes the blob.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads a versioned blob, bounds-checking every step.
#[derive(Debug)]
pub struct Decoder<'a> {
    rest: &'a [u8],
    version: u8,
}

impl<'a> Decoder<'a> {
    /// Checks the size limit, the magic and that the version is one of
    /// `versions`, and returns a decoder positioned after the version byte.
    pub fn open(
        bytes: &'a [u8],
        magic: &[u8; 4],
        versions: &[u8],
        max_len: usize,
    ) -> Result<Self, DecodeError> {
        if bytes.len() > max_len {
            return Err(DecodeError::TooLarge { limit: max_len, actual: bytes.len() });
        }
        if bytes.len() < 5 {
            return Err(DecodeError::Truncated);
        }
        if &bytes[..4] != magic {
            return Err(DecodeError::WrongMagic);
        }
        let version = bytes[4];
        if !versions.contains(&version) {
            return Err(DecodeError::UnsupportedVersion { found: version });
        }
        Ok(Self { rest: &bytes[5..], version })
    }

    /// The format version found in the blob.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Reads `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads a fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads u32-length-prefixed bytes of at most `max` bytes.
    pub fn bytes(&mut self, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(self.u32()?).map_err(|_| DecodeError::Invalid("length"))?;
        if len > max {
            return Err(DecodeError::TooLarge { limit: max, actual: len });
        }
        self.take(len)
    }

    /// Reads a u16-length-prefixed UTF-8 string of at most `max` bytes.
    pub fn str(&mut self, max: usize) -> Result<&'a str, DecodeError> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(DecodeError::TooLarge { limit: max, actual: len });
        }
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::Invalid("utf-8 string"))
    }

    /// Ends decoding: fails if any bytes trail the value.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut e = Encoder::new(b"TEST", 1);
        e.u8(7).u16(300).u32(70_000).u64(1 << 40).bytes(b"abc").str("hé");
        e.finish()
    }

    #[test]
    fn round_trip() {
        let blob = sample();
        let mut d = Decoder::open(&blob, b"TEST", &[1], 1024).unwrap();
        assert_eq!(d.u8().unwrap(), 7);
        assert_eq!(d.u16().unwrap(), 300);
        assert_eq!(d.u32().unwrap(), 70_000);
        assert_eq!(d.u64().unwrap(), 1 << 40);
        assert_eq!(d.bytes(16).unwrap(), b"abc");
        assert_eq!(d.str(16).unwrap(), "hé");
        d.finish().unwrap();
    }

    #[test]
    fn every_truncation_is_an_error() {
        let blob = sample();
        for n in 0..blob.len() {
            let r = (|| {
                let mut d = Decoder::open(&blob[..n], b"TEST", &[1], 1024)?;
                d.u8()?;
                d.u16()?;
                d.u32()?;
                d.u64()?;
                d.bytes(16)?;
                d.str(16)?;
                d.finish()
            })();
            assert!(r.is_err(), "prefix of {n} bytes decoded");
        }
    }

    #[test]
    fn rejects_oversize_magic_version_trailing() {
        let blob = sample();
        assert!(matches!(Decoder::open(&blob, b"TEST", &[1], 4), Err(DecodeError::TooLarge { .. })));
        assert!(matches!(Decoder::open(&blob, b"NOPE", &[1], 1024), Err(DecodeError::WrongMagic)));
        assert!(matches!(
            Decoder::open(&blob, b"TEST", &[2], 1024),
            Err(DecodeError::UnsupportedVersion { found: 1 })
        ));
        let mut d = Decoder::open(&blob, b"TEST", &[1], 1024).unwrap();
        d.u8().unwrap();
        assert!(matches!(d.finish(), Err(DecodeError::TrailingBytes)));
    }

    #[test]
    fn inner_length_limits_are_enforced() {
        let mut e = Encoder::new(b"TEST", 1);
        e.bytes(&[0u8; 100]);
        let blob = e.finish();
        let mut d = Decoder::open(&blob, b"TEST", &[1], 1024).unwrap();
        assert!(matches!(d.bytes(99), Err(DecodeError::TooLarge { limit: 99, actual: 100 })));
    }
}
