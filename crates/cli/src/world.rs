//! What the CLI injects into the core: resolver, fingerprint key, data directory.
