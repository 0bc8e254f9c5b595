//! What a tool descriptor tells the gate: its pin (a digest of everything the model
//! or client may act on) and the fields of its input schema that hold destinations.
//!
//! A server's descriptor is an untrusted party's word: it may only *add* destination
//! fields to check, never remove one the policy declares.

use conductor_types::JsonPath;
use serde_json::Value;
use sha2::Digest;

/// One step of a path into the arguments learned from a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// An object member.
    Key(String),
    /// Every element of an array.
    Each,
}

/// The destination fields of an input schema, as paths with [`Seg::Each`] for arrays.
pub fn destination_paths(schema: &Value) -> Vec<Vec<Seg>> {
    let mut paths = Vec::new();
    learn_paths(schema, &mut Vec::new(), &mut paths, 0);
    paths
}

/// `sha256:<hex>` of the canonical JSON of a whole tool descriptor except `_meta`:
/// name, description, input schema and annotations, and also `title`, `outputSchema`,
/// `icons` and anything a later protocol revision adds — every field the model or the
/// client may act on. A server that changes any of them mid-session is a rug pull.
pub fn descriptor_digest(tool: &Value) -> String {
    let pinned = match tool {
        Value::Object(m) => {
            let mut d = m.clone();
            d.remove("_meta");
            Value::Object(d)
        }
        other => other.clone(),
    };
    let text = conductor_audit::canonical_json(&pinned);
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    )
}

const MAX_SCHEMA_DEPTH: usize = 16;

const URI_FORMATS: [&str; 5] = ["uri", "uri-reference", "iri", "iri-reference", "url"];
const COMBINATORS: [&str; 3] = ["anyOf", "oneOf", "allOf"];

/// `schema` with a local `$ref` (`#/$defs/…`, `#/definitions/…`) resolved against
/// `root`; anything else as is.
fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    let mut s = schema;
    for _ in 0..MAX_SCHEMA_DEPTH {
        match s.get("$ref").and_then(Value::as_str) {
            Some(r) if r.starts_with('#') => match root.pointer(r.get(1..).unwrap_or("")) {
                Some(target) => s = target,
                None => break,
            },
            _ => break,
        }
    }
    s
}

/// Whether `schema` (or one of its `anyOf`/`oneOf`/`allOf` branches, `$ref`s
/// resolved) has a URI format.
fn has_uri_format(schema: &Value, root: &Value, depth: usize) -> bool {
    if depth > MAX_SCHEMA_DEPTH {
        return false;
    }
    let schema = resolve(schema, root);
    if schema
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|f| URI_FORMATS.contains(&f))
    {
        return true;
    }
    COMBINATORS.iter().any(|c| {
        schema
            .get(*c)
            .and_then(Value::as_array)
            .is_some_and(|bs| bs.iter().any(|b| has_uri_format(b, root, depth + 1)))
    })
}

fn is_destination_field(name: &str, schema: &Value, root: &Value) -> bool {
    if has_uri_format(schema, root, 0) {
        return true;
    }
    let n: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    matches!(
        n.as_str(),
        "url" | "uri" | "endpoint" | "host" | "hostname" | "href" | "baseurl"
    )
}

/// Learn the paths of destination fields from a JSON Schema (properties, nested
/// objects, array items, `anyOf`/`oneOf`/`allOf` branches, local `$ref`s).
fn learn_paths(schema: &Value, prefix: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>, depth: usize) {
    learn(schema, schema, prefix, out, depth);
}

fn learn(
    schema: &Value,
    root: &Value,
    prefix: &mut Vec<Seg>,
    out: &mut Vec<Vec<Seg>>,
    depth: usize,
) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    let schema = resolve(schema, root);
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            prefix.push(Seg::Key(name.clone()));
            if is_destination_field(name, sub, root) && !out.contains(prefix) {
                out.push(prefix.clone());
            }
            learn(sub, root, prefix, out, depth + 1);
            prefix.pop();
        }
    }
    if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
        prefix.push(Seg::Each);
        if has_uri_format(items, root, 0) && !out.contains(prefix) {
            out.push(prefix.clone());
        }
        learn(items, root, prefix, out, depth + 1);
        prefix.pop();
    }
    for c in COMBINATORS {
        if let Some(branches) = schema.get(c).and_then(Value::as_array) {
            for b in branches {
                learn(b, root, prefix, out, depth + 1);
            }
        }
    }
}

/// The JSON pointers of learned fields present in `arguments`.
pub fn expand_paths(paths: &[Vec<Seg>], arguments: &Value) -> Vec<JsonPath> {
    let mut out = Vec::new();
    for path in paths {
        expand(path, arguments, JsonPath::root(), &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn expand(path: &[Seg], value: &Value, pointer: JsonPath, out: &mut Vec<JsonPath>) {
    let Some((first, rest)) = path.split_first() else {
        if !value.is_null() {
            out.push(pointer);
        }
        return;
    };
    match first {
        Seg::Key(k) => {
            if let Some(v) = value.get(k) {
                expand(rest, v, pointer.key(k), out);
            }
        }
        Seg::Each => {
            if let Some(items) = value.as_array() {
                for (i, v) in items.iter().enumerate() {
                    expand(rest, v, pointer.index(i), out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[test]
    fn schema_fields_are_learned() {
        let schema = json!({"type":"object","properties":{
            "url": {"type":"string"},
            "q": {"type":"string"},
            "target": {"type":"string","format":"uri"},
            "opts": {"type":"object","properties":{"Base_URL":{"type":"string"},"a/b":{"format":"iri"}}},
            "list": {"type":"array","items":{"type":"string","format":"uri"}},
            "objs": {"type":"array","items":{"type":"object","properties":{"href":{"type":"string"}}}}
        }});
        let mut paths = Vec::new();
        learn_paths(&schema, &mut Vec::new(), &mut paths, 0);
        let args = json!({"url":"u","q":"x","target":"t","opts":{"Base_URL":"b","a/b":"c"},
                          "list":["x","y"],"objs":[{"href":"h"},{"nohref":1}]});
        assert_eq!(
            expand_paths(&paths, &args)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec![
                "/list/0",
                "/list/1",
                "/objs/0/href",
                "/opts/Base_URL",
                "/opts/a~1b",
                "/target",
                "/url"
            ]
        );
    }

    #[test]
    fn schema_combinators_and_refs_are_followed() {
        // The shapes Pydantic v2 writes: Optional[AnyUrl], nested models by $ref.
        let schema = json!({"type":"object","properties":{
            "target": {"anyOf":[{"type":"string","format":"uri","minLength":1},{"type":"null"}]},
            "server": {"$ref":"#/$defs/Server"},
            "mirrors": {"type":"array","items":{"$ref":"#/$defs/Url"}},
            "loop": {"$ref":"#/$defs/Loop"}
        },"$defs":{
            "Server":{"type":"object","properties":{"address":{"allOf":[{"$ref":"#/$defs/Url"}]}}},
            "Url":{"type":"string","format":"uri"},
            "Loop":{"$ref":"#/$defs/Loop"}
        }});
        let mut paths = Vec::new();
        learn_paths(&schema, &mut Vec::new(), &mut paths, 0);
        let args = json!({"target":"t","server":{"address":"a"},"mirrors":["m"],"loop":{}});
        assert_eq!(
            expand_paths(&paths, &args)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec!["/mirrors/0", "/server/address", "/target"]
        );
    }

    #[test]
    fn digest_covers_every_field_but_meta() {
        let a = json!({"name":"t","description":"d","inputSchema":{},"title":"x","_meta":{"n":1}});
        let b = json!({"name":"t","description":"d","inputSchema":{},"title":"x","_meta":{"n":2}});
        let c = json!({"name":"t","description":"d2","inputSchema":{},"title":"x"});
        // Review finding: a changed `title` or `outputSchema` was not a rug pull.
        let d = json!({"name":"t","description":"d","inputSchema":{},"title":"y"});
        let e = json!({"name":"t","description":"d","inputSchema":{},"title":"x",
                       "outputSchema":{"type":"object"}});
        assert_eq!(descriptor_digest(&a), descriptor_digest(&b));
        for changed in [&c, &d, &e] {
            assert_ne!(descriptor_digest(&a), descriptor_digest(changed));
        }
    }
}
