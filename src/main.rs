//! `smp-server` binary: parse the command line and hand over to the library.

fn main() -> std::process::ExitCode {
    smp_server::cli::main()
}
