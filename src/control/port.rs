//! The control port: a line protocol on 127.0.0.1 for the operator (`nc 127.0.0.1 5224`),
//! with the reference's greeting, roles, commands and answers. A bad line gets an `error:`
//! answer; nothing a client sends can stop the server.

use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::protocol::{parse, ControlCommand, Role};
use super::reports::runtime_counts;
use crate::protocol::command::{Party, QueueMode};
use crate::protocol::errors::{BlockingInfo, BlockingReason, ErrorType};
use crate::protocol::response::BrokerMsg;
use crate::server::state::ServerState;
use crate::store::QueueStatus;
use crate::sync::lock;

/// The greeting sent on connect.
pub const GREETING: &str = "SMP server control port\n'help' for supported commands\n";

/// Longest accepted line; longer input is answered with an error and the connection closed.
const MAX_LINE: usize = 4096;

/// Settings that `SIGHUP` may change while the port runs.
#[derive(Debug, Clone, Default)]
pub struct ControlAuth {
    /// `control_port_admin_password`.
    pub admin: Option<String>,
    /// `control_port_user_password`.
    pub user: Option<String>,
    /// `daily_block_queue_quota`: 0 = no limit.
    pub daily_block_quota: i32,
    /// The `[INFORMATION]` section as `server-info` shows it (reloaded on SIGHUP).
    pub information: String,
}

/// What the control port works on.
pub struct ControlContext {
    /// The running server's state.
    pub state: Arc<ServerState>,
    /// Passwords and quota (replaced on reload).
    pub auth: RwLock<ControlAuth>,
    /// `save`: persist what can be persisted now.
    pub save: Box<dyn Fn() -> Result<(), String> + Send + Sync>,
}

fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn show_info(i: &BlockingInfo) -> String {
    let reason = match i.reason {
        BlockingReason::Spam => "BRSpam",
        BlockingReason::Content => "BRContent",
    };
    let notice = match &i.notice {
        None => "Nothing".to_string(),
        Some(n) => format!(
            "Just (ClientNotice {{ttl = {}}})",
            n.ttl.map_or("Nothing".to_string(), |t| format!("Just {t}"))
        ),
    };
    format!("BlockingInfo {{reason = {reason}, notice = {notice}}}")
}

fn show_status(s: &QueueStatus) -> String {
    match s {
        QueueStatus::Active => "EntityActive".into(),
        QueueStatus::Off => "EntityOff".into(),
        QueueStatus::Blocked(i) => format!("EntityBlocked ({})", show_info(i)),
    }
}

fn show_err(e: &ErrorType) -> String {
    let mut enc = crate::protocol::encoding::Encoder::new();
    e.encode(&mut enc);
    String::from_utf8_lossy(&enc.finish()).into_owned()
}

pub(super) fn time_text(secs: i64) -> String {
    crate::stats::period::iso_time(secs)
}

impl ControlContext {
    fn sender_queue(&self, sid: &[u8]) -> Result<crate::store::QueueRef, ErrorType> {
        let st = self.state.store.as_ref();
        st.get_queue(Party::Sender, sid)
            .or_else(|| st.get_queue(Party::LinkClient, sid))
            .ok_or(ErrorType::Auth)
    }

    /// Run one command and return the answer (each line ends with `\n`).
    pub fn execute(&self, role: &mut Role, cmd: ControlCommand) -> String {
        let mut o = String::new();
        let user_ok = *role != Role::None;
        let admin_ok = *role == Role::Admin;
        let denied = |o: &mut String| {
            tracing::warn!("unauthorized control port command");
            o.push_str("AUTH\n");
        };
        match cmd {
            ControlCommand::Auth(pw) => {
                let a = self.auth.read().unwrap_or_else(|e| e.into_inner()).clone();
                let new_role = if a.admin.as_deref().is_some_and(|p| same(p, &pw)) {
                    Role::Admin
                } else if a.user.as_deref().is_some_and(|p| same(p, &pw)) {
                    Role::User
                } else {
                    Role::None
                };
                if *role == Role::None {
                    *role = new_role;
                    let _ = writeln!(o, "Current role is {}", new_role.name());
                } else {
                    let tail = if *role == new_role {
                        ""
                    } else {
                        ", start new session to change."
                    };
                    let _ = writeln!(o, "Current role is {}{tail}", role.name());
                }
            }
            ControlCommand::Suspend | ControlCommand::Resume if !admin_ok => denied(&mut o),
            ControlCommand::Suspend => o.push_str("suspend not implemented\n"),
            ControlCommand::Resume => o.push_str("resume not implemented\n"),
            ControlCommand::Clients if !admin_ok => denied(&mut o),
            ControlCommand::Clients => self.clients(&mut o),
            ControlCommand::Stats if !user_ok => denied(&mut o),
            ControlCommand::Stats => self.stats(&mut o, admin_ok),
            // no role needed, as the reference's `stats-rts`
            ControlCommand::StatsRts => self.runtime(&mut o),
            ControlCommand::Threads if !admin_ok => denied(&mut o),
            ControlCommand::Threads => {
                let (tasks, workers) = runtime_counts();
                let _ = writeln!(o, "Threads: {tasks}");
                let _ = writeln!(o, "Worker threads: {workers}");
            }
            ControlCommand::Sockets if !user_ok => denied(&mut o),
            ControlCommand::Sockets => {
                for (port, s) in lock(&self.state.stats.sockets).iter() {
                    let (a, c) = (s.accepted.get(), s.closed.get());
                    let _ = write!(
                        o,
                        "Sockets for port {port}:\naccepted: {a}\nclosed: {c}\nactive: {}\nleaked: 0\n",
                        a - c
                    );
                }
            }
            ControlCommand::SocketThreads if !admin_ok => denied(&mut o),
            ControlCommand::SocketThreads => {
                let mut ids: Vec<u64> = lock(&self.state.clients).keys().copied().collect();
                ids.sort_unstable();
                for id in ids {
                    let _ = writeln!(o, "smp,{id},task,running,client {id}");
                }
            }
            ControlCommand::ServerInfo if !user_ok => denied(&mut o),
            ControlCommand::ServerInfo => self.server_info(&mut o, admin_ok),
            ControlCommand::Delete(_) if !admin_ok => denied(&mut o),
            ControlCommand::Delete(sid) => self.delete(&mut o, &sid),
            ControlCommand::Status(_) if !user_ok => denied(&mut o),
            ControlCommand::Status(sid) => match self.sender_queue(&sid).and_then(|q| q.rec()) {
                Err(e) => {
                    let _ = writeln!(o, "error: {}", show_err(&e));
                }
                Ok(r) => {
                    let updated = r
                        .updated_at
                        .get()
                        .map_or("Nothing".to_string(), |t| format!("Just (RoundedSystemTime {t})"));
                    let mode = match r.queue_mode {
                        None => "Nothing",
                        Some(QueueMode::Messaging) => "Just QMMessaging",
                        Some(QueueMode::Contact) => "Just QMContact",
                    };
                    let _ = writeln!(
                        o,
                        "status: {}, updatedAt: {updated}, queueMode: {mode}",
                        show_status(&r.status)
                    );
                }
            },
            ControlCommand::Block(..) if !user_ok => denied(&mut o),
            ControlCommand::Block(sid, info) => self.block(&mut o, &sid, info),
            ControlCommand::Unblock(_) if !user_ok => denied(&mut o),
            ControlCommand::Unblock(sid) => self.unblock(&mut o, &sid),
            ControlCommand::Save if !admin_ok => denied(&mut o),
            ControlCommand::Save => {
                o.push_str("saving server state...\n");
                match (self.save)() {
                    Ok(()) => o.push_str("server state saved!\n"),
                    Err(e) => {
                        let _ = writeln!(o, "error: {e}");
                    }
                }
            }
            ControlCommand::Help => o.push_str(
                "commands: stats, stats-rts, clients, sockets, socket-threads, threads, server-info, delete, save, help, quit\n",
            ),
            ControlCommand::Quit | ControlCommand::Skip => {}
        }
        o
    }

    fn delete(&self, o: &mut String, sid: &[u8]) {
        let r = self
            .sender_queue(sid)
            .and_then(|q| self.state.store.delete_queue(&q));
        match r {
            Err(e) => {
                let _ = writeln!(o, "error: {}", show_err(&e));
            }
            Ok((rec, n)) => {
                self.state.stats.queue_deleted(rec.sender_key.is_some());
                if let Some(c) = self.state.core.subs.take_queue(&rec.recipient_id) {
                    lock(&c.subs).remove(&rec.recipient_id[..]);
                }
                if let Some(nc) = &rec.notifier {
                    lock(&self.state.core.pending_ntfs).remove(&nc.notifier_id);
                }
                let _ = writeln!(o, "ok, {n} messages deleted");
            }
        }
    }

    fn block(&self, o: &mut String, sid: &[u8], info: BlockingInfo) {
        let stats = &self.state.stats;
        let quota = self
            .auth
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .daily_block_quota;
        if quota != 0 && stats.q_blocked.get() >= quota as i64 {
            let _ = writeln!(o, "error: reached limit of {quota} queues blocked daily");
            return;
        }
        let q = match self.sender_queue(sid) {
            Ok(q) => q,
            Err(e) => {
                let _ = writeln!(o, "error: {}", show_err(&e));
                return;
            }
        };
        let rec = match q.rec() {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(o, "error: {}", show_err(&e));
                return;
            }
        };
        let new = QueueStatus::Blocked(Box::new(info.clone()));
        if rec.status != new {
            if let Err(e) = self.state.store.set_status(&q, new.clone()) {
                let _ = writeln!(o, "error: {}", show_err(&e));
                return;
            }
            if let Some(c) = self.state.core.subs.queue(&rec.recipient_id) {
                self.state.deliver(vec![crate::server::core::Delivery {
                    to: c.id,
                    item: crate::server::core::Outgoing::event(
                        &rec.recipient_id,
                        BrokerMsg::Err(ErrorType::Blocked(info)),
                    ),
                    ntf: None,
                }]);
            }
        }
        if rec.status == QueueStatus::Active {
            stats.q_blocked.inc();
            let _ = writeln!(o, "ok, queue blocked: {}", show_status(&new));
        } else {
            let _ = writeln!(o, "ok, already inactive: {}", show_status(&new));
        }
    }

    fn unblock(&self, o: &mut String, sid: &[u8]) {
        let r = self.sender_queue(sid).and_then(|q| q.rec().map(|r| (q, r)));
        match r {
            Err(e) => {
                let _ = writeln!(o, "error: {}", show_err(&e));
            }
            Ok((q, rec)) => match rec.body.status {
                QueueStatus::Blocked(info) => {
                    match self.state.store.set_status(&q, QueueStatus::Active) {
                        Ok(()) => {
                            let _ = writeln!(
                                o,
                                "ok, queue unblocked, reason to block was: {}",
                                show_info(&info)
                            );
                        }
                        Err(e) => {
                            let _ = writeln!(o, "error: {}", show_err(&e));
                        }
                    }
                }
                QueueStatus::Active => o.push_str("ok, queue was active\n"),
                QueueStatus::Off => o.push_str("error, queue is inactive\n"),
            },
        }
    }
}

/// Accept control connections until `shutdown`, at most `limits` at once.
pub async fn serve(
    ctx: Arc<ControlContext>,
    listener: TcpListener,
    limits: Arc<crate::net::ConnLimits>,
    shutdown: CancellationToken,
) {
    let sd = shutdown.clone();
    crate::net::serve_accepts(
        "control port",
        listener,
        limits,
        shutdown,
        move |sock, _, permit| {
            let ctx = ctx.clone();
            let sd = sd.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = sd.cancelled() => {}
                    r = session(ctx, sock) => {
                        if let Err(e) = r {
                            tracing::debug!("control port connection: {e}");
                        }
                    }
                }
                drop(permit);
            });
        },
    )
    .await;
}

async fn session(ctx: Arc<ControlContext>, sock: tokio::net::TcpStream) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(GREETING.as_bytes()).await?;
    let mut role = Role::None;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if buf.last() != Some(&b'\n') && buf.len() > MAX_LINE {
            w.write_all(b"error: line too long\n").await?;
            return Ok(());
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        let answer = match parse(line) {
            Ok(ControlCommand::Quit) => return Ok(()),
            Ok(cmd) => {
                if !matches!(
                    cmd,
                    ControlCommand::Auth(_) | ControlCommand::Help | ControlCommand::Skip
                ) {
                    tracing::info!("control port command: {}", cmd.word());
                }
                let c = ctx.clone();
                let mut rl = role;
                let (ans, rl) = tokio::task::spawn_blocking(move || {
                    let a = c.execute(&mut rl, cmd);
                    (a, rl)
                })
                .await
                .unwrap_or_else(|_| ("error: internal error\n".into(), role));
                role = rl;
                ans
            }
            Err(e) => format!("error: {e}\n"),
        };
        w.write_all(answer.as_bytes()).await?;
    }
}
