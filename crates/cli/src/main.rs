fn main() -> std::process::ExitCode {
    conductor_cli::main()
}
