//! The process's own standard input and output as async streams.
//!
//! `tokio::io::stdin()`/`stdout()` run every read and write on a blocking thread,
//! which adds a thread hop to every message. When standard input or output is a pipe
//! or a socket (how MCP clients start servers: pipes, or socket pairs from libuv /
//! Node), it is used directly in non-blocking mode through the reactor instead;
//! anything else (a terminal, a file) falls back to tokio's blocking-thread streams.
//!
//! Non-blocking mode belongs to the open file description, which is shared with every
//! process holding a duplicate of it. Standard input is not passed to the server; a
//! standard output that is also standard error (`2>&1`, inherited by the server) is
//! left blocking.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

enum Kind {
    Pipe,
    Socket,
    Other,
}

fn kind(fd: &OwnedFd) -> Kind {
    let Ok(dup) = fd.try_clone() else {
        return Kind::Other;
    };
    match std::fs::File::from(dup).metadata().map(|m| m.file_type()) {
        Ok(t) if t.is_fifo() => Kind::Pipe,
        Ok(t) if t.is_socket() => Kind::Socket,
        _ => Kind::Other,
    }
}

fn socket(fd: OwnedFd) -> Option<tokio::net::UnixStream> {
    let s = std::os::unix::net::UnixStream::from(fd);
    s.set_nonblocking(true).ok()?;
    tokio::net::UnixStream::from_std(s).ok()
}

/// Standard input, read through the reactor when it is a pipe or a socket.
pub fn input() -> Pin<Box<dyn AsyncRead + Send>> {
    if let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() {
        match kind(&fd) {
            Kind::Pipe => {
                if let Ok(p) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
                    return Box::pin(p);
                }
            }
            Kind::Socket => {
                if let Some(s) = socket(fd) {
                    return Box::pin(s);
                }
            }
            Kind::Other => {}
        }
    }
    Box::pin(tokio::io::stdin())
}

/// Standard output, written through the reactor when it is a pipe or a socket that
/// standard error does not share.
pub fn output() -> Pin<Box<dyn AsyncWrite + Send>> {
    if !same_file(&std::io::stdout(), &std::io::stderr())
        && let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned()
    {
        match kind(&fd) {
            Kind::Pipe => {
                if let Ok(p) = tokio::net::unix::pipe::Sender::from_owned_fd(fd) {
                    return Box::pin(p);
                }
            }
            Kind::Socket => {
                if let Some(s) = socket(fd) {
                    return Box::pin(s);
                }
            }
            Kind::Other => {}
        }
    }
    Box::pin(tokio::io::stdout())
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
