//! The egress proxy's relay of bytes no rule reads: `splice(2)` from one socket into a
//! pipe and from the pipe into the other socket, so the bytes stay in the kernel (no copy
//! into and out of the proxy's memory, a few system calls per megabyte).
//!
//! Used only once every check of a connection is done and for bytes the proxy does not
//! inspect: a plain-HTTP response's body after its head was checked (the data rules look
//! at request bodies, a redirect's `Location` is in the head), and a CONNECT tunnel after
//! the ClientHello whose server name was checked (TLS, opaque to the proxy). The request
//! side of a plain-HTTP connection is never spliced: its body is read, scanned and
//! written as decided.
//!
//! Safe code: the system calls are rustix's.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// How large a pipe is asked for (best effort: the default, 64 KiB, when refused).
const PIPE_SIZE: usize = 1 << 20;

/// A pipe the bytes of one direction pass through.
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
}

impl Pipe {
    /// A non-blocking pipe, as large as the kernel allows up to [`PIPE_SIZE`].
    pub(crate) fn new() -> io::Result<Pipe> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let size = rustix::pipe::fcntl_setpipe_size(&write, PIPE_SIZE)
            .or_else(|_| rustix::pipe::fcntl_getpipe_size(&write))
            .unwrap_or(64 * 1024);
        Ok(Pipe { read, write, size })
    }
}

/// Move everything `from` sends into `to` until `from` ends its side; then end `to`'s
/// write side. Returns the number of bytes moved.
///
/// The pipe is always emptied into `to` before it is filled again, so a `WouldBlock`
/// while filling means `from` has nothing to read and one while emptying means `to`
/// cannot take more: each waits for the right socket's readiness.
pub(crate) async fn splice_one_way(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
) -> io::Result<u64> {
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    let mut total = 0u64;
    loop {
        let n = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || {
                rustix::pipe::splice(from.as_fd(), None, &pipe.write, None, pipe.size, flags)
                    .map_err(io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            let _ = rustix::net::shutdown(to.as_fd(), rustix::net::Shutdown::Write);
            return Ok(total);
        }
        let mut left = n;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                rustix::pipe::splice(&pipe.read, None, to.as_fd(), None, left, flags)
                    .map_err(io::Error::from)
            }) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => left = left.saturating_sub(m),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        total = total.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

/// Both directions of a tunnel at once, each through a pipe of its own, until both
/// sides have ended theirs (or either fails, which ends the tunnel).
pub(crate) async fn splice_both_ways(
    a: &TcpStream,
    b: &TcpStream,
    ab: &Pipe,
    ba: &Pipe,
) -> io::Result<()> {
    tokio::try_join!(splice_one_way(a, b, ab), splice_one_way(b, a, ba))?;
    Ok(())
}
