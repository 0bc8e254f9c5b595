//! The fingerprint key and data directory: the gate service's ([`conductor_gate::key`]).

pub use conductor_gate::key::{
    KEY_FILE_ENV, KEY_FILE_NAME, KeyError as WorldError, data_dir, fingerprint_key_path,
    load_or_create, read_key,
};

/// The installation's fingerprint key (see [`conductor_gate::key`]).
pub fn load_fingerprint_key() -> anyhow::Result<conductor_scan::FingerprintKey> {
    Ok(conductor_gate::load_fingerprint_key()?)
}
