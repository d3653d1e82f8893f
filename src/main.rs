fn main() {
    std::process::exit(oada_gateway::cli::main());
}
