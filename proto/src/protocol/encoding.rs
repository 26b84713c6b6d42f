//! SMP binary encoding primitives.
//!
//! The reference's `Encoding` class, restated:
//!
//! ```text
//! Bool         'T' | 'F'
//! Word16/32    big-endian
//! Int64        two big-endian Word32 (high, low)
//! SystemTime   Int64 seconds
//! ShortBytes   1-byte length, bytes (<= 255)
//! Large        2-byte big-endian length, bytes
//! Maybe a      '0' | '1' a
//! [a]          1-byte count, items (NonEmpty: count >= 1)
//! Tail         all remaining bytes
//! ```
//!
//! Tuples are plain concatenation. A [`Decoder`] never reads past its input: running out is an
//! error, as is a trailing byte where the grammar says "end" ([`Decoder::finish`]).

/// A decoding failure. The caller maps it to the reference's error for the context
/// (`CMD SYNTAX` for a command, `BLOCK` for a transmission, `HANDSHAKE PARSE` for a handshake).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed SMP encoding: {0}")]
pub struct DecodeError(pub &'static str);

/// Result of decoding.
pub type DResult<T> = Result<T, DecodeError>;

/// A cursor over bytes being decoded.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
}

impl<'a> Decoder<'a> {
    /// Start decoding `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    /// Whether all input was consumed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Require that all input was consumed (the reference's `parseAll`).
    pub fn finish(&self) -> DResult<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }

    /// Take exactly `n` bytes.
    pub fn take(&mut self, n: usize) -> DResult<&'a [u8]> {
        if self.buf.len() < n {
            return Err(DecodeError("unexpected end of input"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    /// One byte.
    pub fn byte(&mut self) -> DResult<u8> {
        Ok(self.take(1)?[0])
    }

    /// Look at the next byte without consuming it.
    pub fn peek(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// Expect a specific byte (usually the space between a tag and its fields).
    pub fn expect(&mut self, b: u8) -> DResult<()> {
        if self.byte()? == b {
            Ok(())
        } else {
            Err(DecodeError("unexpected byte"))
        }
    }

    /// A space, as `_smpP` requires before a field.
    pub fn space(&mut self) -> DResult<()> {
        self.expect(b' ')
    }

    /// `'T'`/`'F'`.
    pub fn bool(&mut self) -> DResult<bool> {
        match self.byte()? {
            b'T' => Ok(true),
            b'F' => Ok(false),
            _ => Err(DecodeError("invalid Bool")),
        }
    }

    /// Big-endian Word16.
    pub fn u16(&mut self) -> DResult<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Big-endian Word32.
    pub fn u32(&mut self) -> DResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Int64 as two Word32.
    pub fn i64(&mut self) -> DResult<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    /// A 1-byte-length-prefixed byte string.
    pub fn short_bytes(&mut self) -> DResult<&'a [u8]> {
        let n = self.byte()? as usize;
        self.take(n)
    }

    /// A 2-byte-length-prefixed byte string (`Large`).
    pub fn large_bytes(&mut self) -> DResult<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    /// All remaining bytes (`Tail`).
    pub fn tail(&mut self) -> &'a [u8] {
        let t = self.buf;
        self.buf = &[];
        t
    }

    /// Bytes up to (not including) the next space, or to the end (`takeTill (== ' ')`).
    pub fn till_space(&mut self) -> &'a [u8] {
        let n = self
            .buf
            .iter()
            .position(|&c| c == b' ')
            .unwrap_or(self.buf.len());
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        a
    }

    /// `Maybe a`: `'0'` or `'1'` followed by the value.
    pub fn maybe<T>(&mut self, f: impl FnOnce(&mut Self) -> DResult<T>) -> DResult<Option<T>> {
        match self.byte()? {
            b'0' => Ok(None),
            b'1' => f(self).map(Some),
            _ => Err(DecodeError("invalid Maybe tag")),
        }
    }

    /// A list with a 1-byte count.
    pub fn list<T>(&mut self, mut f: impl FnMut(&mut Self) -> DResult<T>) -> DResult<Vec<T>> {
        let n = self.byte()? as usize;
        (0..n).map(|_| f(self)).collect()
    }

    /// A non-empty list with a 1-byte count.
    pub fn non_empty<T>(&mut self, f: impl FnMut(&mut Self) -> DResult<T>) -> DResult<Vec<T>> {
        let v = self.list(f)?;
        if v.is_empty() {
            Err(DecodeError("empty list"))
        } else {
            Ok(v)
        }
    }
}

/// An output buffer with the SMP encodings.
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// A new empty buffer.
    pub fn new() -> Self {
        Encoder { buf: Vec::new() }
    }

    /// A new buffer with capacity.
    pub fn with_capacity(n: usize) -> Self {
        Encoder {
            buf: Vec::with_capacity(n),
        }
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// Length so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Raw bytes (tags, `Tail`).
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// One byte.
    pub fn byte(&mut self, b: u8) -> &mut Self {
        self.buf.push(b);
        self
    }

    /// A space.
    pub fn space(&mut self) -> &mut Self {
        self.byte(b' ')
    }

    /// `'T'`/`'F'`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.byte(if v { b'T' } else { b'F' })
    }

    /// Big-endian Word16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    /// Big-endian Word32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    /// Int64.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    /// 1-byte-length-prefixed bytes. Callers guarantee `b.len() <= 255` (IDs, keys, corr IDs);
    /// longer input is a bug and is truncated in length byte like the reference would wrap.
    pub fn short_bytes(&mut self, b: &[u8]) -> &mut Self {
        debug_assert!(b.len() <= 255, "short bytes over 255");
        self.byte(b.len() as u8).raw(b)
    }

    /// 2-byte-length-prefixed bytes.
    pub fn large_bytes(&mut self, b: &[u8]) -> &mut Self {
        debug_assert!(b.len() <= 65535, "large bytes over 65535");
        self.u16(b.len() as u16).raw(b)
    }

    /// `Maybe a`.
    pub fn maybe<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) -> &mut Self {
        match v {
            None => {
                self.byte(b'0');
            }
            Some(x) => {
                self.byte(b'1');
                f(self, x);
            }
        }
        self
    }

    /// A list with a 1-byte count.
    pub fn list<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) -> &mut Self {
        self.byte(items.len() as u8);
        for i in items {
            f(self, i);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_match_reference_layout() {
        let mut e = Encoder::new();
        e.bool(true)
            .u16(0x0102)
            .i64(1_700_000_000)
            .short_bytes(b"abc")
            .large_bytes(b"xy")
            .maybe(Some(&b"k"[..]), |e, v| {
                e.short_bytes(v);
            })
            .maybe(None::<u8>, |_, _| {});
        let b = e.finish();
        assert_eq!(
            b,
            [
                &b"T"[..],
                &[1, 2],
                &[0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00],
                &[3],
                b"abc",
                &[0, 2],
                b"xy",
                b"1",
                &[1],
                b"k",
                b"0"
            ]
            .concat()
        );
        let mut d = Decoder::new(&b);
        assert!(d.bool().expect("bool"));
        assert_eq!(d.u16().expect("u16"), 0x0102);
        assert_eq!(d.i64().expect("i64"), 1_700_000_000);
        assert_eq!(d.short_bytes().expect("s"), b"abc");
        assert_eq!(d.large_bytes().expect("l"), b"xy");
        assert_eq!(
            d.maybe(|d| d.short_bytes().map(|x| x.to_vec())).expect("m"),
            Some(b"k".to_vec())
        );
        assert_eq!(d.maybe(|d| d.byte()).expect("m"), None);
        d.finish().expect("finished");
    }

    #[test]
    fn errors_on_short_input_and_bad_tags() {
        assert!(Decoder::new(&[5, 1, 2]).short_bytes().is_err());
        assert!(Decoder::new(b"X").bool().is_err());
        assert!(Decoder::new(b"2").maybe(|d| d.byte()).is_err());
        assert!(Decoder::new(&[0]).non_empty(|d| d.byte()).is_err());
        assert!(Decoder::new(b"a").finish().is_err());
    }
}
