//! The sandbox's walls, probed from inside by the sandboxed process itself.

use conductor_sandbox::Profile;

use crate::support::{Fixed, World, policy, run, sh};

fn world() -> World {
    World::new(policy("  allow: [\"*\"]"), Fixed::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_shows_only_the_system_and_the_private_tmp() {
    let w = world();
    let (out, code) = run(
        &sh("ls /; echo ---; ls -a /tmp; echo ---; id -u; echo ---; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; echo ---; ls /proc | grep -E '^[0-9]+$' | wc -l"),
        &Profile::default(),
        w.egress(),
        b"",
    )
    .await;
    println!("{out}");
    assert_eq!(code, 0, "{out}");
}
