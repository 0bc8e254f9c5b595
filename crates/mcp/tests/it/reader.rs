//! Independent reference readers for the framing differential (used by the proptest in
//! `differential.rs` and by the cargo-fuzz target `fuzz/fuzz_targets/framing.rs`).
//!
//! A tiny JSON tokenizer that records, for every object, its member names in order.
//! From them: what a first-wins reader (first of equal names), a last-wins reader
//! (serde_json, `JSON.parse`) and Go's `encoding/json` (last of the names equal under
//! case folding) would take. The gate may forward a message only when all three agree.

/// The member names of every object in `text`, in document order; `None` when the
/// tokenizer cannot read the text (the fuzz target then has nothing to compare).
pub fn object_keys(text: &str) -> Option<Vec<Vec<String>>> {
    object_tree(text).map(|t| t.into_iter().map(|o| o.names).collect())
}

/// One object of a document: how deep it is, the member name it is the value of (when
/// its parent is an object), and its member names in order.
pub struct Obj {
    pub depth: usize,
    pub under: Option<String>,
    pub names: Vec<String>,
}

/// Every object in `text`, in document order (see [`object_keys`]).
pub fn object_tree(text: &str) -> Option<Vec<Obj>> {
    let mut p = P {
        b: text.as_bytes(),
        i: 0,
        out: Vec::new(),
    };
    p.value(0, None)?;
    p.ws();
    (p.i == p.b.len()).then_some(p.out)
}

/// The members a reader decoding a JSON-RPC message into structs binds: the message's
/// own, and those of `params` a gate reads to decide (the tool or prompt name, the
/// arguments, a URI, a completion's reference and argument, `_meta`).
const MESSAGE_FIELDS: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];
const PARAMS_FIELDS: &[&str] = &[
    "name",
    "arguments",
    "uri",
    "uris",
    "ref",
    "argument",
    "_meta",
];

/// Whether a struct-decoding reader that matches names exactly (the gate, serde) and
/// one that matches them under case folding (Go's `encoding/json`) bind the same
/// members: a lone `paramſ` or `Arguments` is nothing to the first and `params` /
/// `arguments` to the second.
pub fn struct_readers_agree(tree: &[Obj]) -> bool {
    tree.iter().all(|o| {
        let fields = match (o.depth, o.under.as_deref()) {
            (0, _) => MESSAGE_FIELDS,
            (1, Some("params")) => PARAMS_FIELDS,
            _ => return true,
        };
        o.names
            .iter()
            .all(|n| fields.iter().all(|f| n == f || go_fold(n) != go_fold(f)))
    })
}

/// Go's `encoding/json` name matching (at least as wide: upper- then lower-casing).
pub fn go_fold(name: &str) -> String {
    name.chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether first-wins, last-wins and folding readers would read every object alike.
pub fn readers_agree(keys: &[Vec<String>]) -> bool {
    keys.iter().all(|names| {
        let mut seen = std::collections::HashSet::new();
        names.iter().all(|n| seen.insert(go_fold(n)))
    })
}

struct P<'a> {
    b: &'a [u8],
    i: usize,
    out: Vec<Obj>,
}

impl P<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn value(&mut self, depth: usize, under: Option<String>) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'{' => {
                self.i += 1;
                let slot = self.out.len();
                self.out.push(Obj {
                    depth,
                    under,
                    names: Vec::new(),
                });
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.out.get_mut(slot)?.names.push(k.clone());
                    self.ws();
                    (self.peek()? == b':').then_some(())?;
                    self.i += 1;
                    self.value(depth + 1, Some(k))?;
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.value(depth + 1, None)?;
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(|_| ()),
            _ => {
                // A number or a literal: up to the next delimiter.
                let start = self.i;
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }
    fn string(&mut self) -> Option<String> {
        (self.peek()? == b'"').then_some(())?;
        let start = self.i;
        self.i += 1;
        loop {
            match self.peek()? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    break;
                }
                _ => self.i += 1,
            }
        }
        // Decode escapes with serde_json (a string literal alone is valid JSON).
        serde_json::from_slice::<String>(self.b.get(start..self.i)?).ok()
    }
}
