fn main() -> std::process::ExitCode {
    hdsgd::cli::main()
}
