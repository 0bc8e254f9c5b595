//! The seccomp deny-list, as a classic BPF program (x86_64).
//!
//! Drawn from the lists of Docker's default profile, Flatpak/bubblewrap, OpenAI Codex's
//! linux-sandbox and NVIDIA OpenShell (none copied): the calls that reach kernel attack
//! surface or another process (ptrace, process_vm_*, bpf, io_uring, perf, userfaultfd,
//! keyrings, kexec, modules), that rebuild the sandbox (mount family, pivot_root, chroot,
//! unshare, setns, namespace flags on clone), and sockets other than unix and IP (netlink,
//! packet, vsock, …). Each returns `EPERM`, which servers handle as "not permitted";
//! `clone3` returns `ENOSYS`, so that the C library falls back to `clone`, whose flags the
//! filter can read. A system call of another architecture kills the process; the x32 ABI
//! (numbers with bit 30 set) is refused.
//!
//! INVARIANT: the filter is a deny-list on top of the namespaces and Landlock, never the
//! only wall: every call it lets through is also confined by them.

use crate::sys::SockFilter;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;

// seccomp_data offsets
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg(i: u32) -> u32 {
    16 + 8 * i
}

// BPF opcodes
/// `BPF_LD | BPF_W | BPF_ABS` (0x00 | 0x00 | 0x20).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_JMP_JSET_K: u16 = 0x05 | 0x40;
const BPF_RET_K: u16 = 0x06;

/// x86_64 system call numbers refused with `EPERM`, with their names for the docs.
pub const DENIED: &[(&str, u32)] = &[
    ("ptrace", 101),
    ("process_vm_readv", 310),
    ("process_vm_writev", 311),
    ("pidfd_getfd", 438),
    ("process_madvise", 440),
    ("kcmp", 312),
    ("bpf", 321),
    ("perf_event_open", 298),
    ("userfaultfd", 323),
    ("io_uring_setup", 425),
    ("io_uring_enter", 426),
    ("io_uring_register", 427),
    ("mount", 165),
    ("umount2", 166),
    ("pivot_root", 155),
    ("chroot", 161),
    ("open_tree", 428),
    ("move_mount", 429),
    ("fsopen", 430),
    ("fsconfig", 431),
    ("fsmount", 432),
    ("fspick", 433),
    ("mount_setattr", 442),
    ("open_tree_attr", 467),
    ("unshare", 272),
    ("setns", 308),
    ("kexec_load", 246),
    ("kexec_file_load", 320),
    ("keyctl", 250),
    ("add_key", 248),
    ("request_key", 249),
    ("init_module", 175),
    ("finit_module", 313),
    ("delete_module", 176),
    ("swapon", 167),
    ("swapoff", 168),
    ("reboot", 169),
    ("acct", 163),
    ("quotactl", 179),
    ("quotactl_fd", 443),
    ("lookup_dcookie", 212),
    ("name_to_handle_at", 303),
    ("open_by_handle_at", 304),
    ("iopl", 172),
    ("ioperm", 173),
    ("modify_ldt", 154),
    ("uselib", 134),
    ("_sysctl", 156),
    ("settimeofday", 164),
    ("clock_settime", 227),
    ("clock_adjtime", 305),
    ("adjtimex", 159),
    ("sethostname", 170),
    ("setdomainname", 171),
    ("syslog", 103),
    ("vhangup", 153),
    ("fanotify_init", 300),
    ("nfsservctl", 180),
];

const SYS_SOCKET: u32 = 41;
const SYS_SOCKETPAIR: u32 = 53;
const SYS_CLONE: u32 = 56;
const SYS_CLONE3: u32 = 435;
const SYS_IOCTL: u32 = 16;
const SYS_PERSONALITY: u32 = 135;

/// Socket families a server may open: unix, IPv4, IPv6 (the network namespace leaves
/// only loopback for the last two).
const ALLOWED_FAMILIES: &[u32] = &[
    libc::AF_UNIX as u32,
    libc::AF_INET as u32,
    libc::AF_INET6 as u32,
];

/// `clone` flags that create namespaces.
const NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP) as u32;

const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541c;

fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

fn errno(e: i32) -> u32 {
    RET_ERRNO | (e as u32 & 0xffff)
}

/// Append `if nr == number { block }` (the block must end in a return) — the block is
/// short, so the skip fits the 8-bit jump offset.
fn on_syscall(p: &mut Vec<SockFilter>, number: u32, block: Vec<SockFilter>) {
    let skip = u8::try_from(block.len()).unwrap_or(u8::MAX);
    p.push(jump(BPF_JMP_JEQ_K, number, 0, skip));
    p.extend(block);
}

/// The socket-family check on argument 0: allowed families pass, every other is EPERM.
fn family_block() -> Vec<SockFilter> {
    let mut b = vec![stmt(BPF_LD_W_ABS, off_arg(0))];
    let n = ALLOWED_FAMILIES.len();
    for (i, f) in ALLOWED_FAMILIES.iter().enumerate() {
        // On a match jump to the ALLOW after the remaining checks and the EPERM.
        let remaining = u8::try_from(n - i).unwrap_or(u8::MAX);
        b.push(jump(BPF_JMP_JEQ_K, *f, remaining, 0));
    }
    b.push(stmt(BPF_RET_K, errno(libc::EPERM)));
    b.push(stmt(BPF_RET_K, RET_ALLOW));
    b
}

/// The program: arch check, x32 refusal, the deny-list, argument checks, allow.
pub fn program() -> Vec<SockFilter> {
    let mut p = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, OFF_NR),
        jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, errno(libc::EPERM)),
    ];
    for (_, nr) in DENIED {
        on_syscall(&mut p, *nr, vec![stmt(BPF_RET_K, errno(libc::EPERM))]);
    }
    on_syscall(
        &mut p,
        SYS_CLONE3,
        vec![stmt(BPF_RET_K, errno(libc::ENOSYS))],
    );
    on_syscall(&mut p, SYS_SOCKET, family_block());
    on_syscall(&mut p, SYS_SOCKETPAIR, family_block());
    on_syscall(
        &mut p,
        SYS_CLONE,
        vec![
            stmt(BPF_LD_W_ABS, off_arg(0)),
            jump(BPF_JMP_JSET_K, NAMESPACE_FLAGS, 0, 1),
            stmt(BPF_RET_K, errno(libc::EPERM)),
            stmt(BPF_RET_K, RET_ALLOW),
        ],
    );
    on_syscall(
        &mut p,
        SYS_IOCTL,
        vec![
            stmt(BPF_LD_W_ABS, off_arg(1)),
            jump(BPF_JMP_JEQ_K, TIOCSTI, 1, 0),
            jump(BPF_JMP_JEQ_K, TIOCLINUX, 0, 1),
            stmt(BPF_RET_K, errno(libc::EPERM)),
            stmt(BPF_RET_K, RET_ALLOW),
        ],
    );
    // personality: only the query (0xffffffff) and PER_LINUX (0) — no ASLR switch-off.
    on_syscall(
        &mut p,
        SYS_PERSONALITY,
        vec![
            stmt(BPF_LD_W_ABS, off_arg(0)),
            jump(BPF_JMP_JEQ_K, 0xffff_ffff, 1, 0),
            jump(BPF_JMP_JEQ_K, 0, 0, 1),
            stmt(BPF_RET_K, RET_ALLOW),
            stmt(BPF_RET_K, errno(libc::EPERM)),
        ],
    );
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_fits_the_kernel_limit_and_ends_in_allow() {
        let p = program();
        assert!(p.len() < 4096);
        let last = p.last().unwrap();
        assert_eq!((last.code, last.k), (BPF_RET_K, RET_ALLOW));
    }

    #[test]
    fn every_jump_stays_inside_the_program() {
        let p = program();
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == 0x05 {
                assert!(i + 1 + usize::from(ins.jt) < p.len(), "jt of {i}");
                assert!(i + 1 + usize::from(ins.jf) < p.len(), "jf of {i}");
            }
        }
    }
}
