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
    let mut p = P {
        b: text.as_bytes(),
        i: 0,
        out: Vec::new(),
    };
    p.value()?;
    p.ws();
    (p.i == p.b.len()).then_some(p.out)
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
    out: Vec<Vec<String>>,
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
    fn value(&mut self) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'{' => {
                self.i += 1;
                let slot = self.out.len();
                self.out.push(Vec::new());
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.out.get_mut(slot)?.push(k);
                    self.ws();
                    (self.peek()? == b':').then_some(())?;
                    self.i += 1;
                    self.value()?;
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
                    self.value()?;
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
