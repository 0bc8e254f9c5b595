//! `conductor wrap`.

use clap::Args;

#[derive(Debug, Args)]
pub struct WrapArgs {
    /// The policy file.
    #[arg(long)]
    pub policy: std::path::PathBuf,
}

pub fn run(args: WrapArgs) -> u8 {
    let _ = args;
    crate::exit::SOFTWARE
}
