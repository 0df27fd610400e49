fn main() -> std::process::ExitCode {
    mailsec_operator::cli::main()
}
