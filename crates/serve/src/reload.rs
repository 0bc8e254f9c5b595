//! Hot reload of the gateway file and the policy, and upstream readiness probes.
//!
//! INVARIANT: an invalid new version of either file never replaces the version in force:
//! it is reported (every problem, rendered) and the last good one stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Server, Transport};
use crate::metrics::StatusLabels;
use crate::session::App;

pub type Stamp = Option<(Option<std::time::SystemTime>, u64, String)>;

pub fn stamp(path: &Path) -> Stamp {
    use sha2::Digest;
    let meta = std::fs::metadata(path).ok()?;
    let bytes = std::fs::read(path).ok()?;
    Some((
        meta.modified().ok(),
        meta.len(),
        hex::encode(sha2::Sha256::digest(&bytes)),
    ))
}

fn reloaded(app: &App, outcome: &str) {
    app.metrics
        .reloads
        .get_or_create(&StatusLabels {
            status: outcome.into(),
        })
        .inc();
}

/// Watch the gateway file and the policy (every second) until aborted.
/// `last_cfg`: the gateway file's version in force; `policy`: the policy's watch, both
/// stamped before the listener opened. The policy's reload is the gate service's
/// ([`conductor_gate::PolicyWatch`]), which also watches the files the policy references.
pub async fn watch(
    app: Arc<App>,
    config: Option<PathBuf>,
    mut last_cfg: Stamp,
    mut policy: Option<conductor_gate::PolicyWatch>,
) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(p) = &config {
            let now = stamp(p);
            if now != last_cfg {
                last_cfg = now;
                let path = p.clone();
                let loaded =
                    tokio::task::spawn_blocking(move || crate::config::load_file(&path)).await;
                match loaded {
                    Ok(Ok(cfg)) => {
                        let old = app.config();
                        if cfg.listen != old.listen {
                            tracing::warn!(
                                "`listen` changed in the gateway file: it takes effect at the next start"
                            );
                        }
                        if let Ok(mut c) = app.cfg.lock() {
                            *c = Arc::new(cfg);
                        }
                        reloaded(&app, "ok");
                        tracing::info!(file = %p.display(), "gateway file reloaded");
                    }
                    Ok(Err(e)) => {
                        reloaded(&app, "invalid");
                        tracing::error!(file = %p.display(), problems = %e.render(false),
                            "the gateway file changed but is invalid; the last good version stays in force");
                    }
                    Err(_) => reloaded(&app, "failed"),
                }
            }
        }
        if let Some(w) = policy.as_mut() {
            use conductor_gate::Reload;
            match w.poll(app.gates.service()).await {
                Reload::Swapped(sha) => {
                    reloaded(&app, "ok");
                    tracing::info!(file = %w.path().display(), policy = %sha, "policy reloaded");
                }
                Reload::Invalid { rendered, first } => {
                    reloaded(&app, "invalid");
                    if first {
                        tracing::error!(file = %w.path().display(), problems = %rendered,
                            "the policy changed but is invalid; the last good version stays in force");
                    }
                }
                Reload::Failed => reloaded(&app, "failed"),
                Reload::Unchanged | Reload::Same | Reload::Unstable => {}
            }
        }
    }
}

/// Whether an upstream can be used: an HTTP one accepts a connection within a second; a
/// stdio one's program exists.
pub async fn upstream_usable(server: &Server) -> bool {
    match &server.transport {
        Transport::Http { url, .. } => {
            let Some(host) = url.host_str() else {
                return false;
            };
            let port = url.port_or_known_default().unwrap_or(80);
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            matches!(
                tokio::time::timeout(
                    Duration::from_secs(1),
                    tokio::net::TcpStream::connect((host.as_str(), port))
                )
                .await,
                Ok(Ok(_))
            )
        }
        Transport::Stdio { command, .. } => {
            let Some(program) = command.first() else {
                return false;
            };
            let p = Path::new(program);
            if p.components().count() > 1 {
                return p.is_file();
            }
            std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
        }
    }
}
