//! `smp-server self-update [--check] [--yes] [--rollback] [--version TAG]`: install the newest
//! (or a pinned) signed release by hand, or put back the binary the last update replaced.

use std::io::IsTerminal;

use super::args::SelfUpdateArgs;
use super::console::Console;
use super::CliError;
use crate::config::{Config, Paths, Update};
use crate::updates::{source_and_keys, VERSION};

fn fail(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Message(format!(
        "Error: {what}: {e}\nThe installed binary was not changed."
    ))
}

fn settings(paths: &Paths) -> Result<Update, CliError> {
    if paths.ini_file().exists() {
        Ok(Config::load_from(paths.clone())?.update)
    } else {
        Ok(Update::default())
    }
}

fn this_binary() -> Result<std::path::PathBuf, CliError> {
    std::env::current_exe().map_err(|e| CliError::io("finding this binary", e))
}

/// Run the command.
pub fn run(args: SelfUpdateArgs, paths: &Paths) -> Result<(), CliError> {
    init_tracing();
    let dest = this_binary()?;
    if args.rollback {
        smp_updater::rollback(&dest).map_err(|e| fail("rollback failed", e))?;
        println!(
            "Restored the previous binary at {}; restart the server (e.g. systemctl restart smp-server).",
            dest.display()
        );
        return Ok(());
    }
    let u = settings(paths)?;
    let (source, keys) = source_and_keys(&u).map_err(|e| fail("cannot update", e))?;
    println!(
        "smp-server v{VERSION} ({}), releases of {} at {}",
        source.target, source.repository, source.api_url
    );
    if args.check {
        println!("Trusted release keys: {}", keys.describe().join(", "));
    }
    let available = match args.version.as_deref() {
        Some(tag) => {
            let a = smp_updater::check_version(&source, tag)
                .map_err(|e| fail(&format!("cannot install release {tag}"), e))?;
            println!("Release v{} found (running v{VERSION}).", a.version);
            a
        }
        None => match smp_updater::check(&source) {
            Ok(a) => {
                println!("A newer release is available: v{}", a.version);
                a
            }
            Err(e @ smp_updater::UpdateError::NotNewer { .. }) => {
                println!("{e}");
                return Ok(());
            }
            Err(e) => return Err(fail("cannot update", e)),
        },
    };
    if args.check {
        return Ok(());
    }
    if !args.yes {
        let answer = Console::stdin().ask(&format!(
            "Install v{} over {}? (y/N): ",
            available.version,
            dest.display()
        ))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(CliError::Aborted("Update cancelled.".into()));
        }
    }
    let progress = if std::io::stderr().is_terminal() {
        smp_updater::Progress::Bar
    } else {
        smp_updater::Progress::Log
    };
    let verified = smp_updater::download_and_verify(&available, &keys, progress)
        .map_err(|e| fail("update refused", e))?;
    println!(
        "Signature of {} verified (key {}).",
        available.asset, verified.key_index
    );
    smp_updater::install_binary(&verified, &dest).map_err(|e| fail("update failed", e))?;
    println!(
        "Installed smp-server v{} at {} (previous binary: {}).\nRestart the server to run it (e.g. systemctl restart smp-server); `smp-server self-update --rollback` undoes the update.",
        available.version,
        dest.display(),
        smp_updater::previous_path(&dest).display()
    );
    Ok(())
}

fn init_tracing() {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter};
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
