fn main() -> std::process::ExitCode {
    reagent::cli::main()
}
