//! Command line: `init`, `start`, `cert`, `delete` with the reference `smp-server`'s flags.
//!
//! Directories come from `SMP_SERVER_CFG_PATH` / `SMP_SERVER_LOG_PATH` (defaults
//! `/etc/opt/simplex`, `/var/opt/simplex`). As in the reference, messages for the operator and
//! errors go to standard output; the server's own logs go to standard error.

pub mod args;
mod cert;
mod check_config;
pub mod console;
pub mod database;
mod delete;
mod doctor;
mod init;
pub mod journal;
pub mod rts;
mod self_update;
mod start;

use std::process::ExitCode;

use clap::Parser;

pub use args::{Cli, Command};

use crate::config::{ConfigError, Paths};
use crate::crypto::CryptoError;

/// Everything that ends a command unsuccessfully.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A complete message for the operator (printed as is).
    #[error("{0}")]
    Message(String),
    /// The operator declined, or there was nobody to answer.
    #[error("{0}")]
    Aborted(String),
    /// The configuration file is wrong.
    #[error("Error in configuration: {0}")]
    Config(#[from] ConfigError),
    /// Keys or certificates could not be made or loaded.
    #[error("Error: {0}")]
    Crypto(#[from] CryptoError),
    /// A file or socket operation failed.
    #[error("Error {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("Error: server stopped: {0}")]
    Server(#[from] crate::server::ServerError),
    /// The server process stopped with an error.
    #[error("Error: server stopped: {0}")]
    App(#[from] crate::app::AppError),
}

impl CliError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CliError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Run a parsed command line with the given directories.
pub fn run(cli: Cli, paths: &Paths) -> Result<(), CliError> {
    if cli.version {
        println!("{}", console::version_text());
        return Ok(());
    }
    match cli.command {
        None => {
            // Unreachable with `arg_required_else_help`, kept for completeness.
            println!("Run `smp-server --help` for commands.");
            Ok(())
        }
        Some(Command::Init(a)) => init::run(*a, paths),
        Some(Command::Start(a)) => start::run(a, paths),
        Some(Command::Cert(a)) => cert::run(a, paths),
        Some(Command::Delete(a)) => delete::run(a, paths),
        Some(Command::Journal { cmd }) => journal::run(cmd, paths),
        Some(Command::SelfUpdate(a)) => self_update::run(a, paths),
        Some(Command::Database { cmd, table, db }) => database::run(cmd, &table, &db, paths),
        Some(Command::Doctor) => doctor::run(paths),
    }
}

/// Error unless the server was initialised.
pub(crate) fn require_initialized(paths: &Paths) -> Result<(), CliError> {
    let ini = paths.ini_file();
    if ini.exists() {
        Ok(())
    } else {
        Err(CliError::Message(format!(
            "Error: server is not initialized ({} does not exist).\nRun `smp-server init`.",
            ini.display()
        )))
    }
}

/// Entry point of the binary: parse the command line, run it, print any error.
pub fn main() -> ExitCode {
    // One process-wide rustls provider: with two compiled in (ring, and aws-lc-rs that some
    // dependency may pull), clients built without an explicit provider (ACME) would panic.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (args, rts) = rts::strip(std::env::args_os());
    if !rts.is_empty() {
        println!("{}", rts::notice(&rts));
    }
    let cli = Cli::parse_from(args);
    let paths = Paths::from_env();
    match run(cli, &paths) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("{e}");
            ExitCode::FAILURE
        }
    }
}
