//! Command line: `init`, `start`, `cert`, `delete` with the reference's flags (being written).

/// Entry point of the binary (placeholder until the CLI lands).
pub fn main() -> anyhow::Result<()> {
    anyhow::bail!("the command line is not written yet")
}
