//! The `spanglish` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

/// glibc's allocator keeps the 19 MiB of a freed password hash in the heap
/// it came from (its mmap threshold rises to the largest block freed), so
/// after a burst of sign-ins the server stayed 120 MB above idle; mimalloc
/// gives such blocks back or reuses them, at no measurable cost in speed
/// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    spanglish::cli::run().await
}
