//! Fuzz the policy loader: any bytes must load or be refused with located
//! problems — never panic, hang or exhaust memory (budgets bound the work).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match conductor_policy::load_str(text, "fuzz.yaml", None) {
        Ok(p) => {
            assert!(p.sha256().starts_with("sha256:"));
        }
        Err(e) => {
            assert!(!e.problems().is_empty());
            let _ = e.render(false);
        }
    }
});
