// mimalloc instead of the system allocator: a gateway call makes about a thousand small
// allocations, and glibc's malloc/free were 16 % of serve's instructions per call;
// with mimalloc serve's 64-client throughput rose 35-43 % (crates/serve/BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    conductor_cli::main()
}
