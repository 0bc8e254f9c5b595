//! A serde deserializer over the spanned [`Node`] tree, built to report every
//! problem of a policy file at once.
//!
//! Three helpers make that work with ordinary `#[derive(Deserialize)]` structs:
//! - [`Sp<T>`]: a value together with its [`Loc`];
//! - [`Lenient<T>`]: a value that, when it does not deserialize, records the
//!   problem and becomes `None` instead of failing its parent — the tree is
//!   fully in memory, so the parent can carry on with its next entry;
//! - unknown keys of every struct are recorded (with the key's span) and skipped
//!   by the deserializer itself, so they never abort the parent either.
//!
//! Problems are collected in a thread-local sink that lives for one
//! [`collect`] call.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, Error as _, IntoDeserializer, Visitor,
};

use crate::yaml::node::{Kind, Loc, Node};

/// A problem found while reading the tree.
#[derive(Debug, Clone)]
pub struct DeProblem {
    pub loc: Option<Loc>,
    pub message: String,
}

#[derive(Default)]
struct Ctx {
    problems: Vec<DeProblem>,
    /// Location attached to the most recent error (read by [`Lenient`]).
    last_loc: Option<Loc>,
}

thread_local! {
    static CTX: RefCell<Option<Ctx>> = const { RefCell::new(None) };
}

/// Deserialize `T` from `node`, returning the value (if the root itself could be
/// read) and every problem recorded along the way.
pub fn collect<'a, T: Deserialize<'a>>(node: &'a Node) -> (Option<T>, Vec<DeProblem>) {
    CTX.with(|c| *c.borrow_mut() = Some(Ctx::default()));
    let r = T::deserialize(NodeDe(node));
    let mut ctx = CTX.with(|c| c.borrow_mut().take()).unwrap_or_default();
    let v = match r {
        Ok(v) => Some(v),
        Err(e) => {
            ctx.problems.push(DeProblem {
                loc: e.loc.or(Some(node.loc)),
                message: e.msg,
            });
            None
        }
    };
    (v, ctx.problems)
}

fn record(p: DeProblem) {
    CTX.with(|c| {
        if let Some(ctx) = c.borrow_mut().as_mut() {
            ctx.problems.push(p);
        }
    });
}

fn set_last_loc(loc: Option<Loc>) {
    CTX.with(|c| {
        if let Some(ctx) = c.borrow_mut().as_mut() {
            ctx.last_loc = loc;
        }
    });
}

fn last_loc() -> Option<Loc> {
    CTX.with(|c| c.borrow().as_ref().and_then(|ctx| ctx.last_loc))
}

/// The error of [`NodeDe`]: a message and the node it is about.
#[derive(Debug, Clone)]
pub struct DeError {
    msg: String,
    loc: Option<Loc>,
}

impl DeError {
    fn at(mut self, loc: Loc) -> Self {
        if self.loc.is_none() {
            self.loc = Some(loc);
            set_last_loc(Some(loc));
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            msg: msg.to_string(),
            loc: None,
        }
    }
    fn invalid_type(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        let found = match unexp {
            de::Unexpected::Unit => "nothing (null)".to_string(),
            de::Unexpected::Map => "a mapping".to_string(),
            de::Unexpected::Seq => "a list".to_string(),
            de::Unexpected::Str(s) => format!("the string `{s}`"),
            other => other.to_string(),
        };
        let exp = match exp.to_string().as_str() {
            "f32" | "f64" | "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32"
            | "u64" | "u128" => "a number".to_string(),
            "a sequence" => "a list".to_string(),
            "a borrowed string" => "a string".to_string(),
            "a map" => "a mapping".to_string(),
            other => other.to_string(),
        };
        DeError::custom(format_args!("expected {exp}, found {found}"))
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::custom(format_args!(
            "unknown key `{field}`; expected one of {}",
            one_of(expected)
        ))
    }
    fn missing_field(field: &'static str) -> Self {
        DeError::custom(format_args!("missing key `{field}`"))
    }
}

pub fn one_of(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

const SP_MARKER: &str = "$conductor::Sp";
const SP_FIELDS: &[&str] = &["loc", "value"];

/// A deserializer over one node.
#[derive(Clone, Copy)]
pub struct NodeDe<'a>(pub &'a Node);

impl<'de> Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let n = self.0;
        let r = match &n.kind {
            Kind::Null => v.visit_unit(),
            Kind::Bool(b) => v.visit_bool(*b),
            Kind::Int(i) => v.visit_i64(*i),
            Kind::UInt(u) => v.visit_u64(*u),
            Kind::Float(f) => v.visit_f64(*f),
            Kind::Str(s) => v.visit_borrowed_str(s.as_str()),
            Kind::Seq(items) => v.visit_seq(SeqDe {
                items: items.iter(),
            }),
            Kind::Map(entries) => v.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
                fields: None,
            }),
        };
        r.map_err(|e| e.at(n.loc))
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.0.kind {
            Kind::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
        .map_err(|e| e.at(self.0.loc))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self).map_err(|e| e.at(self.0.loc))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let n = self.0;
        if name == SP_MARKER {
            return v
                .visit_map(SpDe { node: n, state: 0 })
                .map_err(|e| e.at(n.loc));
        }
        let r = match &n.kind {
            Kind::Map(entries) => v.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
                fields: Some(fields),
            }),
            other => Err(DeError::custom(format_args!(
                "expected a mapping with keys {}, found {}",
                one_of(fields),
                other.describe()
            ))),
        };
        r.map_err(|e| e.at(n.loc))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'de> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(n) => seed.deserialize(NodeDe(n)).map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
    /// For structs: the known keys; unknown ones are recorded and skipped.
    fields: Option<&'static [&'static str]>,
}

impl<'de> de::MapAccess<'de> for MapDe<'de> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        for (k, v) in self.entries.by_ref() {
            if let Some(fields) = self.fields {
                let known = matches!(&k.kind, Kind::Str(s) if fields.contains(&s.as_str()));
                if !known {
                    let name = match &k.kind {
                        Kind::Str(s) => s.clone(),
                        other => other.describe().to_string(),
                    };
                    record(DeProblem {
                        loc: Some(k.loc),
                        message: format!(
                            "unknown key `{name}`; expected one of {}",
                            one_of(fields)
                        ),
                    });
                    continue;
                }
            }
            self.value = Some(v);
            return seed.deserialize(NodeDe(k)).map(Some);
        }
        Ok(None)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(v) => seed.deserialize(NodeDe(v)),
            None => Err(DeError::custom("a value was asked for before its key")),
        }
    }
}

/// Feeds `{loc: [line, col, offset, len], value: <node>}` to [`Sp`]'s visitor.
struct SpDe<'a> {
    node: &'a Node,
    state: u8,
}

impl<'de> de::MapAccess<'de> for SpDe<'de> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let key = match self.state {
            0 => "loc",
            1 => "value",
            _ => return Ok(None),
        };
        seed.deserialize(key.into_deserializer()).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        self.state += 1;
        if self.state == 1 {
            let l = self.node.loc;
            let parts: [u64; 4] = [
                u64::from(l.line),
                u64::from(l.col),
                l.offset as u64,
                l.len as u64,
            ];
            seed.deserialize(de::value::SeqDeserializer::new(parts.into_iter()))
        } else {
            seed.deserialize(NodeDe(self.node))
        }
    }
}

/// A value with the place it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Sp<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T> std::ops::Deref for Sp<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sp<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Sp<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a spanned value")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<Sp<T>, A::Error> {
                let _: Option<String> = m.next_key()?;
                let [line, col, offset, len]: [u64; 4] = m.next_value()?;
                let _: Option<String> = m.next_key()?;
                let value: T = m.next_value()?;
                Ok(Sp {
                    value,
                    loc: Loc {
                        line: u32::try_from(line).unwrap_or(u32::MAX),
                        col: u32::try_from(col).unwrap_or(u32::MAX),
                        offset: usize::try_from(offset).unwrap_or(0),
                        len: usize::try_from(len).unwrap_or(0),
                    },
                })
            }
        }
        d.deserialize_struct(SP_MARKER, SP_FIELDS, V(PhantomData))
    }
}

/// A value that records its problem and becomes `None` instead of failing its parent.
#[derive(Debug, Clone, PartialEq)]
pub struct Lenient<T>(pub Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        set_last_loc(None);
        match T::deserialize(d) {
            Ok(v) => Ok(Lenient(Some(v))),
            Err(e) => {
                record(DeProblem {
                    loc: last_loc(),
                    message: e.to_string(),
                });
                Ok(Lenient(None))
            }
        }
    }
}

/// The entries of a mapping, in file order, with spanned keys. `null` reads as empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Entries<V>(pub Vec<(Sp<String>, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Entries<V>, E> {
                Ok(Entries(Vec::new()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<Entries<V>, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<Sp<String>>()? {
                    let v = m.next_value::<V>()?;
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Vis(PhantomData))
    }
}
