//! The reference's text encoding of store files (its `StrEncoding`), no I/O.
//!
//! Byte strings are base64url with `=` padding; keys are base64url of their SPKI DER; lists are
//! comma-separated; tuples are space-separated; integers are decimal. [`Cursor`] parses one
//! line the way the reference's parsers do (base64 runs end at any other character).

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

use crate::crypto::keys::PublicKey;

/// The base64url alphabet as a table (a store log restore tests a quarter of a billion
/// characters).
const BASE64URL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        i += 1;
    }
    t
};

/// Why a line did not parse: what was expected and the byte offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at column {at}")]
pub struct ParseError {
    /// What was expected.
    pub what: &'static str,
    /// Byte offset in the line (1-based column is `at + 1`; kept 0-based here).
    pub at: usize,
}

/// base64url with padding, as the reference writes byte strings.
pub fn b64(b: &[u8]) -> String {
    URL_SAFE.encode(b)
}

/// A key as the reference writes it: base64url of the SubjectPublicKeyInfo DER.
pub fn key(k: &PublicKey) -> String {
    b64(&k.to_der())
}

/// Keys as a comma-separated list.
pub fn keys(ks: &[PublicKey]) -> String {
    ks.iter().map(key).collect::<Vec<_>>().join(",")
}

/// A position in one line being parsed.
#[derive(Debug)]
pub struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// Start at the beginning of `s`.
    pub fn new(s: &'a [u8]) -> Self {
        Cursor { s, pos: 0 }
    }

    /// An error at the current position.
    pub fn err(&self, what: &'static str) -> ParseError {
        ParseError { what, at: self.pos }
    }

    /// Nothing left.
    pub fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// Fail unless nothing is left.
    pub fn end(&self) -> Result<(), ParseError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.err("end of line"))
        }
    }

    /// The rest of the line.
    pub fn rest(&mut self) -> &'a [u8] {
        let r = &self.s[self.pos.min(self.s.len())..];
        self.pos = self.s.len();
        r
    }

    /// Consume `t` if the input continues with it.
    pub fn try_tag(&mut self, t: &str) -> bool {
        if self.s[self.pos..].starts_with(t.as_bytes()) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }

    /// Consume `t` or fail.
    pub fn tag(&mut self, t: &'static str) -> Result<(), ParseError> {
        if self.try_tag(t) {
            Ok(())
        } else {
            Err(self.err(t))
        }
    }

    /// One space.
    pub fn space(&mut self) -> Result<(), ParseError> {
        self.tag(" ")
    }

    /// Bytes up to (not including) the first byte in `stop`, or the end.
    pub fn take_till(&mut self, stop: &[u8]) -> &'a [u8] {
        let start = self.pos;
        while self.pos < self.s.len() && !stop.contains(&self.s[self.pos]) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// A base64url byte string (at least one character, optional `=` padding).
    pub fn bytes(&mut self) -> Result<Vec<u8>, ParseError> {
        let start = self.pos;
        self.pos += self.s[start..]
            .iter()
            .position(|&b| !BASE64URL[usize::from(b)])
            .unwrap_or(self.s.len() - start);
        if self.pos == start {
            return Err(self.err("base64url string"));
        }
        let body = &self.s[start..self.pos];
        while self.pos < self.s.len() && self.s[self.pos] == b'=' {
            self.pos += 1;
        }
        URL_SAFE_NO_PAD.decode(body).map_err(|_| ParseError {
            what: "valid base64url",
            at: start,
        })
    }

    /// An optional base64url byte string (absent when the next byte can't start one).
    pub fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>, ParseError> {
        match self.s.get(self.pos) {
            Some(c) if c.is_ascii_alphanumeric() || b"-_".contains(c) => self.bytes().map(Some),
            _ => Ok(None),
        }
    }

    /// Exactly `N` bytes of base64url.
    pub fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ParseError> {
        let at = self.pos;
        self.bytes()?
            .try_into()
            .map_err(|_| ParseError { what, at })
    }

    /// A public key (base64url SPKI DER).
    pub fn key(&mut self) -> Result<PublicKey, ParseError> {
        let at = self.pos;
        let der = self.bytes()?;
        PublicKey::from_der(&der).map_err(|_| ParseError {
            what: "public key (SPKI DER)",
            at,
        })
    }

    /// A non-empty comma-separated list of keys.
    pub fn keys(&mut self) -> Result<Vec<PublicKey>, ParseError> {
        let mut v = vec![self.key()?];
        while self.try_tag(",") {
            v.push(self.key()?);
        }
        Ok(v)
    }

    /// A signed decimal integer.
    pub fn int(&mut self) -> Result<i64, ParseError> {
        let at = self.pos;
        let neg = self.try_tag("-");
        let digits = self.take_till(b" ,\n");
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(ParseError {
                what: "decimal number",
                at,
            });
        }
        let n: i64 = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or(ParseError {
                what: "decimal number",
                at,
            })?;
        Ok(if neg { -n } else { n })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_runs_stop_at_separators_and_accept_padding() {
        let mut c = Cursor::new(b"AQI= AQID,BA");
        assert_eq!(c.bytes().expect("a"), vec![1, 2]);
        c.space().expect("sp");
        assert_eq!(c.bytes().expect("b"), vec![1, 2, 3]);
        c.tag(",").expect(",");
        assert_eq!(c.bytes().expect("c"), vec![4]);
        c.end().expect("end");
        assert_eq!(b64(&[1, 2]), "AQI=");
    }

    #[test]
    fn errors_name_the_column() {
        let mut c = Cursor::new(b"x -5 ?");
        c.tag("x ").expect("x");
        assert_eq!(c.int().expect("n"), -5);
        c.space().expect("sp");
        assert_eq!(c.bytes().err().map(|e| e.at), Some(5));
    }
}
