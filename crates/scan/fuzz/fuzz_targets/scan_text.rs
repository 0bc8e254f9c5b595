//! Any text, scanned by every built-in detector: no panic, spans inside the string and
//! on character boundaries, and redaction removes every finding it was given.
#![no_main]

use conductor_scan::{BUILTIN_DETECTORS, FingerprintKey, LabelSpec, Scanner, redact};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn scanner() -> &'static Scanner {
    static S: OnceLock<Scanner> = OnceLock::new();
    S.get_or_init(|| {
        Scanner::new(&[LabelSpec {
            name: "all".into(),
            builtins: BUILTIN_DETECTORS.iter().map(|s| s.to_string()).collect(),
            ..LabelSpec::default()
        }])
        .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let value = serde_json::json!({ "s": text, text: [text] });
    let key = FingerprintKey([3; 32]);
    let findings = scanner().scan(&value, &key);
    for f in &findings {
        if f.encoding.is_none() && !f.in_key {
            assert!(f.start < f.end && f.end <= text.len());
            assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        }
    }
    let _ = redact(&value, &findings);
});
