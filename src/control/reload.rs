//! SIGHUP: re-read `smp-server.ini` and the certificate files, apply what can change while
//! the server runs, and name every changed setting that needs a restart.
//!
//! Live: `[INFORMATION]` (control port and the generated web page), the control port
//! passwords and block quota, the web certificate (`[WEB] cert`/`key`, also when ACME or
//! the operator replaced the files), and the SMP certificate `server.crt`/`server.key` under
//! the same CA. Everything else is compared with the running configuration and logged.

use std::sync::{Arc, Mutex, RwLock};

use super::port::ControlContext;
use crate::config::Config;
use crate::server::credentials::CredentialsReload;
use crate::sync::lock;
use crate::web::WebCertReload;

/// Something a reload applies besides the INI settings the control port holds; returns a
/// short description of what it did, for the reload log line (`None`: nothing to report).
pub type ReloadHook = Arc<dyn Fn(&Config) -> Option<String> + Send + Sync>;

/// What a reload touches (shared with the running services).
#[derive(Clone)]
pub(crate) struct Reloader {
    pub(crate) control: Option<Arc<ControlContext>>,
    pub(crate) information: Arc<RwLock<crate::config::Information>>,
    pub(crate) config: Arc<Config>,
    pub(crate) hooks: Arc<Mutex<Vec<ReloadHook>>>,
}

impl Reloader {
    /// Apply a reloaded configuration: what can change live changes, the rest is logged.
    pub(crate) fn reload(&self, new: &Config) {
        let said = |changed: bool| if changed { "updated" } else { "unchanged" };
        let mut applied = Vec::new();
        if let Some(c) = &self.control {
            let auth = super::control_auth(new);
            let mut cur = c.auth.write().unwrap_or_else(|e| e.into_inner());
            let changed = cur.admin != auth.admin
                || cur.user != auth.user
                || cur.daily_block_quota != auth.daily_block_quota;
            *cur = auth;
            applied.push(format!(
                "[AUTH] control port passwords and daily_block_queue_quota {}",
                said(changed)
            ));
        }
        {
            let mut cur = self.information.write().unwrap_or_else(|e| e.into_inner());
            applied.push(format!("[INFORMATION] {}", said(*cur != new.information)));
            *cur = new.information.clone();
        }
        let hooks: Vec<ReloadHook> = lock(&self.hooks).clone();
        applied.extend(hooks.iter().filter_map(|h| h(new)));
        tracing::info!("configuration reloaded: {}", applied.join("; "));
        let restart = restart_needed(&self.config, new);
        if !restart.is_empty() {
            tracing::warn!(
                "changes to {} take effect after a restart",
                restart.join(", ")
            );
        }
    }

    /// Reload the INI file from disk (SIGHUP).
    pub(crate) fn reload_from_disk(&self) {
        match Config::load_from(self.config.paths.clone()) {
            Ok(c) => self.reload(&c),
            Err(e) => tracing::error!("reload failed, keeping the running configuration: {e}"),
        }
    }
}

/// The changed settings (as `[SECTION] key`) that only a restart applies.
pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut r = Vec::new();
    let mut check = |changed: bool, what: &'static str| {
        if changed {
            r.push(what);
        }
    };
    let (ot, nt) = (&old.transport, &new.transport);
    check(ot.host != nt.host, "[TRANSPORT] host");
    check(ot.ports != nt.ports, "[TRANSPORT] port");
    check(
        ot.control_port != nt.control_port,
        "[TRANSPORT] control_port",
    );
    check(
        ot.log_tls_errors != nt.log_tls_errors,
        "[TRANSPORT] log_tls_errors",
    );
    check(ot.websockets != nt.websockets, "[TRANSPORT] websockets");
    check(
        ot.accept_service_credentials != nt.accept_service_credentials,
        "[TRANSPORT] accept_service_credentials",
    );
    check(
        format!("{:?}", old.store_log) != format!("{:?}", new.store_log)
            || old.store_log.db_connection != new.store_log.db_connection,
        "[STORE_LOG]",
    );
    check(
        old.auth.new_queues != new.auth.new_queues,
        "[AUTH] new_queues",
    );
    check(
        old.auth.create_password != new.auth.create_password,
        "[AUTH] create_password",
    );
    check(old.proxy != new.proxy, "[PROXY]");
    check(
        old.inactive_clients != new.inactive_clients,
        "[INACTIVE_CLIENTS]",
    );
    let (ow, nw) = (&old.web, &new.web);
    check(ow.static_path != nw.static_path, "[WEB] static_path");
    check(ow.http != nw.http, "[WEB] http");
    check(ow.https != nw.https, "[WEB] https");
    check(
        ow.cert != nw.cert || ow.key != nw.key,
        "[WEB] cert/key paths",
    );
    check(old.acme != new.acme, "[ACME]");
    check(old.tor != new.tor, "[TOR]");
    check(old.update != new.update, "[UPDATE]");
    r
}

/// The hooks of a running server: its SMP certificate, its web certificate and its web page.
pub fn server_hooks(server: &crate::server::Server, running: &Arc<Config>) -> Vec<ReloadHook> {
    let mut hooks: Vec<ReloadHook> = Vec::new();
    let creds = server.credentials().clone();
    let cfg_dir = running.paths.cfg_dir().to_path_buf();
    hooks.push(Arc::new(move |_new: &Config| {
        Some(match creds.reload_from(&cfg_dir) {
            CredentialsReload::Unchanged => "SMP certificate unchanged".to_string(),
            CredentialsReload::Replaced => {
                "SMP certificate: new server.crt in use for new connections (same CA fingerprint)"
                    .to_string()
            }
            CredentialsReload::Kept(why) => {
                tracing::warn!("SIGHUP: kept the current SMP certificate: {why}");
                "SMP certificate kept (see warning)".to_string()
            }
        })
    }));
    if let Some(web) = server.web().cloned() {
        hooks.push(Arc::new(move |_new: &Config| {
            Some(match web.reload_certificate()? {
                WebCertReload::Unchanged => "[WEB] certificate unchanged".to_string(),
                WebCertReload::Replaced => {
                    "[WEB] certificate: new certificate in use for new HTTPS connections"
                        .to_string()
                }
                WebCertReload::Kept(why) => {
                    tracing::warn!(
                        "SIGHUP: kept the current [WEB] certificate: {why}. Put a PEM chain and its key in the [WEB] cert and key files and send SIGHUP again."
                    );
                    "[WEB] certificate kept (see warning)".to_string()
                }
            })
        }));
    }
    if let Some(root) = running.web.static_path.clone() {
        let running = running.clone();
        let state = server.state.clone();
        let fingerprint = server
            .credentials()
            .current()
            .identity
            .fingerprint
            .to_base64url();
        // the [INFORMATION] the page was last written with
        let written = Mutex::new(running.information.clone());
        hooks.push(Arc::new(move |new: &Config| {
            let mut last = lock(&written);
            if new.information == *last {
                return None;
            }
            // the page shows the running settings with the new [INFORMATION]
            let mut c = crate::server::onion::web_config(&running).into_owned();
            c.information = new.information.clone();
            let onion = state.onion_address.get().cloned();
            let info = crate::web::PageInfo::from_config(&c, &fingerprint, onion);
            Some(match crate::web::page::generate(&root, &info) {
                Ok(()) => {
                    *last = new.information.clone();
                    "web page regenerated".to_string()
                }
                Err(e) => {
                    tracing::warn!(
                        "SIGHUP: cannot rewrite the web page in {}: {e}",
                        root.display()
                    );
                    "web page kept (see warning)".to_string()
                }
            })
        }));
    }
    hooks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Paths;

    fn cfg(text: &str) -> Config {
        Config::parse(text, Paths::new("/c", "/l")).expect("valid")
    }

    #[test]
    fn live_settings_need_no_restart() {
        let old = cfg(
            "[AUTH]\ncontrol_port_admin_password = a\n[INFORMATION]\nsource_code = https://a\n",
        );
        let new = cfg(
            "[AUTH]\ncontrol_port_admin_password = b\n[INFORMATION]\nsource_code = https://b\n",
        );
        assert!(restart_needed(&old, &new).is_empty());
    }

    #[test]
    fn restart_settings_are_named() {
        let old = cfg("[TRANSPORT]\nport = 5223\n[STORE_LOG]\nenable = on\n");
        let new = cfg(
            "[TRANSPORT]\nport = 5224\n[STORE_LOG]\nenable = off\n[WEB]\nhttps = 443\n[PROXY]\nown_server_domains = example.com\n",
        );
        assert_eq!(
            restart_needed(&old, &new),
            vec!["[TRANSPORT] port", "[STORE_LOG]", "[PROXY]", "[WEB] https"]
        );
    }
}
