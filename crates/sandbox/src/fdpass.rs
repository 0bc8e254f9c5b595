//! One message with an optional file descriptor over a unix socket (`SCM_RIGHTS`).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Send `bytes` (with `fd` attached, if any) in one `sendmsg`.
pub fn send(sock: impl AsFd, bytes: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    let fds;
    if let Some(fd) = fd {
        fds = [fd];
        if !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other("cannot attach the descriptor"));
        }
    }
    let mut sent = rustix::net::sendmsg(
        &sock,
        &[IoSlice::new(bytes)],
        &mut cmsg,
        SendFlags::NOSIGNAL,
    )?;
    // The descriptor went with the first part; send what is left plainly.
    while sent < bytes.len() {
        let rest = bytes.get(sent..).unwrap_or_default();
        let n = rustix::net::send(&sock, rest, SendFlags::NOSIGNAL)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        sent += n;
    }
    Ok(())
}

/// Receive one newline-terminated message and the descriptor that came with it.
/// `Ok(None)` when the peer closed before sending anything.
pub fn recv_line(sock: impl AsFd) -> io::Result<Option<(Vec<u8>, Option<OwnedFd>)>> {
    let mut out = Vec::new();
    let mut received: Option<OwnedFd> = None;
    loop {
        let mut buf = [0u8; 4096];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let r = rustix::net::recvmsg(
            &sock,
            &mut [IoSliceMut::new(&mut buf)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        for m in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = m {
                for fd in fds {
                    // INVARIANT: one descriptor at most; extra ones are closed here.
                    if received.is_none() {
                        received = Some(fd);
                    }
                }
            }
        }
        let n = r.bytes;
        if n == 0 {
            return Ok(if out.is_empty() {
                None
            } else {
                Some((out, received))
            });
        }
        out.extend_from_slice(buf.get(..n).unwrap_or_default());
        if out.ends_with(b"\n") {
            return Ok(Some((out, received)));
        }
        if out.len() > 1 << 20 {
            return Err(io::Error::other("the message is too long"));
        }
    }
}
