//! RSLV (v20): name resolution, direct or forwarded inside RFWD, as the reference's
//! `processCommand` and `processForwardedCommand` handle it. The core counts the request and
//! answers `ERR NAME NO_RESOLVER` when the names role is off; otherwise the resolution is a
//! [`Job::Resolve`] that the session runs off the read loop (`server::names`).

use std::sync::atomic::Ordering;

use super::relay::FwdSeal;
use super::{Core, Effects, Job, Outgoing};
use crate::protocol::errors::{ErrorType, NameError};
use crate::protocol::names::SimplexDomain;
use crate::protocol::response::BrokerMsg;

/// Where a resolution's answer goes: straight to the client, or sealed in the RRES of the
/// RFWD that carried it.
#[derive(Debug)]
pub enum ResolveAnswer {
    /// A direct RSLV: `RNAME`/`ERR NAME` with this correlation ID.
    Direct {
        /// The RSLV's correlation ID.
        corr_id: Vec<u8>,
    },
    /// An RSLV inside RFWD: the inner answer is sealed into an RRES for the proxy.
    Forwarded {
        /// The RFWD's correlation ID (the proxy's).
        rfwd_corr: Vec<u8>,
        /// The inner RSLV's correlation ID (the client's).
        inner_corr: Vec<u8>,
        /// The keys that seal the inner answer.
        seal: FwdSeal,
    },
}

impl ResolveAnswer {
    /// The transmission that carries `msg` (the resolver's answer) to the connection.
    pub fn answer(&self, msg: BrokerMsg) -> Outgoing {
        match self {
            ResolveAnswer::Direct { corr_id } => Outgoing::new(corr_id, &[], msg),
            ResolveAnswer::Forwarded {
                rfwd_corr,
                inner_corr,
                seal,
            } => Outgoing::new(rfwd_corr, &[], seal.rres(inner_corr, &[], &msg)),
        }
    }
}

impl Core {
    /// Count one RSLV; `Err` is the immediate `ERR NAME NO_RESOLVER` when the role is off.
    pub(super) fn rslv_admit(&self) -> Result<(), ErrorType> {
        let st = &self.stats.rslv;
        st.reqs.inc();
        if self.names_enabled.load(Ordering::Relaxed) {
            Ok(())
        } else {
            st.disabled.inc();
            Err(ErrorType::Name(NameError::NoResolver))
        }
    }

    /// A direct RSLV: refused now, or resolved by a job.
    pub(super) fn rslv(&self, corr: &[u8], domain: SimplexDomain, fx: &mut Effects) {
        match self.rslv_admit() {
            Err(e) => fx.err(corr, &[], e),
            Ok(()) => fx.jobs.push(Job::Resolve {
                domain,
                answer: ResolveAnswer::Direct {
                    corr_id: corr.to_vec(),
                },
            }),
        }
    }
}
