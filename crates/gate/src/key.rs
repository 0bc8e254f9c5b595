//! The per-installation fingerprint key and Conductor's data directory.
//!
//! The fingerprint key is the per-installation secret under which findings are
//! fingerprinted (`hmac-sha256:<hex>`), so that the same secret seen twice can be
//! correlated without the secret ever being stored. It lives in
//! `<data dir>/conductor/fingerprint.key` as 64 hex digits (32 random bytes), created
//! with mode 0600 on first use; `$CONDUCTOR_FINGERPRINT_KEY_FILE` names another file.
//!
//! INVARIANT: a key file that exists but cannot be read or is not exactly 64 hex
//! digits is an error, never silently replaced (that would change every fingerprint
//! and hide a tampered installation). The key's bytes never appear in a message.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use conductor_scan::FingerprintKey;

/// Environment variable naming the fingerprint key file (overrides the default).
pub const KEY_FILE_ENV: &str = "CONDUCTOR_FINGERPRINT_KEY_FILE";

/// File name of the key inside [`data_dir`].
pub const KEY_FILE_NAME: &str = "fingerprint.key";

/// Why the fingerprint key could not be loaded. Every variant stops the command.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's message is its documentation
pub enum KeyError {
    #[error(
        "no data directory: set `XDG_DATA_HOME` or `HOME`, or name a key file with `{KEY_FILE_ENV}`"
    )]
    NoDataDir,
    #[error(
        "fingerprint key file `{path}` (from `{KEY_FILE_ENV}`) does not exist: create one with \
         `head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > {path}`"
    )]
    MissingOverride { path: String },
    #[error("cannot read fingerprint key file `{path}`: {source}")]
    Read { path: String, source: io::Error },
    #[error(
        "fingerprint key file `{path}` is invalid: expected exactly 64 hex digits (32 bytes); \
         fix or remove it (removing it changes every fingerprint)"
    )]
    Invalid { path: String },
    #[error("cannot create fingerprint key file `{path}`: {source}")]
    Create { path: String, source: io::Error },
}

/// Conductor's directory in the user's data directory (`$XDG_DATA_HOME/conductor`, else
/// `$HOME/.local/share/conductor`): the same logic as [`conductor_audit::default_path`].
pub fn data_dir() -> Option<PathBuf> {
    conductor_audit::default_path().and_then(|p| p.parent().map(Path::to_path_buf))
}

/// Where the fingerprint key is read from, and whether it was named explicitly
/// (through [`KEY_FILE_ENV`]).
pub fn fingerprint_key_path() -> Result<(PathBuf, bool), KeyError> {
    if let Some(p) = std::env::var_os(KEY_FILE_ENV).filter(|v| !v.is_empty()) {
        return Ok((PathBuf::from(p), true));
    }
    let dir = data_dir().ok_or(KeyError::NoDataDir)?;
    Ok((dir.join(KEY_FILE_NAME), false))
}

/// The installation's fingerprint key: read from [`fingerprint_key_path`], created
/// there on first use (only at the default place; an explicitly named file must exist).
pub fn load_fingerprint_key() -> Result<FingerprintKey, KeyError> {
    let (path, explicit) = fingerprint_key_path()?;
    load_or_create(&path, !explicit)
}

/// Read the key at `path`; when it does not exist and `create` is set, create it
/// (and its directory, mode 0700) with 32 fresh random bytes, mode 0600.
pub fn load_or_create(path: &Path, create: bool) -> Result<FingerprintKey, KeyError> {
    match read_key(path) {
        Err(KeyError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            if !create {
                return Err(KeyError::MissingOverride {
                    path: path.display().to_string(),
                });
            }
            create_key(path)?;
            // Read back what is on disk: if another process won the race to create
            // it, its key is the installation's key.
            read_key(path)
        }
        other => other,
    }
}

/// Read and parse a key file (64 hex digits, surrounding whitespace ignored).
pub fn read_key(path: &Path) -> Result<FingerprintKey, KeyError> {
    let shown = || path.display().to_string();
    let mut text = String::new();
    // A key file is 64 bytes; refuse to read anything much larger.
    fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|source| match source.kind() {
            io::ErrorKind::InvalidData => KeyError::Invalid { path: shown() },
            _ => KeyError::Read {
                path: shown(),
                source,
            },
        })?;
    parse_hex_key(text.trim())
        .map(FingerprintKey)
        .ok_or_else(|| KeyError::Invalid { path: shown() })
}

/// 64 hex digits → 32 bytes.
fn parse_hex_key(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let hi = hex_value(*pair.first()?)?;
        let lo = hex_value(*pair.get(1)?)?;
        *byte = (hi << 4) | lo;
    }
    Some(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            if let Some(&d) = DIGITS.get(usize::from(nibble)) {
                s.push(char::from(d));
            }
        }
    }
    s
}

/// Create the key file atomically: write a private temporary file next to it, then
/// hard-link it into place (a link never replaces an existing file, so two processes
/// racing to create the key agree on one).
fn create_key(path: &Path) -> Result<(), KeyError> {
    let err = |source| KeyError::Create {
        path: path.display().to_string(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    make_private_dir(dir).map_err(err)?;

    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(err)?;
    let mut contents = to_hex(&bytes);
    contents.push('\n');

    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| KEY_FILE_NAME.to_string()),
        std::process::id()
    ));
    let result = write_private(&tmp, contents.as_bytes()).and_then(|()| {
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            // Someone else created it first: theirs wins.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    });
    let _ = fs::remove_file(&tmp);
    result.map_err(err)
}

fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

fn make_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_key_once_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/conductor").join(KEY_FILE_NAME);
        let first = load_or_create(&path, true).unwrap();
        let second = load_or_create(&path, true).unwrap();
        assert_eq!(first.0, second.0);
        assert_ne!(first.0, [0u8; 32]);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), to_hex(&first.0));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file left behind.
        let left: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn an_explicit_key_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.key");
        let err = load_or_create(&path, false).unwrap_err();
        assert!(matches!(err, KeyError::MissingOverride { .. }), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn an_invalid_key_file_is_an_error_and_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        for bad in [
            "",
            "abc",
            &"g".repeat(64),
            &"0".repeat(63),
            &"0".repeat(66),
            "\u{ff}",
        ] {
            fs::write(&path, bad).unwrap();
            let err = load_or_create(&path, true).unwrap_err();
            assert!(matches!(err, KeyError::Invalid { .. }), "{bad:?}: {err}");
            assert_eq!(fs::read_to_string(&path).unwrap(), bad);
        }
        // Invalid UTF-8 too.
        fs::write(&path, [0xffu8; 64]).unwrap();
        let err = load_or_create(&path, true).unwrap_err();
        assert!(matches!(err, KeyError::Invalid { .. }), "{err}");
    }

    #[test]
    fn the_key_never_appears_in_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let secret = "a".repeat(64) + "ff";
        fs::write(&path, &secret).unwrap();
        let err = load_or_create(&path, true).unwrap_err().to_string();
        assert!(!err.contains(&secret), "{err}");
        assert!(!err.contains("aaaaaaaa"), "{err}");
    }

    #[test]
    fn parses_upper_and_lower_case_hex_with_surrounding_whitespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let hex = "00FF".repeat(16);
        fs::write(&path, format!("  {hex}\n")).unwrap();
        let key = read_key(&path).unwrap();
        assert_eq!(key.0[0], 0x00);
        assert_eq!(key.0[1], 0xff);
        assert_eq!(to_hex(&key.0), hex.to_lowercase());
    }

    #[cfg(unix)]
    #[test]
    fn an_unreadable_key_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be cannot be read as a key.
        let path = dir.path().join(KEY_FILE_NAME);
        fs::create_dir(&path).unwrap();
        let err = load_or_create(&path, true).unwrap_err();
        assert!(matches!(err, KeyError::Read { .. }), "{err}");
    }
}
