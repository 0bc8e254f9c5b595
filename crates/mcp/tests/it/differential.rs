//! The framing differential (issue 10, class 2): a message the gate accepts is read
//! alike by first-wins, last-wins and Go-folding readers — both among the members of
//! each object and in what a struct-decoding reader binds (a lone `paramſ`).

use proptest::prelude::*;

use super::reader::{object_keys, object_tree, readers_agree, struct_readers_agree};

/// Member names from a small alphabet where collisions are likely: case variants,
/// `ſ` (folds to `s`), `K` (Kelvin sign, folds to `k`).
fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "name",
        "NAME",
        "Name",
        "params",
        "param\u{17f}",
        "arguments",
        "argument\u{17f}",
        "kind",
        "\u{212a}ind",
        "method",
        "id",
        "x",
    ])
    .prop_map(str::to_string)
}

fn object(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just("1".to_string()),
        Just("\"v\"".to_string()),
        Just("null".to_string())
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    let member = (name(), prop_oneof![leaf, object(depth - 1)])
        .prop_map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).unwrap()));
    prop::collection::vec(member, 0..5)
        .prop_map(|ms| format!("{{{}}}", ms.join(",")))
        .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn an_accepted_message_reads_alike_for_every_reader(params in object(3)) {
        let line = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}"#);
        let keys = object_keys(&line).expect("the generator writes valid json");
        let tree = object_tree(&line).expect("the generator writes valid json");
        let accepted = conductor_mcp::framing::classify(line.as_bytes()).is_ok();
        // INVARIANT: accepted ⇔ every reader agrees (no more refused than needed either):
        // within each object, and between the message and the fields a struct reader binds.
        prop_assert_eq!(
            accepted,
            readers_agree(&keys) && struct_readers_agree(&tree),
            "{}",
            line
        );
    }
}
