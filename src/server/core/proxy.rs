//! Proxy commands (the sender's side of private routing): PRXY and PFWD.
//!
//! The core decides whether the proxy may be used (`[PROXY]`, `create_password`) and hands the
//! network work to the session as a [`Job`]; `server::proxy_jobs` runs it and answers.

use super::{Core, Effects, Job, ProxyJob};
use crate::crypto::keys::PublicKey;
use crate::protocol::command::SmpServerRef;
use crate::protocol::errors::{ErrorType, ProxyError};
use crate::protocol::version::Version;

impl Core {
    /// PRXY: a session with a destination relay, if this client may use the proxy.
    pub(super) fn prxy(
        &self,
        corr: &[u8],
        ent: &[u8],
        srv: SmpServerRef,
        auth: Option<Vec<u8>>,
        fx: &mut Effects,
    ) {
        let set = &self.settings;
        let allowed = set.allow_proxy
            && set
                .create_password
                .as_ref()
                .is_none_or(|p| auth.as_ref() == Some(p));
        if !allowed {
            return fx.err(corr, ent, ErrorType::Proxy(ProxyError::BasicAuth));
        }
        let own = srv
            .hosts
            .first()
            .is_some_and(|h| super::super::counting::is_own_server(&set.own_server_domains, h));
        fx.jobs.push(Job::Proxy(ProxyJob::RelaySession {
            corr_id: corr.to_vec(),
            entity_id: ent.to_vec(),
            server: srv,
            own,
        }));
    }

    /// PFWD: forward through an existing relay session (checked when the job runs).
    pub(super) fn pfwd(
        &self,
        corr: &[u8],
        ent: &[u8],
        version: Version,
        key: PublicKey,
        body: Vec<u8>,
        fx: &mut Effects,
    ) {
        fx.jobs.push(Job::Proxy(ProxyJob::Forward {
            corr_id: corr.to_vec(),
            session_id: ent.to_vec(),
            version,
            key,
            body,
        }));
    }
}
