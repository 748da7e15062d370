//! The `livestream` program: the command line (`cli::main`) with the counting
//! allocator installed, so `livestream bench` can show the per-frame path
//! allocates nothing.

#[global_allocator]
static ALLOC: livestream::bench::CountingAlloc = livestream::bench::CountingAlloc;

fn main() {
    std::process::exit(livestream::cli::main());
}
