//! The resolver options every deciding command takes (`--resolve`, `--no-dns`); the
//! resolver itself is the gate service's ([`conductor_gate::GateResolver`]).

use clap::Args;
use conductor_gate::{GateResolver, ResolverConfig};

/// The resolver the CLI injects into the core.
pub type CliResolver = GateResolver;

/// Resolver options shared by the commands that decide.
#[derive(Debug, Clone, Default, Args)]
pub struct ResolveArgs {
    /// Fix what HOST resolves to (like curl's `--resolve`); repeatable.
    #[arg(long = "resolve", value_name = "HOST=IP[,IP…]")]
    pub resolve: Vec<String>,
    /// Make every host that `--resolve` does not name unresolvable.
    #[arg(long = "no-dns")]
    pub no_dns: bool,
}

impl ResolveArgs {
    /// The resolver configuration; the error names the bad `--resolve` value.
    pub fn config(&self) -> Result<ResolverConfig, String> {
        ResolverConfig::from_args(&self.resolve, self.no_dns).map_err(|e| e.to_string())
    }

    /// Build the resolver; the error names the bad `--resolve` value.
    pub fn build(&self) -> Result<CliResolver, String> {
        self.config().map(GateResolver::new)
    }
}
