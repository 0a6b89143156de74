//! The `lapidary-integrator` binary: a thin shell over the library.

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

fn main() {
    let filter = EnvFilter::try_from_env("LAPIDARY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = lapidary_integrator::cli::Cli::parse();
    std::process::exit(lapidary_integrator::cli::run(cli));
}
