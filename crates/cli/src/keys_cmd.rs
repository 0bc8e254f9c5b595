//! `conductor keys new --agent ID`: a new API key for `conductor serve`.
//!
//! INVARIANT: the key is printed once, on standard output, and kept nowhere; the
//! gateway file gets only its SHA-256 (the line printed on standard error, with how to
//! use it), so that the key can be piped into a secret store without the instructions.

use clap::{Args, Subcommand};

use crate::{CliError, exit};

/// `conductor keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new API key for an agent: the key on stdout (once), the line for
    /// `auth.api_keys` of the gateway file on stderr.
    #[command(
        after_help = "Examples:\n  conductor keys new --agent research-bot\n  \
                            conductor keys new --agent research-bot 2>/dev/null | pass insert -m conductor/research-bot"
    )]
    New(NewArgs),
}

/// Arguments of `conductor keys new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The agent id the key authenticates (as the policy names it).
    #[arg(long, value_name = "ID")]
    pub agent: String,
}

pub fn run(cmd: KeysCommand) -> u8 {
    match cmd {
        KeysCommand::New(args) => crate::finish(new(&args)),
    }
}

fn new(args: &NewArgs) -> anyhow::Result<u8> {
    if !conductor_serve::config::valid_agent_id(&args.agent) {
        return Err(CliError::Usage(format!(
            "`{}` is not an agent id: a non-empty string without control characters",
            args.agent.escape_debug()
        ))
        .into());
    }
    let Some((key, sha256)) = conductor_serve::auth::keys::generate() else {
        return Err(anyhow::anyhow!("the system gave no randomness for a key"));
    };
    let line = format!(
        "    - {{agent: {}, sha256: \"{sha256}\"}}",
        serde_json::to_string(&args.agent).unwrap_or_default()
    );
    eprintln!(
        "A new API key for `{}` is on standard output; it is shown only this once.\n\
         Give it to the agent as `Authorization: Bearer <key>` (or `X-API-Key: <key>`).\n\
         Add this line under `auth: api_keys:` in the gateway file (key id {}):\n\n  \
         auth:\n    api_keys:\n{line}\n",
        args.agent,
        sha256.get(..8).unwrap_or("")
    );
    use std::io::Write as _;
    let mut out = crate::Stdout::new();
    writeln!(out, "{key}")?;
    out.flush()?;
    Ok(exit::OK)
}
