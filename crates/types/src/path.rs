//! [`JsonPath`]: where in a JSON value something is, as segments (not strings).
//!
//! Written out, a path is an RFC 6901 JSON pointer (`/a/0/b~1c`), with one extension:
//! the segment [`Segment::Member`] — "member number *i* of this object, whose name is
//! withheld" — is written `~k<i>`. RFC 6901 defines only `~0` and `~1`, and every real
//! key is escaped with them, so no key can be written `~k…`: a withheld member and a
//! real key can never be confused (the bug a literal key named `[key:1]` exploited).

use std::cmp::Ordering;
use std::fmt::{self, Write as _};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    /// An object member by name (or, in a parsed pointer, any reference token).
    Key(String),
    /// An array element by position.
    Index(usize),
    /// Object member number `i` (in the object's iteration order), its name withheld
    /// because the name itself carries data that must not be written out.
    Member(usize),
}

/// One step of a path borrowed from the value being walked: what a walk keeps per
/// level, so that a [`JsonPath`] (which owns its keys) is built only where something
/// is found ([`JsonPath::from_steps`], [`JsonPath::is_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// An object member by name.
    Key(&'a str),
    /// An array element by position.
    Index(usize),
    /// Object member number `i`, its name withheld (see [`Segment::Member`]).
    Member(usize),
}

/// A path into a JSON value. The root is the empty path (written `""`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JsonPath {
    segments: Vec<Segment>,
}

/// Why a string is not a JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A non-empty pointer must start with `/`.
    #[error("a json pointer is empty or starts with `/`")]
    NoLeadingSlash,
    /// `~` must be followed by `0`, `1`, or (`~k`) a member number.
    #[error("`~` in a json pointer must be followed by `0` or `1` (reference token {token})")]
    BadEscape {
        /// 1-based position of the reference token.
        token: usize,
    },
}

impl JsonPath {
    /// The empty path (the whole value).
    pub fn root() -> JsonPath {
        JsonPath::default()
    }

    /// A path from its segments.
    pub fn from_segments(segments: Vec<Segment>) -> JsonPath {
        JsonPath { segments }
    }

    /// Parse an RFC 6901 pointer (and the `~k<i>` segment this crate writes).
    /// Reference tokens stay [`Segment::Key`]s: whether `0` is a key or an index
    /// depends on the value the path is applied to (see [`JsonPath::get`]).
    pub fn parse(pointer: &str) -> Result<JsonPath, PathError> {
        if pointer.is_empty() {
            return Ok(JsonPath::root());
        }
        let Some(rest) = pointer.strip_prefix('/') else {
            return Err(PathError::NoLeadingSlash);
        };
        let mut segments = Vec::new();
        for (n, token) in rest.split('/').enumerate() {
            if let Some(i) = token.strip_prefix("~k").and_then(parse_index) {
                segments.push(Segment::Member(i));
                continue;
            }
            let mut key = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    key.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => key.push('~'),
                    Some('1') => key.push('/'),
                    _ => return Err(PathError::BadEscape { token: n + 1 }),
                }
            }
            segments.push(Segment::Key(key));
        }
        Ok(JsonPath { segments })
    }

    /// The path a walk is at (its borrowed steps, outermost first).
    pub fn from_steps(steps: &[Step<'_>]) -> JsonPath {
        JsonPath {
            segments: steps
                .iter()
                .map(|s| match *s {
                    Step::Key(k) => Segment::Key(k.to_string()),
                    Step::Index(i) => Segment::Index(i),
                    Step::Member(i) => Segment::Member(i),
                })
                .collect(),
        }
    }

    /// Whether a walk at `steps` is at this path, without building a [`JsonPath`]. As
    /// in [`JsonPath::get`], a key token that is an RFC 6901 index names an element.
    pub fn is_at(&self, steps: &[Step<'_>]) -> bool {
        self.segments.len() == steps.len()
            && self
                .segments
                .iter()
                .zip(steps)
                .all(|(seg, step)| match (seg, *step) {
                    (Segment::Key(d), Step::Key(k)) => d == k,
                    (Segment::Key(d), Step::Index(i)) => parse_index(d) == Some(i),
                    (Segment::Index(d), Step::Index(i)) | (Segment::Member(d), Step::Member(i)) => {
                        *d == i
                    }
                    _ => false,
                })
    }

    /// Whether both paths are written the same (and so name the same place): as
    /// [`JsonPath::starts_with`], `Key("3")` and `Index(3)` are one element.
    pub fn same_place(&self, other: &JsonPath) -> bool {
        self.segments.len() == other.segments.len() && self.starts_with(other)
    }

    /// The order of the two paths' pointer texts (byte-wise, as `str` orders), without
    /// writing the paths out: only a pair of differing segments is rendered.
    pub fn cmp_pointer(&self, other: &JsonPath) -> Ordering {
        let (mut ta, mut tb) = (String::new(), String::new());
        let (na, nb) = (self.segments.len(), other.segments.len());
        for (i, (a, b)) in self.segments.iter().zip(&other.segments).enumerate() {
            if a == b {
                continue;
            }
            ta.clear();
            tb.clear();
            let _ = write_token(&mut ta, a);
            let _ = write_token(&mut tb, b);
            if ta == tb {
                continue;
            }
            // A token never holds `/`: what follows each one is `/` (another segment)
            // or the end, so the texts differ within these bytes.
            let sep = |n: usize| (i + 1 < n).then_some(b'/');
            return ta.bytes().chain(sep(na)).cmp(tb.bytes().chain(sep(nb)));
        }
        na.cmp(&nb)
    }

    /// The same place with every segment spelled as `value` has it: a withheld
    /// member by its key, a numeric key token of an array by its index. `None` when
    /// the path does not resolve. The result spells out withheld names: it is for
    /// editing `value`, not for writing out.
    pub fn resolve(&self, value: &Value) -> Option<JsonPath> {
        let mut v = value;
        let mut out = Vec::with_capacity(self.segments.len());
        for s in &self.segments {
            match (s, v) {
                (Segment::Key(k), Value::Object(m)) => {
                    v = m.get(k)?;
                    out.push(Segment::Key(k.clone()));
                }
                (Segment::Member(i), Value::Object(m)) => {
                    let (k, next) = m.iter().nth(*i)?;
                    v = next;
                    out.push(Segment::Key(k.clone()));
                }
                (Segment::Key(k), Value::Array(a)) => {
                    let i = parse_index(k)?;
                    v = a.get(i)?;
                    out.push(Segment::Index(i));
                }
                (Segment::Index(i), Value::Array(a)) => {
                    v = a.get(*i)?;
                    out.push(Segment::Index(*i));
                }
                _ => return None,
            }
        }
        Some(JsonPath { segments: out })
    }

    /// The path without its last segment (`None` for the root).
    pub fn parent(&self) -> Option<JsonPath> {
        let (_, parents) = self.segments.split_last()?;
        Some(JsonPath::from_segments(parents.to_vec()))
    }

    /// The last segment (`None` for the root).
    pub fn last(&self) -> Option<&Segment> {
        self.segments.last()
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Whether the path has no segments (the root).
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Append a segment.
    pub fn push(&mut self, segment: Segment) {
        self.segments.push(segment);
    }

    /// Remove the last segment.
    pub fn pop(&mut self) -> Option<Segment> {
        self.segments.pop()
    }

    /// This path with one more segment.
    pub fn child(&self, segment: Segment) -> JsonPath {
        let mut p = self.clone();
        p.segments.push(segment);
        p
    }

    /// This path followed by member `key`.
    pub fn key(&self, key: &str) -> JsonPath {
        self.child(Segment::Key(key.to_string()))
    }

    /// This path followed by element `i`.
    pub fn index(&self, i: usize) -> JsonPath {
        self.child(Segment::Index(i))
    }

    /// Whether `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &JsonPath) -> bool {
        self.segments.len() >= other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| segment_eq(a, b))
    }

    /// Whether a [`Segment::Member`] occurs in the path (a name was withheld).
    pub fn withholds_a_name(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Member(_)))
    }

    /// The value this path names in `value`. A [`Segment::Key`] whose token is a
    /// number selects an array element too (RFC 6901); [`Segment::Member`] selects
    /// the object's member by position.
    pub fn get<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        let mut v = value;
        for s in &self.segments {
            v = match (s, v) {
                (Segment::Key(k), Value::Object(m)) => m.get(k)?,
                (Segment::Key(k), Value::Array(a)) => a.get(parse_index(k)?)?,
                (Segment::Index(i), Value::Array(a)) => a.get(*i)?,
                (Segment::Member(i), Value::Object(m)) => m.values().nth(*i)?,
                _ => return None,
            };
        }
        Some(v)
    }

    /// The other paths in `value` that a case-insensitive reader would take for this
    /// one: every concrete path whose member names equal this path's keys under Unicode
    /// case folding ([`fold_name`]) but not exactly (Go's `encoding/json` binds
    /// `{"URL": …}` to a field tagged `url`, and `{"ſite": …}` (U+017F) to one tagged `site`). Exact matches are not
    /// listed. Every path returned is a distinct path of `value`, so there are never
    /// more than `value` has members.
    pub fn fold_variants(&self, value: &Value) -> Vec<JsonPath> {
        let mut out = Vec::new();
        fold_walk(&self.segments, value, JsonPath::root(), false, &mut out);
        out
    }

    /// Mutable [`JsonPath::get`].
    pub fn get_mut<'a>(&self, value: &'a mut Value) -> Option<&'a mut Value> {
        let mut v = value;
        for s in &self.segments {
            v = match (s, v) {
                (Segment::Key(k), Value::Object(m)) => m.get_mut(k)?,
                (Segment::Key(k), Value::Array(a)) => a.get_mut(parse_index(k)?)?,
                (Segment::Index(i), Value::Array(a)) => a.get_mut(*i)?,
                (Segment::Member(i), Value::Object(m)) => m.values_mut().nth(*i)?,
                _ => return None,
            };
        }
        Some(v)
    }

    /// The RFC 6901 text of the path (`~k<i>` for withheld names).
    pub fn to_pointer(&self) -> String {
        self.to_string()
    }
}

/// `Key("3")` and `Index(3)` name the same element of an array.
fn segment_eq(a: &Segment, b: &Segment) -> bool {
    match (a, b) {
        (Segment::Key(k), Segment::Index(i)) | (Segment::Index(i), Segment::Key(k)) => {
            parse_index(k) == Some(*i)
        }
        _ => a == b,
    }
}

/// An RFC 6901 array index: `0`, or digits without a leading zero.
fn parse_index(token: &str) -> Option<usize> {
    if token.is_empty()
        || !token.bytes().all(|b| b.is_ascii_digit())
        || (token.len() > 1 && token.starts_with('0'))
    {
        return None;
    }
    token.parse().ok()
}

/// The reference token of one segment (without its `/`): the one place a path is
/// written. A key's `~` and `/` are `~0` and `~1` (RFC 6901); a withheld member is
/// `~k<i>`, which no escaped key can be.
fn write_token(w: &mut impl fmt::Write, s: &Segment) -> fmt::Result {
    match s {
        Segment::Key(k) => {
            for c in k.chars() {
                match c {
                    '~' => w.write_str("~0")?,
                    '/' => w.write_str("~1")?,
                    c => w.write_char(c)?,
                }
            }
            Ok(())
        }
        Segment::Index(i) => write!(w, "{i}"),
        Segment::Member(i) => write!(w, "~k{i}"),
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.segments {
            f.write_char('/')?;
            write_token(f, s)?;
        }
        Ok(())
    }
}

impl Serialize for JsonPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JsonPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<JsonPath, D::Error> {
        let s = String::deserialize(d)?;
        JsonPath::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for JsonPath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<JsonPath, PathError> {
        JsonPath::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn member_finds_what_a_pointer_of_plain_names_finds() {
        let v = json!({"params": {"_meta": {"io.modelcontextprotocol/x": 1, "t": [0]}}, "n": null});
        for keys in [
            &["params", "_meta"][..],
            &["params", "_meta", "t"],
            &["n"],
            &["params", "missing"],
            &["n", "below-null"],
            &[],
        ] {
            let pointer: String = keys.iter().map(|k| format!("/{k}")).collect();
            assert_eq!(member(&v, keys), v.pointer(&pointer), "{pointer}");
        }
        // A name with `/` is a name, not two.
        assert_eq!(
            member(&v, &["params", "_meta", "io.modelcontextprotocol/x"]),
            Some(&json!(1))
        );
        // Arrays are not indexed by name.
        assert_eq!(member(&v, &["params", "_meta", "t", "0"]), None);
        let mut w = v.clone();
        *member_mut(&mut w, &["params", "_meta", "io.modelcontextprotocol/x"]).unwrap() = json!(2);
        assert_eq!(
            w.pointer("/params/_meta/io.modelcontextprotocol~1x"),
            Some(&json!(2))
        );
        assert_eq!(member_mut(&mut w, &["n", "below-null"]), None);
    }

    #[test]
    fn writes_rfc6901_pointers() {
        let p = JsonPath::root().key("a/b").key("c~d").index(2).key("");
        assert_eq!(p.to_string(), "/a~1b/c~0d/2/");
        assert_eq!(JsonPath::root().to_string(), "");
    }

    #[test]
    fn a_withheld_member_cannot_collide_with_any_key() {
        // Regression (review): a literal key named `[key:1]` was read as the
        // placeholder for a withheld key, which defeated redaction.
        let withheld = JsonPath::root().child(Segment::Member(1));
        for key in ["[key:1]", "~k1", "~0k1", "k1", "~1k1"] {
            let real = JsonPath::root().key(key);
            assert_ne!(real.to_string(), withheld.to_string(), "{key}");
            assert_eq!(JsonPath::parse(&real.to_string()).unwrap(), real);
        }
        assert_eq!(JsonPath::parse("/~k1").unwrap(), withheld);
    }

    #[test]
    fn gets_values_by_key_index_and_member() {
        let v = json!({"a": [10, {"b": 1}], "s3cr3t": {"x": 5}});
        assert_eq!(JsonPath::parse("/a/1/b").unwrap().get(&v), Some(&json!(1)));
        assert_eq!(JsonPath::root().key("a").index(0).get(&v), Some(&json!(10)));
        let m = JsonPath::from_segments(vec![Segment::Member(1), Segment::Key("x".into())]);
        assert_eq!(m.get(&v), Some(&json!(5)));
        assert_eq!(JsonPath::parse("/a/01").unwrap().get(&v), None);
        assert_eq!(JsonPath::parse("/nope").unwrap().get(&v), None);
    }

    #[test]
    fn bad_pointers_are_named() {
        assert_eq!(JsonPath::parse("a"), Err(PathError::NoLeadingSlash));
        assert_eq!(
            JsonPath::parse("/a/~2"),
            Err(PathError::BadEscape { token: 2 })
        );
        assert_eq!(
            JsonPath::parse("/~"),
            Err(PathError::BadEscape { token: 1 })
        );
    }

    #[test]
    fn prefixes_treat_numeric_keys_as_indexes() {
        let parsed = JsonPath::parse("/a/0").unwrap();
        let built = JsonPath::root().key("a").index(0).key("b");
        assert!(built.starts_with(&parsed));
        assert!(!parsed.starts_with(&built));
    }

    fn arb_segment() -> impl Strategy<Value = Segment> {
        prop_oneof![
            "[a~/0-9.\\-]{0,3}".prop_map(Segment::Key),
            (0usize..12).prop_map(Segment::Index),
            (0usize..12).prop_map(Segment::Member),
        ]
    }

    fn arb_path() -> impl Strategy<Value = JsonPath> {
        proptest::collection::vec(arb_segment(), 0..4).prop_map(JsonPath::from_segments)
    }

    #[test]
    fn walk_steps_build_and_match_paths() {
        let steps = [Step::Key("a/b"), Step::Index(3), Step::Member(1)];
        let p = JsonPath::from_steps(&steps);
        assert_eq!(p.to_string(), "/a~1b/3/~k1");
        assert!(p.is_at(&steps));
        assert!(JsonPath::parse("/a~1b/3/~k1").unwrap().is_at(&steps));
        assert!(!JsonPath::parse("/a~1b/03/~k1").unwrap().is_at(&steps));
        assert!(!JsonPath::parse("/a~1b/3").unwrap().is_at(&steps));
        assert!(!JsonPath::parse("/a~1b/3/~0k1").unwrap().is_at(&steps));
        assert!(JsonPath::root().is_at(&[]));
    }

    #[test]
    fn resolve_spells_members_and_indexes_as_the_value_has_them() {
        let v = json!({"a": [10, {"s3cr3t": 1}]});
        let p = JsonPath::from_segments(vec![
            Segment::Key("a".into()),
            Segment::Key("1".into()),
            Segment::Member(0),
        ]);
        let r = p.resolve(&v).unwrap();
        assert_eq!(
            r.segments(),
            [
                Segment::Key("a".into()),
                Segment::Index(1),
                Segment::Key("s3cr3t".into())
            ]
        );
        assert_eq!(r.get(&v), Some(&json!(1)));
        assert_eq!(r.parent().unwrap().to_string(), "/a/1");
        assert_eq!(r.last(), Some(&Segment::Key("s3cr3t".into())));
        assert_eq!(JsonPath::root().parent(), None);
        assert_eq!(JsonPath::parse("/a/01").unwrap().resolve(&v), None);
        assert_eq!(JsonPath::parse("/a/0/x").unwrap().resolve(&v), None);
    }

    fn unicode_fold(name: &str) -> String {
        name.chars()
            .flat_map(char::to_uppercase)
            .flat_map(char::to_lowercase)
            .collect()
    }

    proptest! {
        // The ASCII fast paths of `fold_name` and `fold_eq` must fold exactly like the
        // Unicode path, including the non-ASCII names that fold to ASCII (`ſ`, Kelvin `K`).
        #[test]
        fn fold_fast_paths_agree_with_unicode_folding(
            a in "[a-zA-Z0-9_ſKß\\-]{0,8}",
            b in "[a-zA-Z0-9_ſKß\\-]{0,8}",
        ) {
            prop_assert_eq!(fold_name(&a), unicode_fold(&a));
            prop_assert_eq!(fold_eq(&a, &b), unicode_fold(&a) == unicode_fold(&b));
            prop_assert!(fold_eq(&a, &a.to_ascii_uppercase()));
        }

        // The scanner orders findings with `cmp_pointer`; its outputs must keep the
        // order of the pointer texts they had when pointers were strings.
        #[test]
        fn cmp_pointer_orders_like_the_pointer_text(a in arb_path(), b in arb_path()) {
            prop_assert_eq!(a.cmp_pointer(&b), a.to_string().cmp(&b.to_string()));
            prop_assert_eq!(a.same_place(&b), a.to_string() == b.to_string());
        }

        #[test]
        fn keys_round_trip(keys in proptest::collection::vec(".*", 0..5)) {
            let mut p = JsonPath::root();
            for k in &keys { p = p.key(k); }
            let text = p.to_string();
            prop_assert_eq!(JsonPath::parse(&text).unwrap(), p.clone());
            let json = serde_json::to_string(&p).unwrap();
            let back: JsonPath = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, p);
        }
    }
}

/// The value reached from `value` through the object members `keys`, in turn: what
/// `value.pointer("/a/b")` finds for names without `/` or `~`, without a pointer string
/// to split and unescape (which allocates) on every lookup of a hot path.
pub fn member<'a>(value: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(value, |v, k| v.as_object()?.get(*k))
}

/// [`member`], for changing the value found.
pub fn member_mut<'a>(value: &'a mut Value, keys: &[&str]) -> Option<&'a mut Value> {
    keys.iter()
        .try_fold(value, |v, k| v.as_object_mut()?.get_mut(*k))
}

/// A member name under Unicode case folding (upper, then lower case: `ſ` and `s`, `K`
/// (Kelvin) and `k` fold alike), the way case-insensitive JSON readers compare names.
pub fn fold_name(name: &str) -> String {
    if name.is_ascii() {
        // Upper then lower case of an ASCII character is its ASCII lower case: the
        // common case (every member of every message is folded) without the per-char
        // Unicode tables.
        return name.to_ascii_lowercase();
    }
    name.chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether `a` and `b` are equal under [`fold_name`], without allocating when both
/// are ASCII.
pub fn fold_eq(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        fold_name(a) == fold_name(b)
    }
}

fn fold_walk(
    rest: &[Segment],
    value: &Value,
    at: JsonPath,
    differs: bool,
    out: &mut Vec<JsonPath>,
) {
    let Some((first, rest)) = rest.split_first() else {
        if differs {
            out.push(at);
        }
        return;
    };
    match (first, value) {
        (Segment::Key(k), Value::Object(m)) => {
            let folded = fold_name(k);
            for (name, v) in m {
                let exact = name == k;
                if exact || fold_name(name) == folded {
                    fold_walk(rest, v, at.key(name), differs || !exact, out);
                }
            }
        }
        (Segment::Key(k), Value::Array(a)) => {
            if let Some(v) = parse_index(k).and_then(|i| a.get(i)) {
                fold_walk(rest, v, at.key(k), differs, out);
            }
        }
        (Segment::Index(i), Value::Array(a)) => {
            if let Some(v) = a.get(*i) {
                fold_walk(rest, v, at.index(*i), differs, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod fold_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fold_variants_name_every_member_a_case_insensitive_reader_binds() {
        let p = JsonPath::parse("/a/0/url").unwrap_or_default();
        let v = json!({"a": [{"url": 1, "URL": 2, "\u{212A}": 3}], "A": [{"url": 4}], "b": 5});
        let k = JsonPath::parse("/k").unwrap_or_default();
        assert_eq!(
            k.fold_variants(&v["a"][0]).len(),
            1,
            "the Kelvin sign folds to k"
        );
        let s = JsonPath::parse("/site").unwrap_or_default();
        assert_eq!(
            s.fold_variants(&json!({"ſite": 1})).len(),
            1,
            "U+017F folds to s"
        );
        let mut got: Vec<String> = p
            .fold_variants(&v)
            .iter()
            .map(JsonPath::to_pointer)
            .collect();
        got.sort();
        assert_eq!(got, ["/A/0/url", "/a/0/URL"]);
        assert!(
            JsonPath::parse("/url")
                .unwrap_or_default()
                .fold_variants(&json!({"url": 1}))
                .is_empty()
        );
    }
}
