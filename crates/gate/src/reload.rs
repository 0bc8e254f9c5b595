//! Policy hot reload.
//!
//! INVARIANT: only a complete, stable regular file is put in force: the file is
//! opened without blocking (a FIFO or device at the policy path is refused, never
//! read), must be a regular file, and must read the same twice, a moment apart (a
//! file being written is caught between writes). An invalid or unstable file leaves
//! the last good policy in force. All file work runs off the async runtime.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;

use crate::service::Service;

/// Largest policy file read (the loader refuses more anyway).
const MAX_READ: u64 = conductor_policy::MAX_POLICY_BYTES as u64 + 1;

/// What identifies a version of the file cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    sha: String,
}

/// Read `path` if it is a regular file: opened non-blocking so that a FIFO cannot
/// stall the reader, checked to be a regular file on the opened handle.
pub fn read_regular(path: &Path) -> Result<(Vec<u8>, Option<std::time::SystemTime>), String> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO with no writer returns at once.
        opts.custom_flags(0o4000);
    }
    let file = opts.open(path).map_err(|e| e.to_string().to_lowercase())?;
    let meta = file.metadata().map_err(|e| e.to_string().to_lowercase())?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_READ)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string().to_lowercase())?;
    Ok((bytes, meta.modified().ok()))
}

fn stamp(path: &Path) -> Option<Stamp> {
    let (bytes, modified) = read_regular(path).ok()?;
    Some(Stamp {
        modified,
        len: bytes.len() as u64,
        sha: hex::encode(sha2::Sha256::digest(&bytes)),
    })
}

/// The policy at `path`, if the file is stable (reads the same twice, `settle` apart)
/// and valid. `Err` carries the report for a person.
pub fn load_stable(
    path: &Path,
    settle: Duration,
) -> Result<Option<conductor_policy::Policy>, String> {
    let first = read_regular(path).map_err(|e| format!("cannot read it: {e}"))?;
    std::thread::sleep(settle);
    let second = read_regular(path).map_err(|e| format!("cannot read it: {e}"))?;
    if first.0 != second.0 {
        // Being written: try again at the next change.
        return Ok(None);
    }
    let text = String::from_utf8(second.0).map_err(|_| "it is not utf-8 text".to_string())?;
    let base = path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    conductor_policy::load_str(&text, &path.display().to_string(), base)
        .map(Some)
        .map_err(|e| e.render(false).trim_end().to_string())
}

/// Watch the policy file: every `interval`, when it changed, load it; a valid, stable
/// new version is put in force in `service`, an invalid one is reported through
/// `report` and the last good one stays. Runs until aborted.
pub async fn watch_policy(
    service: Arc<Service>,
    path: PathBuf,
    interval: Duration,
    report: Arc<dyn Fn(String) + Send + Sync>,
) {
    let p = path.clone();
    let mut last = tokio::task::spawn_blocking(move || stamp(&p))
        .await
        .ok()
        .flatten();
    let mut last_bad: Option<String> = None;
    loop {
        tokio::time::sleep(interval).await;
        let p = path.clone();
        let now = tokio::task::spawn_blocking(move || stamp(&p))
            .await
            .ok()
            .flatten();
        if now == last {
            continue;
        }
        let p = path.clone();
        let settle = Duration::from_millis(50).min(interval);
        let loaded = tokio::task::spawn_blocking(move || load_stable(&p, settle)).await;
        match loaded {
            Ok(Ok(Some(policy))) => {
                last = now;
                last_bad = None;
                if policy.sha256() != service.policy().sha256() {
                    let sha = policy.sha256().to_string();
                    service.swap_policy(policy);
                    report(format!("policy `{}` reloaded ({sha})", path.display()));
                }
            }
            // Unstable: look again next time (`last` not updated).
            Ok(Ok(None)) => {}
            Ok(Err(rendered)) => {
                last = now;
                if last_bad.as_deref() != Some(rendered.as_str()) {
                    report(format!(
                        "policy `{}` changed but is invalid; the last good version stays in force:\n{rendered}",
                        path.display(),
                    ));
                    last_bad = Some(rendered);
                }
            }
            Err(_) => report("policy reload failed; the last good version stays in force".into()),
        }
    }
}
