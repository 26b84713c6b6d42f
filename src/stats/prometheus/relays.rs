//! The Relays group: the proxy's sessions and forwarded messages.

use super::writer::W;
use crate::stats::counters::{ProxyStats, ServerStats};

/// Sessions with and messages forwarded to other servers.
pub(super) fn relays_group(w: &mut W, st: &ServerStats) {
    w.section("Relays", true);
    relays(w, "sessions", &st.p_relays, &st.p_relays_own, "pRelays");
    relays(
        w,
        "messages",
        &st.p_msg_fwds,
        &st.p_msg_fwds_own,
        "pMsgFwds",
    );
    w.one(
        "simplex_smp_relay_messages_received",
        "Relay messages statistics.",
        "counter",
        st.p_msg_fwds_recv.get(),
        "pMsgFwdsRecv",
    );
}

fn relays(w: &mut W, kind: &str, all: &ProxyStats, own: &ProxyStats, key: &str) {
    let sessions = kind == "sessions";
    let pick = |a: &'static str, b: &'static str| if sessions { a } else { b };
    let base = format!("simplex_smp_relay_{kind}");
    let req = format!("{base}_requests");
    w.head(
        &req,
        pick(
            "Session requests through relay.",
            "Message requests sent through relay.",
        ),
        "counter",
    );
    w.sample(
        &req,
        "source=\"all\"",
        all.requests.get(),
        &format!("{key}_pRequests"),
    );
    w.sample(
        &req,
        "source=\"own\"",
        own.requests.get(),
        &format!("{key}Own_pRequests"),
    );
    w.out.push('\n');
    let ok = format!("{base}_successes");
    w.head(
        &ok,
        pick(
            "Successful session events through relay.",
            "Successful messages sent through relay.",
        ),
        "counter",
    );
    w.sample(
        &ok,
        "source=\"all\"",
        all.successes.get(),
        &format!("{key}_pSuccesses"),
    );
    w.sample(
        &ok,
        "source=\"own\"",
        own.successes.get(),
        &format!("{key}Own_pSuccesses"),
    );
    w.out.push('\n');
    let e = format!("{base}_errors");
    w.head(
        &e,
        pick(
            "Error session events through relay.",
            "Error events with messages sent through relay.",
        ),
        "counter",
    );
    for (src, p, k) in [
        ("all", all, key.to_string()),
        ("own", own, format!("{key}Own")),
    ] {
        w.sample(
            &e,
            &format!("source=\"{src}\",type=\"connect\""),
            p.errors_connect.get(),
            &format!("{k}_pErrorsConnect"),
        );
        w.sample(
            &e,
            &format!("source=\"{src}\",type=\"compat\""),
            p.errors_compat.get(),
            &format!("{k}_pErrorsCompat"),
        );
        w.sample(
            &e,
            &format!("source=\"{src}\",type=\"other\""),
            p.errors_other.get(),
            &format!("{k}_pErrorsOther"),
        );
    }
    w.out.push('\n');
}
