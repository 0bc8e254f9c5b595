//! `conductor policy validate|test`.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file.
    Validate { file: std::path::PathBuf },
}

pub fn run(cmd: PolicyCommand) -> u8 {
    let _ = cmd;
    crate::exit::SOFTWARE
}
