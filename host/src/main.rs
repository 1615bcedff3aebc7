use clap::Parser;

fn main() {
    let cli = loupe::cli::Cli::parse();
    if let Err(e) = cli.run() {
        // One line, the whole cause chain: what failed and why.
        eprintln!("loupe: {e:#}");
        std::process::exit(1);
    }
}
