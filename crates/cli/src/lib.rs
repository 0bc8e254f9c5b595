//! The `conductor` command-line tool: glue between the crates, nothing more.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod audit_cmd;
pub mod check;
pub mod policy_cmd;
pub mod resolve;
pub mod world;
pub mod wrap_cmd;

/// Exit statuses (DESIGN.md, "Command line").
pub mod exit {
    pub const ALLOW: u8 = 0;
    pub const OK: u8 = 0;
    pub const DENY: u8 = 1;
    pub const FAILED: u8 = 1;
    pub const APPROVE: u8 = 2;
    pub const USAGE: u8 = 64;
    pub const DATA: u8 = 65;
    pub const SOFTWARE: u8 = 70;
    pub const IO: u8 = 74;
}

/// Conductor: a pre-authorization gate for AI agent tool calls.
///
/// Every call is asked four questions — may this agent call this tool; is the
/// destination in scope; is the data being sent appropriate; is the action allowed
/// for this role in this workflow — and every answer is recorded.
#[derive(Debug, Parser)]
#[command(
    name = "conductor",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decide requests against a policy and print the decisions.
    Check(check::CheckArgs),
    /// Validate and test policy files.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Inspect, verify and export the audit trail.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Run a stdio MCP server behind the gate.
    Wrap(wrap_cmd::WrapArgs),
}

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    ExitCode::from(run(cli))
}

/// Run a parsed command line and return its exit status.
pub fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Audit(cmd) => audit_cmd::run(cmd),
        Command::Wrap(args) => wrap_cmd::run(args),
    }
}
