//! `smp-server` binary: parse the command line and hand over to the library.

fn main() -> anyhow::Result<()> {
    smp_server::cli::main()
}
