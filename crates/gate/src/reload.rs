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

fn stamp_one(path: &Path) -> Option<Stamp> {
    let (bytes, modified) = read_regular(path).ok()?;
    Some(Stamp {
        modified,
        len: bytes.len() as u64,
        sha: hex::encode(sha2::Sha256::digest(&bytes)),
    })
}

/// The policy file and every file the policy in force references (a `gitleaks`
/// rules file), stamped in that order: a change to any of them is a change.
fn stamp(path: &Path, referenced: &[PathBuf]) -> Vec<Option<Stamp>> {
    std::iter::once(path)
        .chain(referenced.iter().map(PathBuf::as_path))
        .map(stamp_one)
        .collect()
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
    let name = path.display().to_string();
    let policy = conductor_policy::load_str(&text, &name, base)
        .map_err(|e| e.render(false).trim_end().to_string())?;
    if policy.referenced_files().is_empty() {
        return Ok(Some(policy));
    }
    // A referenced file is read once per compile: compile again a moment later and
    // put it in force only when both saw the same files (the digest covers them).
    std::thread::sleep(settle);
    let again = conductor_policy::load_str(&text, &name, base)
        .map_err(|e| e.render(false).trim_end().to_string())?;
    Ok((again.sha256() == policy.sha256()).then_some(again))
}

/// What one look at the policy files found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Nothing changed on disk.
    Unchanged,
    /// A new version is in force; its [`conductor_policy::Policy::sha256`].
    Swapped(String),
    /// The files changed but compile to the policy already in force.
    Same,
    /// A file is being written: looked at again next time.
    Unstable,
    /// The new version is invalid; the last good one stays. `first` is false when
    /// this same report was returned for the previous change (report it once).
    Invalid {
        /// Every problem, rendered for a person.
        rendered: String,
        /// Whether this report differs from the last one returned.
        first: bool,
    },
    /// The reload itself failed (the blocking task died); the last good one stays.
    Failed,
}

/// Watches a policy file and the files the policy in force references, and puts a
/// valid, stable new version in force. Every transport's reload goes through it.
#[derive(Debug)]
pub struct PolicyWatch {
    path: PathBuf,
    last: Vec<Option<Stamp>>,
    last_bad: Option<String>,
    settle: Duration,
}

impl PolicyWatch {
    /// Stamp `path` and the files `service`'s policy references now: a change made
    /// after this call is seen by the next [`PolicyWatch::poll`]. Reads files; call it
    /// off the async runtime where that matters.
    pub fn new(service: &Service, path: PathBuf, settle: Duration) -> Self {
        let last = stamp(&path, service.policy().referenced_files());
        PolicyWatch {
            path,
            last,
            last_bad: None,
            settle,
        }
    }

    /// The policy file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Look once: when the policy file or a file the policy in force references
    /// changed, load the new version and, when it is valid and stable, put it in force
    /// in `service`.
    pub async fn poll(&mut self, service: &Service) -> Reload {
        let path = self.path.clone();
        let referenced = service.policy().referenced_files().to_vec();
        let now = tokio::task::spawn_blocking(move || stamp(&path, &referenced))
            .await
            .unwrap_or_default();
        if now == self.last {
            return Reload::Unchanged;
        }
        let path = self.path.clone();
        let settle = self.settle;
        match tokio::task::spawn_blocking(move || load_stable(&path, settle)).await {
            Ok(Ok(Some(policy))) => {
                self.last_bad = None;
                // The stamps taken before loading, when the new policy references the
                // same files: a change made while it loaded is then seen next time. A
                // new list of files is stamped afresh, to compare like with like.
                let referenced = policy.referenced_files().to_vec();
                let same_files = referenced.as_slice() == service.policy().referenced_files();
                let swapped = if policy.sha256() == service.policy().sha256() {
                    Reload::Same
                } else {
                    let sha = policy.sha256().to_string();
                    service.swap_policy(policy);
                    Reload::Swapped(sha)
                };
                self.last = if same_files {
                    now
                } else {
                    let path = self.path.clone();
                    tokio::task::spawn_blocking(move || stamp(&path, &referenced))
                        .await
                        .unwrap_or(now)
                };
                swapped
            }
            // Unstable: look again next time (`last` not updated).
            Ok(Ok(None)) => Reload::Unstable,
            Ok(Err(rendered)) => {
                self.last = now;
                let first = self.last_bad.as_deref() != Some(rendered.as_str());
                self.last_bad = Some(rendered.clone());
                Reload::Invalid { rendered, first }
            }
            Err(_) => Reload::Failed,
        }
    }
}

/// Watch the policy file (and the files the policy references): every `interval`,
/// when one changed, load it; a valid, stable new version is put in force in
/// `service`, an invalid one is reported through `report` and the last good one
/// stays. Runs until aborted.
pub async fn watch_policy(
    service: Arc<Service>,
    path: PathBuf,
    interval: Duration,
    report: Arc<dyn Fn(String) + Send + Sync>,
) {
    let settle = Duration::from_millis(50).min(interval);
    let svc = Arc::clone(&service);
    let p = path.clone();
    let Ok(mut watch) =
        tokio::task::spawn_blocking(move || PolicyWatch::new(&svc, p, settle)).await
    else {
        report("policy reload could not start; the policy in force stays".into());
        return;
    };
    loop {
        tokio::time::sleep(interval).await;
        match watch.poll(&service).await {
            Reload::Swapped(sha) => report(format!("policy `{}` reloaded ({sha})", path.display())),
            Reload::Invalid {
                rendered,
                first: true,
            } => report(format!(
                "policy `{}` changed but is invalid; the last good version stays in force:\n{rendered}",
                path.display(),
            )),
            Reload::Failed => {
                report("policy reload failed; the last good version stays in force".into())
            }
            Reload::Unchanged | Reload::Same | Reload::Unstable | Reload::Invalid { .. } => {}
        }
    }
}
