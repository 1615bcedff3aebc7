use clap::Parser;

// Forward passes allocate and free the same large activation buffers over and over; jemalloc hands the
// freed pages back out instead of returning them to the OS and faulting them in again.
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Keep freed pages for reuse rather than purging them: faulting a pass's activations back in costs
/// it about a tenth of its time (even a 60 s decay purges too eagerly). The process keeps its peak
/// footprint, which is what the peak-memory figures measure anyway.
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static JEMALLOC_CONF: &[u8] = b"dirty_decay_ms:-1,muzzy_decay_ms:-1\0";

fn main() {
    // Rust ignores SIGPIPE, which turns a closed pipe (`loupe ... | head`) into a panic on the next
    // print. Command-line tools should just stop, as the default action does.
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL is always valid.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = loupe::cli::Cli::parse();
    if let Err(e) = cli.run() {
        // One line, the whole cause chain: what failed and why.
        eprintln!("loupe: {e:#}");
        std::process::exit(1);
    }
}
