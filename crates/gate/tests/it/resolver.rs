//! The shared resolver: fixed answers, --no-dns, cache, single flight, timeouts.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use conductor_gate::{GateResolver, ResolverConfig};
use conductor_net::{ResolveError, Resolver};

fn cfg(values: &[&str], no_dns: bool) -> ResolverConfig {
    ResolverConfig::from_args(
        &values.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        no_dns,
    )
    .unwrap()
}

#[test]
fn fixed_hosts_are_canonical_and_win() {
    let r = GateResolver::new(cfg(
        &[
            "API.Example.COM.=198.51.100.7,[2001:db8::1]",
            "api.example.com=198.51.100.8",
        ],
        true,
    ));
    let got = r.resolve("api.example.com").unwrap();
    let want: Vec<IpAddr> = vec![
        "198.51.100.7".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
        "198.51.100.8".parse().unwrap(),
    ];
    assert_eq!(got, want);
}

#[test]
fn no_dns_never_asks_the_system() {
    let r = GateResolver::with_lookup(
        cfg(&["a.example=192.0.2.1"], true),
        Arc::new(|_| panic!("the system resolver must not be asked under --no-dns")),
    );
    assert_eq!(
        r.resolve("b.example"),
        Err(ResolveError::NotFound {
            host: "b.example".into()
        })
    );
}

#[test]
fn bad_fixed_values_are_named() {
    for (v, needle) in [
        ("example.com", "no `=`"),
        ("example.com=", "is not an IP address"),
        ("example.com=1.2.3.4,nope", "`nope` is not an IP address"),
        ("1.2.3.4=5.6.7.8", "never resolved"),
    ] {
        let e = ResolverConfig::from_args(&[v.to_string()], false).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(&format!("`{v}`")), "{text}");
        assert!(text.contains(needle), "{v}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_of_one_name_are_made_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let r = GateResolver::with_lookup(
        cfg(&[], false),
        Arc::new(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
            Ok(vec!["203.0.113.5".parse().unwrap()])
        }),
    );
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let r = r.clone();
        tasks.push(tokio::spawn(
            async move { r.resolve_async("x.example").await },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().len(), 1);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Cached afterwards.
    r.resolve_async("x.example").await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_lookup_times_out_and_fails_closed() {
    let mut c = cfg(&[], false);
    c.timeout = Duration::from_millis(50);
    let r = GateResolver::with_lookup(
        c,
        Arc::new(|_| {
            std::thread::sleep(Duration::from_millis(400));
            Ok(vec!["203.0.113.5".parse().unwrap()])
        }),
    );
    let answers = r.resolve_all(&["slow.example".to_string()]).await;
    assert_eq!(
        answers.resolve("slow.example"),
        Err(ResolveError::Timeout {
            host: "slow.example".into()
        })
    );
    // A name never asked about is unresolvable in the answers, not "no addresses".
    assert!(matches!(
        answers.resolve("other.example"),
        Err(ResolveError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_of_several_names_run_together() {
    let now = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (n, m) = (Arc::clone(&now), Arc::clone(&most));
    let r = GateResolver::with_lookup(
        cfg(&[], false),
        Arc::new(move |_| {
            let inside = n.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(inside, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
            n.fetch_sub(1, Ordering::SeqCst);
            Ok(vec!["203.0.113.5".parse().unwrap()])
        }),
    );
    let hosts: Vec<String> = (0..4).map(|i| format!("h{i}.example")).collect();
    let answers = r.resolve_all(&hosts).await;
    for h in &hosts {
        assert!(answers.resolve(h).is_ok());
    }
    // The lookups were in flight at the same time, not one after another.
    assert!(most.load(Ordering::SeqCst) > 1);
}

#[test]
fn localhost_resolves_to_loopback() {
    let r = GateResolver::new(cfg(&[], false));
    if let Ok(addrs) = r.resolve("localhost") {
        assert!(addrs.iter().all(|a| a.is_loopback()), "{addrs:?}");
    }
}
