//! Fuzz the JSON-RPC framing with a differential check: any line the gate accepts as a
//! message must be read alike by a first-wins reader, a last-wins reader and Go's
//! case-folding reader (issue 10, class 2); classification never panics.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run framing` in crates/mcp.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/it/reader.rs"]
mod reader;

fuzz_target!(|data: &[u8]| {
    let accepted = conductor_mcp::framing::classify(data).is_ok();
    if !accepted {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        panic!("a line that is not utf-8 was accepted");
    };
    if let Some(keys) = reader::object_keys(text) {
        assert!(reader::readers_agree(&keys), "readers disagree on an accepted line: {text}");
    }
    if let Some(tree) = reader::object_tree(text) {
        assert!(
            reader::struct_readers_agree(&tree),
            "a struct reader binds another member than the gate on an accepted line: {text}"
        );
    }
});
