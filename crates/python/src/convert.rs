//! Python values to and from the JSON the gate decides on.
//!
//! INVARIANT (arguments): only the exact built-in types are read, so the JSON the gate
//! decides on is the data the tool function receives; everything else is refused with a
//! message naming the type (never the value: it may be a secret), and no member name
//! appears in a message either.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// Nesting deeper than this is refused (arguments) or cut (results).
pub const MAX_DEPTH: usize = 128;

/// The arguments of a call: a `dict` with `str` keys, converted exactly.
pub fn arguments(a: &Bound<'_, PyAny>) -> Result<Value, String> {
    if !a.is_exact_instance_of::<PyDict>() {
        return Err(format!(
            "the arguments are a `{}`, not a `dict`",
            type_name(a)
        ));
    }
    strict(a, 0)
}

fn type_name(a: &Bound<'_, PyAny>) -> String {
    let name = a
        .get_type()
        .fully_qualified_name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string());
    conductor_types::display::shown(&name, 80)
}

fn refuse(a: &Bound<'_, PyAny>) -> String {
    format!(
        "the arguments hold a `{}`, which is not JSON as the tool would receive it (use dict, list, tuple, str, int, float, bool or None)",
        type_name(a)
    )
}

fn strict(a: &Bound<'_, PyAny>, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "the arguments are nested deeper than {MAX_DEPTH} levels"
        ));
    }
    // The common kinds first (strings, then containers); every test is an exact type.
    if a.is_exact_instance_of::<PyString>() {
        let s = a.cast::<PyString>().map_err(|_| refuse(a))?;
        return s
            .to_str()
            .map(|t| Value::String(t.to_string()))
            .map_err(|_| {
                "the arguments hold a string that is not valid Unicode (a lone surrogate)"
                    .to_string()
            });
    }
    if a.is_exact_instance_of::<PyDict>() {
        let d = a.cast::<PyDict>().map_err(|_| refuse(a))?;
        let mut out = Map::new();
        for (k, v) in d.iter() {
            // INVARIANT: `{1: "a", "1": "b"}` would be two members named `1` in JSON;
            // only `str` keys are read, so every member name is the key the tool sees.
            if !k.is_exact_instance_of::<PyString>() {
                return Err(format!(
                    "the arguments hold a dict key of type `{}`; keys must be `str`",
                    type_name(&k)
                ));
            }
            let key = k
                .cast::<PyString>()
                .map_err(|_| refuse(&k))?
                .to_str()
                .map_err(|_| {
                    "the arguments hold a dict key that is not valid Unicode (a lone surrogate)"
                        .to_string()
                })?
                .to_string();
            let value = strict(&v, depth + 1)?;
            out.insert(key, value);
        }
        return Ok(Value::Object(out));
    }
    if a.is_exact_instance_of::<PyList>() || a.is_exact_instance_of::<PyTuple>() {
        let mut out = Vec::with_capacity(a.len().unwrap_or(0));
        for item in a.try_iter().map_err(|_| refuse(a))? {
            let item = item.map_err(|_| refuse(a))?;
            out.push(strict(&item, depth + 1)?);
        }
        return Ok(Value::Array(out));
    }
    if a.is_none() {
        return Ok(Value::Null);
    }
    // `bool` before `int`: it is a subclass of it.
    if a.is_exact_instance_of::<PyBool>() {
        return a.extract::<bool>().map(Value::Bool).map_err(|_| refuse(a));
    }
    if a.is_exact_instance_of::<PyInt>() {
        if let Ok(i) = a.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = a.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(
            "the arguments hold an integer outside the 64-bit range JSON readers agree on"
                .to_string(),
        );
    }
    if a.is_exact_instance_of::<PyFloat>() {
        let f: f64 = a.extract().map_err(|_| refuse(a))?;
        return Number::from_f64(f).map(Value::Number).ok_or_else(|| {
            "the arguments hold a float that is not finite (NaN or infinity is not JSON)"
                .to_string()
        });
    }
    Err(refuse(a))
}

/// A tool's result, for labelling: JSON where it is JSON, otherwise its `str()` (the
/// text is scanned either way, so nothing the agent receives escapes the detectors).
pub fn result(a: &Bound<'_, PyAny>) -> PyResult<Value> {
    lenient(a, 0)
}

fn lenient(a: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if a.is_none() {
        return Ok(Value::Null);
    }
    if depth <= MAX_DEPTH {
        if a.is_instance_of::<PyBool>() {
            return Ok(Value::Bool(a.extract()?));
        }
        if a.is_instance_of::<PyString>() {
            // A lone surrogate is kept (replaced), not dropped: the rest is scanned.
            return Ok(Value::String(
                a.cast::<PyString>()?.to_string_lossy().into_owned(),
            ));
        }
        if a.is_instance_of::<PyList>() || a.is_instance_of::<PyTuple>() {
            let mut out = Vec::new();
            for item in a.try_iter()? {
                out.push(lenient(&item?, depth + 1)?);
            }
            return Ok(Value::Array(out));
        }
        if a.is_instance_of::<PyDict>() {
            let mut out = Map::new();
            for (k, v) in a.cast::<PyDict>()?.iter() {
                let key = k.str()?.to_string_lossy().into_owned();
                let value = lenient(&v, depth + 1)?;
                // Colliding keys (`1` and `"1"`) are both scanned: the second is kept
                // under a suffixed name.
                if out.contains_key(&key) {
                    out.insert(format!("{key}\u{0}{}", out.len()), value);
                } else {
                    out.insert(key, value);
                }
            }
            return Ok(Value::Object(out));
        }
    }
    // Numbers and everything else: their text (a pydantic model, a message object…).
    Ok(Value::String(a.str()?.to_string_lossy().into_owned()))
}

/// A JSON value as Python objects (dict, list, str, int, float, bool, None).
pub fn to_python<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for i in items {
                list.append(to_python(py, i)?)?;
            }
            list.into_any()
        }
        Value::Object(m) => {
            let d = PyDict::new(py);
            for (k, val) in m {
                d.set_item(k, to_python(py, val)?)?;
            }
            d.into_any()
        }
    })
}
