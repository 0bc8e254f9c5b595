//! The messages of an upstream's `application/json` answer, taken as each one completes.
//!
//! A Streamable HTTP answer is one JSON-RPC message, or an event stream. Some stateless
//! servers (the conformance suite's reference server among them) also stream in a JSON
//! body: a `subscriptions/listen` acknowledgement and its notifications, or a progress
//! notification before the answer, one JSON text after another. The gateway is the only
//! reader of those bytes, and what it relays is its own serialisation of each message it
//! parsed and decided, so reading them in turn changes nothing a client could read
//! differently.
//!
//! INVARIANT (fail closed): every message is one JSON object, parsed strictly once its
//! closing brace arrives; anything else where a message must begin (an array, a number,
//! stray bytes) or a message longer than the limit ends the body as not JSON-RPC.
//!
//! Sans-IO: bytes go in with [`JsonSeq::push`], messages come out of [`JsonSeq::next`].
//! Each byte is scanned once however the body is cut into chunks.

use serde_json::Value;

/// Why the body cannot be read as JSON-RPC messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqError {
    /// Something other than a JSON object where a message begins, a message that does
    /// not parse, or a message cut off at the end of the body.
    NotJson,
    /// One message longer than the limit.
    TooLong,
}

/// The framing state: the bytes not yet returned as messages and where the scan is.
#[derive(Debug)]
pub struct JsonSeq {
    buf: Vec<u8>,
    /// The next byte to scan.
    pos: usize,
    /// Where the message being scanned began (its `{`), if one has.
    start: Option<usize>,
    /// Nesting depth of objects and arrays inside the message.
    depth: usize,
    in_string: bool,
    escaped: bool,
    limit: usize,
}

impl JsonSeq {
    /// A reader whose messages may each be at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        JsonSeq {
            buf: Vec::new(),
            pos: 0,
            start: None,
            depth: 0,
            in_string: false,
            escaped: false,
            limit,
        }
    }

    /// More of the body.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete message; `Ok(None)` when it needs more of the body.
    pub fn next(&mut self) -> Result<Option<Value>, SeqError> {
        while let Some(&b) = self.buf.get(self.pos) {
            let at = self.pos;
            self.pos += 1;
            let Some(start) = self.start else {
                match b {
                    b' ' | b'\t' | b'\n' | b'\r' => continue,
                    b'{' => {
                        self.start = Some(at);
                        self.depth = 1;
                        continue;
                    }
                    _ => return Err(SeqError::NotJson),
                }
            };
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        // Mismatched brackets inside are the parser's to refuse.
                        let text = self.buf.get(start..self.pos).ok_or(SeqError::NotJson)?;
                        let value: Value =
                            serde_json::from_slice(text).map_err(|_| SeqError::NotJson)?;
                        self.buf.drain(..self.pos);
                        self.pos = 0;
                        self.start = None;
                        return Ok(Some(value));
                    }
                }
                _ => {}
            }
        }
        match self.start {
            // Only whitespace scanned since the last message: nothing to keep.
            None => {
                self.buf.clear();
                self.pos = 0;
            }
            Some(start) if self.buf.len() - start > self.limit => return Err(SeqError::TooLong),
            Some(_) => {}
        }
        Ok(None)
    }

    /// At the end of the body: a message begun and not ended is not JSON-RPC.
    pub fn finish(&self) -> Result<(), SeqError> {
        match self.start {
            None => Ok(()),
            Some(_) => Err(SeqError::NotJson),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all(body: &[u8], chunk: usize) -> Result<Vec<Value>, SeqError> {
        let mut seq = JsonSeq::new(1024);
        let mut out = Vec::new();
        for c in body.chunks(chunk.max(1)) {
            seq.push(c);
            while let Some(v) = seq.next()? {
                out.push(v);
            }
        }
        seq.finish()?;
        Ok(out)
    }

    #[test]
    fn one_message_or_several_come_out_whole_however_the_body_is_cut() {
        // The reference server's listen stream: an acknowledgement, then a notification,
        // each a JSON text ending in a newline; then a pretty-printed answer.
        let body = concat!(
            "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/subscriptions/acknowledged\",",
            "\"params\":{\"_meta\":{\"io.modelcontextprotocol/subscriptionId\":\"7\"}}}\n",
            "{\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":{\"s\":\"a } ] \\\" { [\"}}\n",
            "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 7,\n  \"result\": {\"a\": [1, {\"b\": []}]}\n}\n"
        );
        for chunk in [1, 2, 3, 7, 64, body.len()] {
            let got = all(body.as_bytes(), chunk).unwrap();
            assert_eq!(got.len(), 3, "chunk {chunk}");
            assert_eq!(got[1]["params"]["s"], "a } ] \" { [");
            assert_eq!(
                got[2],
                json!({"jsonrpc": "2.0", "id": 7, "result": {"a": [1, {"b": []}]}})
            );
        }
    }

    #[test]
    fn what_is_not_a_sequence_of_objects_is_refused() {
        for body in [
            &b"nope"[..],
            b"[{\"jsonrpc\":\"2.0\"}]",
            b"{\"a\":1} 2",
            b"{\"a\":1}x",
            b"{\"a\":[1}",
            b"{\"a\":1,}",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":1",
            b"{\"a\":\"}",
        ] {
            assert_eq!(
                all(body, 3),
                Err(SeqError::NotJson),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(all(b"  \n ", 1), Ok(vec![]));
    }

    fn value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            // Strings full of what the framer must not miscount: braces, brackets,
            // quotes and backslashes.
            "[\\[\\]{}\"\\\\a-z é\n]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z{}\\[\\]\"]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        // Any sequence of objects, compact or pretty, cut anywhere, comes out whole and
        // in order, as serde_json reads each one alone.
        #[test]
        fn every_object_comes_out_whole_however_the_body_is_cut(
            values in proptest::collection::vec(
                proptest::collection::btree_map("[a-z]{1,4}", value(), 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                1..5),
            pretty in proptest::prelude::any::<bool>(),
            chunk in 1usize..40,
        ) {
            let mut body = Vec::new();
            for v in &values {
                let text = if pretty {
                    serde_json::to_vec_pretty(v).unwrap()
                } else {
                    serde_json::to_vec(v).unwrap()
                };
                body.extend_from_slice(&text);
                body.extend_from_slice(b"\n");
            }
            let mut seq = JsonSeq::new(1 << 20);
            let mut out = Vec::new();
            for c in body.chunks(chunk) {
                seq.push(c);
                while let Some(v) = seq.next().unwrap() {
                    out.push(v);
                }
            }
            seq.finish().unwrap();
            proptest::prop_assert_eq!(out, values);
        }
    }

    #[test]
    fn a_message_longer_than_the_limit_is_refused_before_it_ends() {
        let mut seq = JsonSeq::new(16);
        seq.push(b"{\"a\":\"");
        assert_eq!(seq.next(), Ok(None));
        seq.push(&[b'x'; 32]);
        assert_eq!(seq.next(), Err(SeqError::TooLong));
        // Whitespace between messages is not kept.
        let mut seq = JsonSeq::new(16);
        seq.push(&[b' '; 64]);
        assert_eq!(seq.next(), Ok(None));
        seq.push(b"{}");
        assert_eq!(seq.next(), Ok(Some(json!({}))));
    }
}
