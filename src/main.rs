//! The `vipd` binary: everything is in the library; see `cli`.

fn main() -> std::process::ExitCode {
    vipd::cli::main()
}
