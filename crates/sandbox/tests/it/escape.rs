//! The sandbox's walls, probed from inside by the sandboxed process itself
//! (`tests/fixtures/probe.c`, built with the system C compiler).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use conductor_sandbox::Profile;

use crate::support::{Fixed, World, policy, run, sh};

fn world() -> World {
    World::new(policy("  allow: [\"*\"]"), Fixed::default())
}

/// Build the probe into `dir`.
fn build_probe(dir: &Path) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/probe.c");
    let out = dir.join("probe");
    let status = std::process::Command::new("cc")
        .arg("-O1")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("a C compiler (`cc`) is needed for the escape probes");
    assert!(status.success(), "the probe does not compile");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_shows_only_the_system_and_the_private_tmp() {
    let w = world();
    let (out, code) = run(
        &sh("ls /; echo ---; ls -A /tmp; echo ---; grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status"),
        &Profile::default(),
        w.egress(),
        b"",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let mut parts = out.split("---\n");
    let root: Vec<&str> = parts.next().unwrap().lines().collect();
    for absent in [
        "home", "run", "var", "sys", "work", "mnt", "opt", "srv", "boot",
    ] {
        assert!(!root.contains(&absent), "`/{absent}` is visible: {root:?}");
    }
    for present in ["usr", "etc", "proc", "dev", "tmp"] {
        assert!(root.contains(&present), "`/{present}` is missing: {root:?}");
    }
    assert_eq!(
        parts.next().unwrap().trim(),
        "",
        "the private /tmp is not empty"
    );
    let status = parts.next().unwrap();
    for line in [
        "CapEff:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        assert!(status.contains(line), "`{line}` missing in {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_probes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let probe = build_probe(dir.path());
    // A server on the host's loopback that the sandbox must not reach directly.
    let host_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host_listener.local_addr().unwrap().port().to_string();
    let host_pid = std::process::id().to_string();
    let w = world();
    let profile = Profile {
        read: vec![dir.path().to_path_buf()],
        ..Profile::default()
    };
    let probe_s = probe.to_str().unwrap();
    let (out, code) = run(&[probe_s, &host_pid, &port], &profile, w.egress(), b"").await;
    assert_eq!(code, 0, "{out}");
    let seen: HashMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let expect = |name: &str, allowed: &[&str]| {
        let got = seen.get(name).copied().unwrap_or("<missing>");
        assert!(
            allowed.contains(&got),
            "probe `{name}`: got `{got}`, expected one of {allowed:?}\n{out}"
        );
    };
    for name in [
        "ptrace",
        "ptrace_attach",
        "process_vm_readv",
        "io_uring_setup",
        "bpf",
        "unshare_user",
        "unshare_net",
        "clone_newuser",
        "setns",
        "mount",
        "umount",
        "chroot",
        "keyctl",
        "kexec_load",
        "perf_event_open",
        "userfaultfd",
        "x32_getpid",
        "socket_netlink",
        "socket_packet",
        "socket_vsock",
        "socketpair_netlink",
    ] {
        expect(name, &["EPERM"]);
    }
    // No route out; the host's loopback is another namespace (and Landlock allows TCP
    // connects to the proxy's port only).
    expect("tcp_metadata", &["ENETUNREACH", "EACCES"]);
    expect("tcp_host_loopback", &["ECONNREFUSED", "EACCES"]);
    expect("udp_metadata", &["ENETUNREACH"]);
    expect("dns", &["refused"]);
    // The host's processes do not exist here; pid 1 is the sandbox's init.
    expect("host_proc_environ", &["ENOENT", "EACCES"]);
    assert!(
        seen.get("pid1")
            .is_some_and(|c| c.contains("conductor-sandbox-init")),
        "{out}"
    );
    for name in ["etc_shadow", "docker_sock", "dbus", "home_ssh"] {
        expect(name, &["ENOENT"]);
    }
    // The init (same uid, same pid namespace) cannot be written into through /proc.
    expect("pid1_mem", &["EACCES", "EPERM"]);
    expect("write_usr", &["EROFS", "EACCES"]);
    expect("write_tmp", &["ok"]);
    drop(host_listener);
}
