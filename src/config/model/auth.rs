//! `[AUTH]`: who may create queues and use the control port.

use std::fmt;

use crate::config::address::is_valid_password;
use crate::config::defaults;
use crate::config::read::Reader;
use crate::config::ConfigError;

/// `[AUTH]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    /// `new_queues`: allow creating queues at all (default on).
    pub new_queues: bool,
    /// `create_password`: required to create queues (and to use the server as a proxy).
    pub create_password: Option<String>,
    /// `control_port_admin_password`.
    pub control_port_admin_password: Option<String>,
    /// `control_port_user_password`.
    pub control_port_user_password: Option<String>,
    /// `daily_block_queue_quota`: 0 = no limit, -1 = blocking prohibited (default 20).
    pub daily_block_queue_quota: i32,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            new_queues: true,
            create_password: None,
            control_port_admin_password: None,
            control_port_user_password: None,
            daily_block_queue_quota: defaults::DAILY_BLOCK_QUEUE_QUOTA,
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hide = |p: &Option<String>| p.as_ref().map(|_| "<redacted>");
        f.debug_struct("Auth")
            .field("new_queues", &self.new_queues)
            .field("create_password", &hide(&self.create_password))
            .field(
                "control_port_admin_password",
                &hide(&self.control_port_admin_password),
            )
            .field(
                "control_port_user_password",
                &hide(&self.control_port_user_password),
            )
            .field("daily_block_queue_quota", &self.daily_block_queue_quota)
            .finish()
    }
}

const AUTH: &str = "AUTH";

fn password(r: &Reader<'_>, key: &'static str) -> Result<Option<String>, ConfigError> {
    match r.raw(AUTH, key) {
        None => Ok(None),
        Some(v) if is_valid_password(v) => Ok(Some(v.to_string())),
        Some(v) => Err(r.invalid(
            AUTH,
            key,
            v,
            if v.is_empty() {
                "is empty"
            } else {
                "contains whitespace, control characters, '@', ':' or '/'"
            },
            format!("use printable characters other than '@', ':' and '/', or comment out {key} to disable it"),
        )),
    }
}

pub(super) fn auth(r: &Reader<'_>) -> Result<Auth, ConfigError> {
    Ok(Auth {
        new_queues: r.on_off_or(AUTH, "new_queues", true)?,
        create_password: password(r, "create_password")?,
        control_port_admin_password: password(r, "control_port_admin_password")?,
        control_port_user_password: password(r, "control_port_user_password")?,
        daily_block_queue_quota: r
            .number(AUTH, "daily_block_queue_quota", "20")?
            .unwrap_or(defaults::DAILY_BLOCK_QUEUE_QUOTA),
    })
}
