//! The control port's line protocol (the reference's `ControlProtocol`): parsing only, no I/O.

use base64::Engine;

use crate::protocol::errors::{BlockingInfo, BlockingReason};

/// Role granted by `auth` (the reference's `CPClientRole`; shown by its constructor names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not authenticated.
    None,
    /// `control_port_user_password`.
    User,
    /// `control_port_admin_password`.
    Admin,
}

impl Role {
    /// The name the reference prints.
    pub fn name(self) -> &'static str {
        match self {
            Role::None => "CPRNone",
            Role::User => "CPRUser",
            Role::Admin => "CPRAdmin",
        }
    }
}

/// One control port command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCommand {
    /// `auth <password>`.
    Auth(String),
    /// `suspend` (not implemented, as in the reference).
    Suspend,
    /// `resume` (not implemented, as in the reference).
    Resume,
    /// `clients`.
    Clients,
    /// `stats`.
    Stats,
    /// `stats-rts`: runtime statistics.
    StatsRts,
    /// `threads`.
    Threads,
    /// `sockets`.
    Sockets,
    /// `socket-threads`.
    SocketThreads,
    /// `server-info`.
    ServerInfo,
    /// `delete <sender ID>`.
    Delete(Vec<u8>),
    /// `status <sender ID>`.
    Status(Vec<u8>),
    /// `block <sender ID> [reason=spam|content[,notice={...}]]`.
    Block(Vec<u8>, BlockingInfo),
    /// `unblock <sender ID>`.
    Unblock(Vec<u8>),
    /// `save`.
    Save,
    /// `help`.
    Help,
    /// `quit`.
    Quit,
    /// An empty line.
    Skip,
}

impl ControlCommand {
    /// The command word, for logs (never the arguments: they hold IDs and passwords).
    pub fn word(&self) -> &'static str {
        match self {
            ControlCommand::Auth(_) => "auth",
            ControlCommand::Suspend => "suspend",
            ControlCommand::Resume => "resume",
            ControlCommand::Clients => "clients",
            ControlCommand::Stats => "stats",
            ControlCommand::StatsRts => "stats-rts",
            ControlCommand::Threads => "threads",
            ControlCommand::Sockets => "sockets",
            ControlCommand::SocketThreads => "socket-threads",
            ControlCommand::ServerInfo => "server-info",
            ControlCommand::Delete(_) => "delete",
            ControlCommand::Status(_) => "status",
            ControlCommand::Block(..) => "block",
            ControlCommand::Unblock(_) => "unblock",
            ControlCommand::Save => "save",
            ControlCommand::Help => "help",
            ControlCommand::Quit => "quit",
            ControlCommand::Skip => "",
        }
    }
}

/// A queue ID as operators paste it: base64url (padding optional; standard alphabet accepted).
pub fn parse_queue_id(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("expected a queue ID (the sender ID in base64url)".into());
    }
    let norm: String = s
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(norm)
        .map_err(|_| format!("bad queue ID {s:?}: expected base64url"))
}

/// Parse one line (without the line end).
pub fn parse(line: &str) -> Result<ControlCommand, String> {
    let line = line.trim_end_matches('\r');
    let (word, rest) = match line.split_once(' ') {
        Some((w, r)) => (w, Some(r)),
        None => (line, None),
    };
    let no_args = |c: ControlCommand| match rest {
        Some(r) if !r.trim().is_empty() => Err(format!("{word} takes no arguments")),
        _ => Ok(c),
    };
    let arg = || rest.map(str::trim).filter(|r| !r.is_empty());
    match word {
        "auth" => arg()
            .map(|p| ControlCommand::Auth(p.to_string()))
            .ok_or_else(|| "usage: auth <password>".to_string()),
        "suspend" => no_args(ControlCommand::Suspend),
        "resume" => no_args(ControlCommand::Resume),
        "clients" => no_args(ControlCommand::Clients),
        "stats" => no_args(ControlCommand::Stats),
        "stats-rts" => no_args(ControlCommand::StatsRts),
        "threads" => no_args(ControlCommand::Threads),
        "sockets" => no_args(ControlCommand::Sockets),
        "socket-threads" => no_args(ControlCommand::SocketThreads),
        "server-info" => no_args(ControlCommand::ServerInfo),
        "delete" => Ok(ControlCommand::Delete(parse_queue_id(
            arg().ok_or("usage: delete <sender ID>")?,
        )?)),
        "status" => Ok(ControlCommand::Status(parse_queue_id(
            arg().ok_or("usage: status <sender ID>")?,
        )?)),
        "unblock" => Ok(ControlCommand::Unblock(parse_queue_id(
            arg().ok_or("usage: unblock <sender ID>")?,
        )?)),
        "block" => {
            let a = arg().ok_or("usage: block <sender ID> [reason=spam|content]")?;
            let (id, info) = match a.split_once(' ') {
                Some((id, info)) => (
                    id,
                    BlockingInfo::parse(info.trim().as_bytes()).map_err(|_| {
                        format!(
                            "bad blocking info {:?}: use reason=spam or reason=content",
                            info.trim()
                        )
                    })?,
                ),
                // ours: the reason may be left out, meaning spam
                None => (
                    a,
                    BlockingInfo {
                        reason: BlockingReason::Spam,
                        notice: None,
                    },
                ),
            };
            Ok(ControlCommand::Block(parse_queue_id(id)?, info))
        }
        "save" => no_args(ControlCommand::Save),
        "help" => no_args(ControlCommand::Help),
        "quit" => no_args(ControlCommand::Quit),
        "" => Ok(ControlCommand::Skip),
        _ => Err(format!(
            "unknown command {word:?}: 'help' lists the supported commands"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(parse("stats\r"), Ok(ControlCommand::Stats));
        assert_eq!(
            parse("auth secret"),
            Ok(ControlCommand::Auth("secret".into()))
        );
        assert_eq!(parse(""), Ok(ControlCommand::Skip));
        assert_eq!(
            parse("delete AQID"),
            Ok(ControlCommand::Delete(vec![1, 2, 3]))
        );
        let ControlCommand::Block(id, info) = parse("block AQID reason=content").expect("block")
        else {
            panic!("block")
        };
        assert_eq!(id, vec![1, 2, 3]);
        assert_eq!(info.reason, BlockingReason::Content);
        assert!(matches!(parse("block AQID"), Ok(ControlCommand::Block(..))));
        assert!(parse("block AQID reason=nonsense").is_err());
        assert!(parse("frobnicate").is_err());
        assert!(parse("delete").is_err());
        assert!(parse("delete !!").is_err());
        assert!(parse("stats now").is_err());
        assert!(parse("auth").is_err());
    }
}
