//! A spanned YAML tree, read with hard input budgets.
//!
//! The policy is read in two steps: YAML text → [`Node`] tree (every node keeps
//! its line, column and byte span), then [`Node`] tree → `Raw*` structs through
//! the serde deserializer in [`crate::yaml::de`]. The tree step is where hostile input
//! (alias bombs, deep nesting, huge files) is refused; the second step can keep
//! going after an error, so that every problem in a file is reported at once.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Largest gateway file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// Where a node sits in the source: 1-based line and column, byte span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    pub line: u32,
    pub col: u32,
    pub offset: usize,
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub loc: Loc,
    pub kind: Kind,
}

impl Kind {
    /// How the kind is named in messages ("a string", "a list", ...).
    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "nothing (null)",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) | Kind::UInt(_) | Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let sp = Spanned::<Kind>::deserialize(d)?;
        let r = sp.referenced;
        let span = r.span();
        let loc = Loc {
            line: u32::try_from(r.line()).unwrap_or(u32::MAX),
            col: u32::try_from(r.column()).unwrap_or(u32::MAX),
            offset: span
                .byte_offset()
                .and_then(|o| usize::try_from(o).ok())
                .unwrap_or(0),
            len: span
                .byte_len()
                .and_then(|o| usize::try_from(o).ok())
                .unwrap_or(0),
        };
        Ok(Node {
            loc,
            kind: sp.value,
        })
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any yaml value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(KindVisitor)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::UInt(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Kind, E> {
        i64::try_from(v)
            .map(Kind::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Kind, E> {
        u64::try_from(v)
            .map(Kind::UInt)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, _v: &[u8]) -> Result<Kind, E> {
        Err(E::custom("binary values are not supported"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut out = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            out.push(n);
        }
        Ok(Kind::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<Node>()? {
            let v = map.next_value::<Node>()?;
            out.push((k, v));
        }
        Ok(Kind::Map(out))
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

/// A YAML error: message and, when known, where.
#[derive(Debug, Clone)]
pub struct YamlError {
    pub message: String,
    pub loc: Option<Loc>,
}

/// The serde-saphyr options: strict budgets sized for policy files.
fn options() -> serde_saphyr::Options {
    let budget = serde_saphyr::budget! {
        max_reader_input_bytes: Some(MAX_FILE_BYTES),
        max_events: 400_000,
        max_aliases: 1_000,
        max_anchors: 1_000,
        max_recorded_anchor_events: 20_000,
        max_recorded_anchor_bytes: 1024 * 1024,
        max_depth: 32,
        max_documents: 1,
        max_nodes: 200_000,
        max_total_scalar_bytes: MAX_FILE_BYTES,
        max_merge_keys: 100,
    };
    serde_saphyr::options! {
        budget: budget,
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 20_000,
            max_replay_stack_depth: 16,
            max_alias_expansions_per_anchor: 100,
        },
        strict_booleans: true,
        reject_unsupported_tags: true,
        with_snippet: false,
    }
}

/// Parse YAML text into a spanned tree, under the budgets above.
pub fn parse(source: &str) -> Result<Node, YamlError> {
    if source.len() > MAX_FILE_BYTES {
        return Err(YamlError {
            message: format!(
                "the gateway file is {} bytes, more than the limit of {} bytes",
                source.len(),
                MAX_FILE_BYTES
            ),
            loc: None,
        });
    }
    match serde_saphyr::from_str_with_options::<Option<Node>>(source, options()) {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(YamlError {
            message: "the gateway file is empty; it must start with `version: 1`".into(),
            loc: None,
        }),
        Err(e) => Err(convert_error(source, &e)),
    }
}

fn convert_error(source: &str, e: &serde_saphyr::Error) -> YamlError {
    let e = e.without_snippet();
    let loc = e.location().map(|l| {
        let line = u32::try_from(l.line()).unwrap_or(u32::MAX);
        let col = u32::try_from(l.column()).unwrap_or(u32::MAX);
        let offset = l
            .span()
            .byte_offset()
            .and_then(|o| usize::try_from(o).ok())
            .unwrap_or_else(|| offset_of(source, line, col));
        Loc {
            line,
            col,
            offset,
            len: 0,
        }
    });
    let message = match friendly(e) {
        Some(m) => m,
        None => {
            let opts = serde_saphyr::render_options! {
                snippets: serde_saphyr::SnippetMode::Off,
            };
            let mut message = e.render_with_options(opts);
            // The plain rendering ends in " at line X, column Y"; the location is
            // shown separately, so cut it off.
            if let Some(i) = message.find(" at line ") {
                message.truncate(i);
            }
            let m = lowercase_first(message.trim());
            if m.contains("recursion limit") {
                "the file nests too deeply (at most 32 levels)".to_string()
            } else {
                m
            }
        }
    };
    YamlError { message, loc }
}

const ALIAS_LIMIT: &str = "the file uses yaml aliases (`*name`) beyond the limits (1,000 aliases, 20,000 copied nodes): a file is refused when its aliases could expand it without bound";

/// Messages for the errors a hostile file provokes, without library internals.
fn friendly(e: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let mut e = e;
    while let E::AliasError { error, .. } | E::WithSnippet { error, .. } = e {
        e = error;
    }
    Some(match e {
        E::Budget { breach, .. } => match breach {
            B::Depth { .. } => "the file nests too deeply (at most 32 levels)".into(),
            B::Documents { .. } => {
                "a gateway file holds a single yaml document; remove the second `---`".into()
            }
            B::Aliases { .. }
            | B::Anchors { .. }
            | B::RecordedAnchorEvents { .. }
            | B::RecordedAnchorBytes { .. }
            | B::AliasAnchorRatio { .. } => ALIAS_LIMIT.into(),
            B::Events { .. } | B::Nodes { .. } => {
                "the file has too many yaml nodes (at most 200,000)".into()
            }
            _ => "the file exceeds a size limit of the file reader".into(),
        },
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => ALIAS_LIMIT.into(),
        E::DuplicateMappingKey { key, .. } => match key {
            Some(k) => format!("duplicate key `{k}`"),
            None => "duplicate key".into(),
        },
        _ => return None,
    })
}

/// Byte offset of a 1-based (line, column-in-characters) position.
pub fn offset_of(source: &str, line: u32, col: u32) -> usize {
    let mut off = 0usize;
    for (i, l) in source.split_inclusive('\n').enumerate() {
        if i + 1 == line as usize {
            let c = l
                .char_indices()
                .nth((col as usize).saturating_sub(1))
                .map_or(l.len(), |(b, _)| b);
            return off + c;
        }
        off += l.len();
    }
    source.len()
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
