//! The ed25519 public keys a release archive must be signed with.
//!
//! Keys come from three places, all fixed before the server runs: `release-keys.txt` (the
//! project's keys, compiled in), the build-time variable `SMP_UPDATER_KEYS` (whoever builds the
//! binary chooses its trust roots; tests use it for a throw-away key) and `[UPDATE]
//! verifying_keys` (mirrors that re-sign). Nothing read at update time can add a key, and an
//! empty set refuses every update: `self_update` would silently skip verification instead.

use base64::Engine as _;
use self_update::zipsign_api::{self, PUBLIC_KEY_LENGTH};

use crate::UpdateError;

/// The project's release keys, one base64 key per line (`#` starts a comment).
const RELEASE_KEYS: &str = include_str!("../release-keys.txt");

/// Keys given when this binary was built (comma- or space-separated base64).
const BUILD_KEYS: Option<&str> = option_env!("SMP_UPDATER_KEYS");

/// A set of accepted release keys, never empty.
#[derive(Clone, Debug)]
pub struct TrustedKeys {
    keys: Vec<zipsign_api::VerifyingKey>,
}

/// Split a key list on lines, commas and spaces, dropping `#` comments.
fn key_items(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|s| !s.is_empty())
}

/// Decode one base64 ed25519 public key.
pub fn parse_key(text: &str) -> Result<zipsign_api::VerifyingKey, UpdateError> {
    let bad = |why: &str| UpdateError::BadKey {
        key: text.to_string(),
        problem: why.to_string(),
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| bad("is not base64"))?;
    let raw: [u8; PUBLIC_KEY_LENGTH] = bytes.try_into().map_err(|_| bad("is not 32 bytes long"))?;
    zipsign_api::VerifyingKey::from_bytes(&raw).map_err(|_| bad("is not an ed25519 public key"))
}

impl TrustedKeys {
    /// The compiled-in keys plus `extra` (from the configuration). Errors when a key is
    /// malformed or when there is no key at all.
    pub fn load(extra: &[String]) -> Result<TrustedKeys, UpdateError> {
        let compiled = key_items(RELEASE_KEYS).chain(BUILD_KEYS.into_iter().flat_map(key_items));
        let mut keys = Vec::new();
        for k in compiled.chain(extra.iter().flat_map(|e| key_items(e))) {
            let key = parse_key(k)?;
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        TrustedKeys::from_keys(keys)
    }

    /// Exactly these keys; an empty list is refused.
    pub fn from_keys(keys: Vec<zipsign_api::VerifyingKey>) -> Result<TrustedKeys, UpdateError> {
        if keys.is_empty() {
            return Err(UpdateError::NoKeys);
        }
        Ok(TrustedKeys { keys })
    }

    /// The keys (never empty).
    pub fn keys(&self) -> &[zipsign_api::VerifyingKey] {
        &self.keys
    }

    /// The keys as base64, for `self-update --check` to show what this build trusts.
    pub fn describe(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| base64::engine::general_purpose::STANDARD.encode(k.as_bytes()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "aQ0/2DxgAIb0qabtaUly4r2rgA5+7E5nd0IBil0Zd2U=";

    #[test]
    fn empty_is_refused() {
        assert!(matches!(
            TrustedKeys::from_keys(Vec::new()),
            Err(UpdateError::NoKeys)
        ));
    }

    #[test]
    fn parses_lists_and_rejects_garbage() {
        let k = parse_key(KEY).expect("valid key");
        assert_eq!(key_items(&format!("# c\n{KEY}, {KEY} # x\n")).count(), 2);
        let t = TrustedKeys::load(&[format!("{KEY} {KEY}")]).expect("one key");
        assert!(t.keys().contains(&k));
        assert!(parse_key("not base64!").is_err());
        assert!(parse_key("AAAA").is_err());
        assert!(TrustedKeys::load(&["AAAA".into()]).is_err());
    }
}
