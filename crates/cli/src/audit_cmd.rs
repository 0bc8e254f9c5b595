//! `conductor audit verify|export|tail|query`.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain.
    Verify,
}

pub fn run(cmd: AuditCommand) -> u8 {
    let _ = cmd;
    crate::exit::SOFTWARE
}
