//! The workspace's only `unsafe` code: the system calls that neither `std` nor `rustix`
//! wrap safely. Each function is one call (or one fixed sequence) with its safety
//! argument next to it; everything above this module is safe Rust.
//!
//! INVARIANT: nothing here allocates between `fork` and the return to a single-threaded
//! caller, and `fork` refuses to run in a process with more than one thread.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;
use std::path::Path;

/// The outcome of [`fork`].
pub enum Fork {
    /// In the new process.
    Child,
    /// In the calling process: the child's pid.
    Parent(i32),
}

/// How many threads this process has (from `/proc/self/task`).
fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// `fork(2)`, refused unless this process is single-threaded (the only case in which
/// the child may go on running arbitrary Rust code: no lock can be held by a thread
/// that does not exist in the child).
pub fn fork() -> io::Result<Fork> {
    if thread_count()? != 1 {
        return Err(io::Error::other(
            "fork refused: the process has more than one thread",
        ));
    }
    // SAFETY: the process is single-threaded (checked above), so the child inherits no
    // lock held by another thread and may run any code, allocation included.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Fork::Child),
        p => Ok(Fork::Parent(p)),
    }
}

/// `unshare(2)` with namespace flags only (never `CLONE_FILES`, whose table split is
/// what makes `rustix::thread::unshare_unsafe` unsafe).
pub fn unshare_namespaces(flags: libc::c_int) -> io::Result<()> {
    let allowed = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP;
    if flags & !allowed != 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: namespace flags do not change the file-descriptor table or the memory
    // of the process; the call takes no pointers.
    let r = unsafe { libc::unshare(flags) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;

/// `mount_setattr(2)` on `path` and (with `recursive`) every mount below it: sets the
/// `MOUNT_ATTR_*` bits in `set`. Unlike a `MS_REMOUNT`, it only adds restrictions, so it
/// works on mounts whose flags are locked by a less privileged user namespace.
pub fn mount_setattr(path: &Path, set: u64, recursive: bool) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags: libc::c_uint = if recursive {
        libc::AT_RECURSIVE as libc::c_uint
    } else {
        0
    } | libc::AT_NO_AUTOMOUNT as libc::c_uint;
    // SAFETY: `c` is a NUL-terminated path and `attr` a live, correctly sized
    // `struct mount_attr` for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Bring the loopback interface of this network namespace up (`SIOCSIFFLAGS`).
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket call; the fd is closed below on every path.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `fd` is a socket and `ifr` a valid `ifreq` naming `lo`; both ioctls read
    // and write only that struct.
    let result = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            Err(io::Error::last_os_error())
        } else {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: `fd` is ours and not used afterwards.
    unsafe { libc::close(fd) };
    result
}

/// One BPF instruction (`struct sock_filter`).
pub type SockFilter = libc::sock_filter;

/// Install a seccomp BPF filter on this thread (inherited by every child). Needs
/// `no_new_privs` (set before by the caller).
pub fn install_seccomp(program: &[SockFilter]) -> io::Result<()> {
    let len =
        u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `program`, which outlives the call; the kernel copies
    // the filter and keeps no pointer to it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            1 as libc::c_ulong, /* SECCOMP_SET_MODE_FILTER */
            0 as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The Landlock ABI version of the running kernel (0: no Landlock).
pub fn landlock_abi() -> i64 {
    // SAFETY: `LANDLOCK_CREATE_RULESET_VERSION` (1) with a NULL attribute and size 0
    // only returns a number.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32,
        )
    };
    if r < 0 { 0 } else { r }
}

/// Make `fd` the child's file descriptor 3 (without close-on-exec) when `command`
/// spawns: the sandbox init's control channel.
pub fn pass_fd_as_3(command: &mut tokio::process::Command, fd: RawFd) {
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (dup2, fcntl), allocating nothing.
    unsafe {
        command.pre_exec(move || {
            if fd == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Take ownership of file descriptor 3, the control channel the parent placed there
/// (see [`pass_fd_as_3`]), if it is an open socket. Only the first call can succeed.
pub fn take_fd3() -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    // SAFETY: `fstat` writes only into `st`, which is plain old data.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd 3 is only inspected here.
    if unsafe { libc::fstat(3, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return None;
    }
    // SAFETY: fd 3 is open (checked above), nothing else in this process owns it (the
    // init's contract with `pass_fd_as_3`), and `TAKEN` makes this the only adoption.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(3) })
}

/// Set `TCP_DEFER_ACCEPT` on a listening socket: a connection is handed to `accept`
/// only once its first data has arrived (or after about `seconds`), so a server that
/// reads first is woken once per connection, not once for the handshake and again for
/// the request.
pub fn set_defer_accept(listener: std::os::fd::BorrowedFd<'_>, seconds: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(seconds).unwrap_or(libc::c_int::MAX);
    // SAFETY: `value` is a live `c_int` for the call and its size is passed with it;
    // the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The `TCP_DEFER_ACCEPT` of a listening socket (0: off; the kernel reports the
/// period it rounded the requested one to).
#[cfg(test)]
pub fn defer_accept(listener: std::os::fd::BorrowedFd<'_>) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live for the call, `len` holds `value`'s size, and
    // the kernel writes at most that many bytes into `value`.
    let r = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(u32::try_from(value).unwrap_or(0))
    } else {
        Err(io::Error::last_os_error())
    }
}
