//! A generated policy for benchmarks: `agents` agents, `roles` roles and `rules`
//! tool rules, with `extends` chains (every fifth role starts a new chain), exact
//! and wildcard globs, actions, `when` constraints, tool facts and workflows.
//! Shared by `conductor-policy`'s and `conductor-core`'s benches.

use std::fmt::Write;

pub fn policy(agents: usize, roles: usize, rules: usize) -> String {
    let mut s = String::from("version: 1\ndestinations: {scan: false}\nagents:\n");
    for a in 0..agents {
        let _ = writeln!(
            s,
            "  a{a}: {{roles: [r{}, r{}], clearance: internal}}",
            a % roles,
            (a * 7 + 3) % roles
        );
    }
    s.push_str("roles:\n");
    let per_role = rules / roles;
    for r in 0..roles {
        let _ = writeln!(s, "  r{r}:");
        if r % 5 != 0 {
            let _ = writeln!(s, "    extends: [r{}]", r - 1);
        }
        let mut offset = 0;
        for (kind, share) in [("allow", 14), ("approve", 3), ("deny", 3)] {
            let n = per_role * share / 20;
            let first = offset;
            offset += n;
            if n == 0 {
                continue;
            }
            let _ = writeln!(s, "    {kind}:");
            for i in 0..n {
                let k = r * per_role + first + i;
                let glob = match k % 4 {
                    0 => format!("s{}.*", k % 40),
                    1 => format!("*.del_{}", k % 10),
                    _ => format!("s{}.t{}", (k * 7) % 40, k % 25),
                };
                let _ = writeln!(s, "      - tools: [\"{glob}\"]");
                if k.is_multiple_of(3) {
                    s.push_str("        actions: [read, write]\n");
                }
                if k.is_multiple_of(11) {
                    s.push_str("        when:\n          /repo: {glob: \"acme/*\"}\n");
                }
            }
        }
    }
    s.push_str("tools:\n");
    for t in 0..40 {
        let action = match t % 4 {
            0 => "read",
            1 => "write",
            2 => "execute",
            _ => "delete",
        };
        let _ = writeln!(s, "  s{t}.*: {{action: {action}}}");
    }
    s.push_str("  s7.t3: {action: read}\nworkflows:\n");
    for w in 0..10 {
        let _ = writeln!(
            s,
            "  w{w}: {{roles: [r{}, r{}], tools: [\"s{}.*\", \"s{}.*\"]}}",
            w * 5,
            w * 5 + 1,
            w,
            w + 7
        );
    }
    s
}
