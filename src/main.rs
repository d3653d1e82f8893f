// mimalloc instead of glibc malloc: Pingora allocates and frees per request (header maps, buffers,
// tasks), and glibc's malloc/free were ~15% of the proxy's CPU under load (see README,
// "Performance").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(oada_gateway::cli::main());
}
