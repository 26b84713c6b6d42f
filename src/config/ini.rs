//! A line-based INI reader with the same rules as the Haskell `ini` package the reference uses.
//!
//! Rules (they decide which files the reference accepts, so they are kept exactly):
//! - `[NAME]` opens a section; the name is trimmed. If a section name repeats, the later
//!   section replaces the earlier one.
//! - `key = value` and `key: value` are both accepted; the key ends at the first `=` or `:`,
//!   both key and value are trimmed, and the value may be empty.
//! - A line whose first non-blank character is `#` or `;` is a comment. There are no inline
//!   comments: `#` and `;` inside a value belong to the value (SimpleX links contain `#`).
//! - Keys are case-sensitive. If a key repeats within a section, the first occurrence wins.
//! - Key/value lines before the first section are accepted and ignored.
//!
//! One deliberate difference: a line that is none of the above is an error naming the line
//! (the reference would silently glue it to the next line's key).

/// A parsed INI document: sections in file order, entries in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ini {
    sections: Vec<(String, Vec<(String, String)>)>,
}

/// A syntax error: 1-based line number and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line number.
    pub line: usize,
    /// Description of the problem.
    pub message: String,
}

impl Ini {
    /// Parse INI text.
    pub fn parse(text: &str) -> Result<Ini, SyntaxError> {
        let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
        let mut current: Option<usize> = None;
        for (idx, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let err = |message: String| SyntaxError {
                line: idx + 1,
                message,
            };
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let Some(end) = rest.find(']') else {
                    return Err(err(format!("section header '{line}' has no closing ']'")));
                };
                let name = rest[..end].trim();
                if rest[..end].contains('[') {
                    return Err(err(format!("section header '{line}' contains '['")));
                }
                if !rest[end + 1..].trim().is_empty() {
                    return Err(err(format!(
                        "unexpected text after section header '[{name}]'"
                    )));
                }
                // A repeated section replaces the earlier one, as in the reference.
                sections.retain(|(n, _)| n != name);
                sections.push((name.to_string(), Vec::new()));
                current = Some(sections.len() - 1);
                continue;
            }
            let Some(pos) = line.find(['=', ':']) else {
                return Err(err(format!(
                    "'{line}' is not a section header, a comment or a 'key = value' line"
                )));
            };
            let key = line[..pos].trim();
            if key.is_empty() {
                return Err(err(format!(
                    "'{line}' has no key before '{}'",
                    &line[pos..=pos]
                )));
            }
            if key.contains(['[', ']']) {
                return Err(err(format!("key '{key}' contains '[' or ']'")));
            }
            let value = line[pos + 1..].trim();
            if let Some(i) = current {
                if let Some((_, entries)) = sections.get_mut(i) {
                    entries.push((key.to_string(), value.to_string()));
                }
            }
        }
        Ok(Ini { sections })
    }

    /// The value of `key` in `section` (first occurrence), if present.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections
            .iter()
            .find(|(name, _)| name == section)
            .and_then(|(_, entries)| entries.iter().find(|(k, _)| k == key))
            .map(|(_, v)| v.as_str())
    }

    /// All sections in file order, with their entries.
    pub fn sections(&self) -> impl Iterator<Item = (&str, &[(String, String)])> {
        self.sections
            .iter()
            .map(|(name, entries)| (name.as_str(), entries.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_separators_and_comments() {
        let ini = Ini::parse(
            "# top\n; also\n[A]\nx = 1\ny: two words \n  # indented comment\nz:\nw=\n[B]\nurl: https://a.b/c#d;e\n",
        )
        .expect("parses");
        assert_eq!(ini.get("A", "x"), Some("1"));
        assert_eq!(ini.get("A", "y"), Some("two words"));
        assert_eq!(ini.get("A", "z"), Some(""));
        assert_eq!(ini.get("A", "w"), Some(""));
        assert_eq!(ini.get("B", "url"), Some("https://a.b/c#d;e"));
        assert_eq!(ini.get("A", "url"), None);
        assert_eq!(ini.get("C", "x"), None);
    }

    #[test]
    fn first_delimiter_splits() {
        let ini = Ini::parse("[P]\nsocks_proxy: 127.0.0.1:9050\npw = a:b\n").expect("parses");
        assert_eq!(ini.get("P", "socks_proxy"), Some("127.0.0.1:9050"));
        assert_eq!(ini.get("P", "pw"), Some("a:b"));
    }

    #[test]
    fn duplicates() {
        let ini = Ini::parse("[A]\nk = 1\nk = 2\n[B]\nk = 3\n[A]\nj = 4\n").expect("parses");
        assert_eq!(ini.get("A", "k"), None);
        assert_eq!(ini.get("A", "j"), Some("4"));
        assert_eq!(ini.get("B", "k"), Some("3"));
        let ini = Ini::parse("[A]\nk = 1\nk = 2\n").expect("parses");
        assert_eq!(ini.get("A", "k"), Some("1"));
    }

    #[test]
    fn globals_ignored_and_crlf() {
        let ini = Ini::parse("g = 1\r\n[S]\r\nk = v\r\n").expect("parses");
        assert_eq!(ini.get("S", "k"), Some("v"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = Ini::parse("[A]\nk = 1\njunk\n").expect_err("junk line");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("junk"));
        let e = Ini::parse("[A\n").expect_err("unclosed");
        assert_eq!(e.line, 1);
        let e = Ini::parse("[A]\n= v\n").expect_err("no key");
        assert_eq!(e.line, 2);
    }
}
