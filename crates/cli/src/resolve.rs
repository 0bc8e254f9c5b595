//! The CLI's resolver: the system's (timeout, cache), `--resolve`, `--no-dns`.
