//! The process's own standard input and output as async streams.
//!
//! `tokio::io::stdin()`/`stdout()` run every read and write on a blocking thread,
//! which adds a thread hop to every message. When standard input or output is a
//! pipe (how MCP clients start servers), it is used directly in non-blocking mode
//! through the reactor instead; anything else (a terminal, a file, a socket) falls
//! back to tokio's blocking-thread streams.

use std::os::fd::AsFd;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// Standard input, as a pipe read through the reactor when possible.
pub fn input() -> Pin<Box<dyn AsyncRead + Send>> {
    let pipe = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok());
    match pipe {
        Some(p) => Box::pin(p),
        None => Box::pin(tokio::io::stdin()),
    }
}

/// Standard output, as a pipe written through the reactor when possible — but not
/// when standard error is the same pipe (`2>&1`): non-blocking mode belongs to the
/// pipe, and the server, which inherits standard error, may not expect it.
pub fn output() -> Pin<Box<dyn AsyncWrite + Send>> {
    let pipe = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .filter(|_| !same_file(&std::io::stdout(), &std::io::stderr()))
        .and_then(|fd| tokio::net::unix::pipe::Sender::from_owned_fd(fd).ok());
    match pipe {
        Some(p) => Box::pin(p),
        None => Box::pin(tokio::io::stdout()),
    }
}

fn same_file(a: &impl AsFd, b: &impl AsFd) -> bool {
    use std::os::unix::fs::MetadataExt;
    let meta = |f: &dyn AsFd| {
        f.as_fd()
            .try_clone_to_owned()
            .ok()
            .and_then(|fd| std::fs::File::from(fd).metadata().ok())
            .map(|m| (m.dev(), m.ino()))
    };
    match (meta(a), meta(b)) {
        (Some(x), Some(y)) => x == y,
        // Unknown: assume shared, and stay blocking.
        _ => true,
    }
}
