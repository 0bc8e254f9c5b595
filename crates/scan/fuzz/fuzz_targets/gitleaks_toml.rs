//! Any text as a gitleaks rules file: an error or rules that compile into a scanner.
#![no_main]

use conductor_scan::{LabelSpec, Scanner, parse_gitleaks_toml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(rules) = parse_gitleaks_toml(text) {
        let spec = LabelSpec { name: "l".into(), gitleaks: rules, ..LabelSpec::default() };
        // Rules that parsed must compile.
        assert!(Scanner::new(&[spec]).is_ok());
    }
});
