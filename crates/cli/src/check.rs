//! `conductor check`.

use clap::Args;

/// Arguments of `conductor check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy file.
    #[arg(long)]
    pub policy: std::path::PathBuf,
}

pub fn run(args: CheckArgs) -> u8 {
    let _ = args;
    crate::exit::SOFTWARE
}
