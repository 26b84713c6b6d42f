//! SimpleX names (v20): the domain an `RSLV` asks for, the name record `RNAME` returns, and the
//! `ERR NAME` payload. No I/O: the resolver client lives in `crate::names`.
//!
//! ```text
//! RSLV <domain>[anything]     domain = 1..253 non-space bytes: labels joined by '.',
//!                             label  = ASCII alphanumerics, single '-' between runs, <= 63
//! RNAME <JSON name record to the end>
//! ERR NAME NO_RESOLVER | NAME NOT_FOUND | NAME RESOLVER <detail to the end>
//! ```
//!
//! The reference parses the domain into (TLD, domain, sub-domains) and prints it back as the
//! lower-cased labels joined by '.', which is all the server needs: [`SimplexDomain`] keeps that
//! text.

use super::encoding::{DResult, DecodeError, Decoder};

/// Longest domain the reference accepts (the DNS limit).
const MAX_DOMAIN: usize = 253;
/// Longest label.
const MAX_LABEL: usize = 63;

/// A parsed SimpleX (or web) domain, kept as its canonical text: lower-cased labels joined by
/// '.', at least two labels. The resolver is asked for exactly this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimplexDomain(String);

impl SimplexDomain {
    /// Parse the reference's `strP`: non-space bytes (1..=253), then labels. Errors are
    /// `CMD SYNTAX` for the caller.
    pub fn decode(d: &mut Decoder) -> DResult<Self> {
        let rest = d.remaining();
        let n = rest
            .iter()
            .position(|&c| c == b' ' || (9..=13).contains(&c))
            .unwrap_or(rest.len());
        if n == 0 || n > MAX_DOMAIN {
            return Err(DecodeError("bad name length"));
        }
        let token = d.take(n)?;
        Self::parse(token).ok_or(DecodeError("bad name"))
    }

    /// The domain from its text (the same rules as [`SimplexDomain::decode`]).
    pub fn parse(token: &[u8]) -> Option<Self> {
        if token.is_empty() || token.len() > MAX_DOMAIN {
            return None;
        }
        let s = std::str::from_utf8(token).ok()?;
        let labels: Vec<&str> = s.split('.').collect();
        if labels.len() < 2 || !labels.iter().all(|l| valid_label(l)) {
            return None;
        }
        Some(SimplexDomain(s.to_ascii_lowercase()))
    }

    /// The full name as the reference prints it (`fullDomainName`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A label: runs of ASCII letters/digits separated by single hyphens, at most 63 bytes.
fn valid_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= MAX_LABEL
        && l.split('-')
            .all(|run| !run.is_empty() && run.bytes().all(|c| c.is_ascii_alphanumeric()))
}

/// Why a name was not resolved (`ERR NAME ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The server has no resolver (`[NAMES] enable = off`).
    NoResolver,
    /// The name is not registered.
    NotFound,
    /// The resolver failed; the text says how (sent to the client).
    Resolver(String),
}

impl NameError {
    /// Text form: `NO_RESOLVER`, `NOT_FOUND`, `RESOLVER <detail>`.
    pub fn to_text(&self) -> String {
        match self {
            NameError::NoResolver => "NO_RESOLVER".into(),
            NameError::NotFound => "NOT_FOUND".into(),
            NameError::Resolver(e) => format!("RESOLVER {e}"),
        }
    }

    /// Parse the text form (consumes the rest for `RESOLVER`).
    pub fn decode(d: &mut Decoder) -> DResult<Self> {
        Ok(match d.till_space() {
            b"NO_RESOLVER" => NameError::NoResolver,
            b"NOT_FOUND" => NameError::NotFound,
            b"RESOLVER" => {
                d.space()?;
                NameError::Resolver(String::from_utf8_lossy(d.tail()).into_owned())
            }
            _ => return Err(DecodeError("bad NameErrorType")),
        })
    }
}

/// A resolved name (the reference's `NameRecord`). Text fields use "" for unset; the coin
/// addresses are JSON null when unset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NameRecord {
    /// The name.
    pub name: String,
    /// Display name.
    pub nickname: String,
    /// Web site.
    pub website: String,
    /// Location.
    pub location: String,
    /// Contact links, primary first.
    pub simplex_contact: Vec<String>,
    /// Channel links, primary first.
    pub simplex_channel: Vec<String>,
    /// Ethereum address.
    pub eth: Option<String>,
    /// Bitcoin address.
    pub btc: Option<String>,
    /// Monero address.
    pub xmr: Option<String>,
    /// Polkadot address.
    pub dot: Option<String>,
    /// Owner (0x hex).
    pub owner: String,
    /// The resolver contract that produced the record (0x hex).
    pub resolver: String,
}

impl NameRecord {
    /// Decode the resolver's JSON as the reference's derived `FromJSON`: text and list fields
    /// are required, coin fields may be null or absent, unknown fields are ignored.
    pub fn from_json(b: &[u8]) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        let o = v.as_object().ok_or("expected an object")?;
        let text = |k: &str| -> Result<String, String> {
            match o.get(k) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!("{k}: expected a string")),
                None => Err(format!("key {k:?} not found")),
            }
        };
        let list = |k: &str| -> Result<Vec<String>, String> {
            match o.get(k) {
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| format!("{k}: expected strings"))
                    })
                    .collect(),
                Some(_) => Err(format!("{k}: expected an array")),
                None => Err(format!("key {k:?} not found")),
            }
        };
        let coin = |k: &str| -> Result<Option<String>, String> {
            match o.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("{k}: expected a string or null")),
            }
        };
        Ok(NameRecord {
            name: text("name")?,
            nickname: text("nickname")?,
            website: text("website")?,
            location: text("location")?,
            simplex_contact: list("simplexContact")?,
            simplex_channel: list("simplexChannel")?,
            eth: coin("eth")?,
            btc: coin("btc")?,
            xmr: coin("xmr")?,
            dot: coin("dot")?,
            owner: text("owner")?,
            resolver: text("resolver")?,
        })
    }

    /// Encode as the reference's derived `ToJSON` (aeson): fields in declaration order,
    /// compact, nulls kept, strings escaped as aeson does (see [`json_string`]).
    pub fn to_json(&self) -> Vec<u8> {
        let mut o = String::with_capacity(256);
        o.push('{');
        let mut first = true;
        let mut key = |o: &mut String, k: &str| {
            if !first {
                o.push(',');
            }
            first = false;
            json_string(o, k);
            o.push(':');
        };
        for (k, v) in [
            ("name", &self.name),
            ("nickname", &self.nickname),
            ("website", &self.website),
            ("location", &self.location),
        ] {
            key(&mut o, k);
            json_string(&mut o, v);
        }
        for (k, v) in [
            ("simplexContact", &self.simplex_contact),
            ("simplexChannel", &self.simplex_channel),
        ] {
            key(&mut o, k);
            o.push('[');
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                json_string(&mut o, s);
            }
            o.push(']');
        }
        for (k, v) in [
            ("eth", &self.eth),
            ("btc", &self.btc),
            ("xmr", &self.xmr),
            ("dot", &self.dot),
        ] {
            key(&mut o, k);
            match v {
                Some(s) => json_string(&mut o, s),
                None => o.push_str("null"),
            }
        }
        for (k, v) in [("owner", &self.owner), ("resolver", &self.resolver)] {
            key(&mut o, k);
            json_string(&mut o, v);
        }
        o.push('}');
        o.into_bytes()
    }
}

/// A JSON string as aeson writes it: `"` and `\` escaped, `\n` `\r` `\t` short, other
/// characters below 0x20 as `\u00xx` (lower-case hex), everything else (non-ASCII too) as is.
/// (serde_json differs: it writes `\b` and `\f`.)
pub fn json_string(o: &mut String, s: &str) {
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(s: &str) -> Option<String> {
        SimplexDomain::parse(s.as_bytes()).map(|d| d.0)
    }

    #[test]
    fn domains_as_the_reference_parses_them() {
        assert_eq!(dom("Alice.simplex").as_deref(), Some("alice.simplex"));
        assert_eq!(
            dom("a.b.test-1.testing").as_deref(),
            Some("a.b.test-1.testing")
        );
        assert_eq!(dom("example.com").as_deref(), Some("example.com"));
        for bad in [
            "alice",
            "",
            ".simplex",
            "a..simplex",
            "-a.simplex",
            "a-.simplex",
            "a--b.simplex",
            "a_b.simplex",
            "ali\u{e7}e.simplex",
        ] {
            assert_eq!(dom(bad), None, "{bad:?}");
        }
        let long = format!("{}.simplex", "a".repeat(63));
        assert!(dom(&long).is_some());
        assert!(dom(&format!("{}.simplex", "a".repeat(64))).is_none());
        let parts = vec!["abcdefghi"; 25].join(".");
        assert_eq!(parts.len(), 249);
        assert!(dom(&format!("{parts}.xyz")).is_some()); // 253 bytes
        assert!(dom(&format!("{parts}.wxyz")).is_none()); // 254 bytes
        let mut d = Decoder::new(b"bob.simplex trailing");
        assert_eq!(
            SimplexDomain::decode(&mut d).expect("ok").as_str(),
            "bob.simplex"
        );
        assert_eq!(d.remaining(), b" trailing");
    }

    #[test]
    fn record_json_as_aeson_writes_it() {
        let r = NameRecord {
            name: "alice.simplex".into(),
            nickname: "A \"q\"\u{8}\u{1f}é".into(),
            simplex_contact: vec!["https://simplex.chat/a#x".into()],
            eth: Some("0xab".into()),
            owner: "0x01".into(),
            resolver: "0x02".into(),
            ..NameRecord::default()
        };
        let j = r.to_json();
        assert_eq!(
            std::str::from_utf8(&j).expect("utf8"),
            "{\"name\":\"alice.simplex\",\"nickname\":\"A \\\"q\\\"\\u0008\\u001fé\",\"website\":\"\",\"location\":\"\",\"simplexContact\":[\"https://simplex.chat/a#x\"],\"simplexChannel\":[],\"eth\":\"0xab\",\"btc\":null,\"xmr\":null,\"dot\":null,\"owner\":\"0x01\",\"resolver\":\"0x02\"}"
        );
        assert_eq!(NameRecord::from_json(&j).expect("decode"), r);
        assert!(NameRecord::from_json(b"{\"name\":\"x\"}").is_err());
        assert!(NameRecord::from_json(b"[]").is_err());
    }
}
