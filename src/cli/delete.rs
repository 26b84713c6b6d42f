//! `smp-server delete`: remove the configuration and log directories.

use std::path::Path;

use super::args::DeleteArgs;
use super::console::Console;
use super::CliError;
use crate::config::Paths;

/// Run `delete`.
pub fn run(args: DeleteArgs, paths: &Paths) -> Result<(), CliError> {
    if !args.yes {
        Console::stdin().confirm(
            "WARNING: deleting the server will make all queues inaccessible, because the server identity (certificate fingerprint) will change.\nTHIS CANNOT BE UNDONE!",
            "Server NOT deleted",
        )?;
    }
    remove_dir(&paths.cfg_dir)?;
    remove_dir(&paths.log_dir)?;
    println!("Deleted configuration and log files");
    Ok(())
}

fn remove_dir(dir: &Path) -> Result<(), CliError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::io(format!("deleting {}", dir.display()), e)),
    }
}
