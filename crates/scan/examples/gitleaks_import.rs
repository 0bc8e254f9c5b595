//! Import a gitleaks rules file and scan a text with it, printing detector ids and
//! spans only: `cargo run -p conductor-scan --example gitleaks_import -- rules.toml [text-file]`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "example code"
)]
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "a harness, not the library: it reads files, the clock and arguments (the purity rules of clippy.toml are for src/)"
)]

use conductor_scan::{FingerprintKey, LabelSpec, Scanner, parse_gitleaks_toml};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let text = std::fs::read_to_string(&args[1]).unwrap();
    let rules = match parse_gitleaks_toml(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(65);
        }
    };
    println!("{} rules imported", rules.len());
    let scanner = match Scanner::new(&[LabelSpec {
        name: "gitleaks".into(),
        gitleaks: rules,
        ..LabelSpec::default()
    }]) {
        Ok(s) => s,
        Err(errs) => {
            for e in errs {
                eprintln!("error: {}", e.message);
            }
            std::process::exit(65);
        }
    };
    if let Some(p) = args.get(2) {
        let input = std::fs::read_to_string(p).unwrap();
        for f in scanner.scan_str(&input, &FingerprintKey([0; 32])) {
            println!("{} {}..{}", f.detector, f.start, f.end);
        }
    }
}
