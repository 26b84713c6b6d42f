//! Prompts and the status lines shared by several commands.

use std::io::{BufRead, Write};
use std::path::Path;

use super::CliError;
use crate::config::ServerAddress;

/// The version line, printed by `--version`, `init` and `start`.
pub fn version_line() -> String {
    format!("SMP server v{}", crate::updates::VERSION)
}

/// The git commit this binary was built from (`build.rs`), or `unknown`.
pub const COMMIT: &str = env!("SMP_SERVER_COMMIT");

/// What `--version` prints: the reference's first line (scripts compare it), then the commit,
/// so an operator can match a binary to its source and to a reproduced build.
pub fn version_text() -> String {
    format!("{}\ncommit {COMMIT}", version_line())
}

/// Reads answers from standard input.
pub struct Console<R: BufRead> {
    input: R,
}

impl Console<std::io::StdinLock<'static>> {
    /// A console on the process's standard input.
    pub fn stdin() -> Self {
        Console {
            input: std::io::stdin().lock(),
        }
    }
}

impl<R: BufRead> Console<R> {
    /// A console reading from `input` (tests).
    pub fn new(input: R) -> Self {
        Console { input }
    }

    /// Print `prompt` (no newline) and read one line without its line ending.
    /// End of input is an error: nobody is there to answer.
    pub fn ask(&mut self, prompt: &str) -> Result<String, CliError> {
        print!("{prompt}");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let n = self
            .input
            .read_line(&mut line)
            .map_err(|e| CliError::io("reading the answer", e))?;
        if n == 0 {
            println!();
            return Err(CliError::Aborted(
                "no answer (end of input); use -y to run without questions".into(),
            ));
        }
        Ok(line.trim_end_matches(['\n', '\r']).to_string())
    }

    /// A yes/no question with a default (`(Yn)` or `(yN)`), asked again on other answers.
    pub fn yes_no(&mut self, prompt: &str, default: bool) -> Result<bool, CliError> {
        let hint = if default { "(Yn)" } else { "(yN)" };
        loop {
            match self.ask(&format!("{prompt} {hint}: "))?.as_str() {
                "" => return Ok(default),
                "y" | "Y" => return Ok(true),
                "n" | "N" => return Ok(false),
                _ => println!("Please answer 'y' or 'n'."),
            }
        }
    }

    /// A destructive step: only an exact `Y` continues.
    pub fn confirm(&mut self, warning: &str, refused: &str) -> Result<(), CliError> {
        let answer = self.ask(&format!("{warning}\nContinue (Y/n): "))?;
        if answer == "Y" {
            Ok(())
        } else {
            Err(CliError::Aborted(refused.into()))
        }
    }
}

/// Version, fingerprint and address, as `init` and `start` print them.
pub fn print_service_info(fingerprint: &str, address: &ServerAddress) {
    println!("{}", version_line());
    println!("Fingerprint: {fingerprint}");
    println!("Server address: {address}");
}

/// The published source code, or a warning that none is set.
pub fn print_source_code(source_code: Option<&str>) {
    match source_code {
        Some(src) => println!("Server source code: {src}"),
        None => {
            println!("Warning: server source code is not specified.");
            println!("Add 'source_code' property to [INFORMATION] section of INI file.");
        }
    }
}

/// Advice to keep the CA key offline.
pub fn print_ca_key_advice(ca_key: &Path) {
    println!("----------");
    println!("Keep the CA private key somewhere safe and remove it from this server.");
    println!("If the server's TLS key is ever compromised, the CA key signs a new one");
    println!("(`smp-server cert`), keeping the same server identity and all connections.");
    println!("CA private key location:");
    println!("{}", ca_key.display());
    println!("----------");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let mut c = Console::new("\nmaybe\nn\nY\nyes\n".as_bytes());
        assert!(c.yes_no("q", true).expect("answer"));
        assert!(!c.yes_no("q", true).expect("answer"));
        assert!(c.confirm("w", "no").is_ok());
        assert!(matches!(c.confirm("w", "no"), Err(CliError::Aborted(_))));
        assert!(matches!(c.ask("eof"), Err(CliError::Aborted(_))));
    }

    #[test]
    fn version() {
        assert!(version_line().starts_with("SMP server v"));
    }
}
