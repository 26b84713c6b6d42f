//! Typed reads of INI values, each failure naming the section, key, value and a fix.

use std::str::FromStr;

use super::ini::Ini;
use super::ConfigError;

/// Keys whose values must never be echoed back in errors.
fn is_secret(key: &str) -> bool {
    key.contains("password") || key == "db_connection"
}

/// A view of the parsed INI that converts values and reports errors consistently.
pub(crate) struct Reader<'a> {
    pub(crate) ini: &'a Ini,
}

impl<'a> Reader<'a> {
    /// The raw value, if present.
    pub(crate) fn raw(&self, section: &'static str, key: &'static str) -> Option<&'a str> {
        self.ini.get(section, key)
    }

    /// The value as a string; empty values count as absent.
    pub(crate) fn text(&self, section: &'static str, key: &'static str) -> Option<String> {
        self.raw(section, key)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    /// An error for this key and value.
    pub(crate) fn invalid(
        &self,
        section: &'static str,
        key: &'static str,
        value: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        let value = if is_secret(key) {
            "<hidden>".to_string()
        } else {
            value.to_string()
        };
        ConfigError::InvalidValue {
            section,
            key,
            value,
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// `on` / `off`, exactly as the reference accepts them.
    pub(crate) fn on_off(
        &self,
        section: &'static str,
        key: &'static str,
    ) -> Result<Option<bool>, ConfigError> {
        match self.raw(section, key) {
            None => Ok(None),
            Some("on") => Ok(Some(true)),
            Some("off") => Ok(Some(false)),
            Some(v) => Err(self.invalid(
                section,
                key,
                v,
                "is not a switch value",
                format!("use {key} = on or {key} = off"),
            )),
        }
    }

    /// `on` / `off` with a default when absent.
    pub(crate) fn on_off_or(
        &self,
        section: &'static str,
        key: &'static str,
        default: bool,
    ) -> Result<bool, ConfigError> {
        Ok(self.on_off(section, key)?.unwrap_or(default))
    }

    /// A number; `example` is shown in the fix.
    pub(crate) fn number<T: FromStr>(
        &self,
        section: &'static str,
        key: &'static str,
        example: &str,
    ) -> Result<Option<T>, ConfigError> {
        match self.raw(section, key) {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|_| {
                self.invalid(
                    section,
                    key,
                    v,
                    "is not a valid number",
                    format!("use e.g. {key} = {example}"),
                )
            }),
        }
    }

    /// A TCP port number (1-65535).
    pub(crate) fn port(
        &self,
        section: &'static str,
        key: &'static str,
        example: &str,
    ) -> Result<Option<u16>, ConfigError> {
        match self.raw(section, key) {
            None => Ok(None),
            Some(v) => parse_port(v).map(Some).ok_or_else(|| {
                self.invalid(
                    section,
                    key,
                    v,
                    "is not a port number",
                    format!("use e.g. {key} = {example}"),
                )
            }),
        }
    }

    /// A comma-separated list of ports, e.g. `5223,443`.
    pub(crate) fn port_list(
        &self,
        section: &'static str,
        key: &'static str,
        value: &str,
    ) -> Result<Vec<u16>, ConfigError> {
        let err = |problem: &str| {
            self.invalid(
                section,
                key,
                value,
                problem,
                format!("use e.g. {key} = 5223,443"),
            )
        };
        let mut ports = Vec::new();
        for item in value.split(',') {
            let p = parse_port(item.trim()).ok_or_else(|| err("is not a port number"))?;
            if ports.contains(&p) {
                return Err(err("lists the same port twice"));
            }
            ports.push(p);
        }
        Ok(ports)
    }
}

/// A port number 1-65535 (0 would mean "any port" and cannot be advertised).
pub(crate) fn parse_port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p != 0)
}
