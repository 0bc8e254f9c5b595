//! Link the `conductor` binary with packed relative relocations (DT_RELR) on GNU/Linux.
//!
//! The binary is position-independent, so the dynamic loader applies ~36,000 relative
//! relocations at every start; as RELA entries they are ~870 KB that each process
//! must read (page faults) before `main`. `conductor hook claude-code` runs once per
//! tool call, so this start-up cost is paid per call (issue 14: ≤ 5 ms per call). The
//! packed form is a few KB and keeps the binary position-independent (ASLR intact).
//! Needs GNU ld ≥ 2.38 or lld ≥ 15 to link and glibc ≥ 2.36 to run (Debian 12 has
//! both); set `CONDUCTOR_NO_RELR=1` to link without it.
fn main() {
    println!("cargo:rerun-if-env-changed=CONDUCTOR_NO_RELR");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" && std::env::var_os("CONDUCTOR_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
