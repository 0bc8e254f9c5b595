//! The `data:` section: levels, labels and their detectors (built-ins, gitleaks files), egress rules.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use conductor_net::DestPattern;
use conductor_scan::{GitleaksRule, LabelSpec, Scanner};
use conductor_types::RuleId;
use serde_json::Value;

use super::{Cx, DEFAULT_LEVELS, MAX_GITLEAKS_BYTES, check_name, read_limited};
use crate::de::{Sp, one_of};
use crate::error::Problem;
use crate::model::{DataPolicy, EgressRule};
use crate::node::Loc;
use crate::raw::RawData;

pub(super) fn compile_data(cx: &mut Cx<'_>, raw: Option<&Sp<RawData>>) -> Option<DataPolicy> {
    let Some(raw) = raw else {
        return default_data();
    };
    let raw = &raw.value;
    let mut ok = true;
    let levels: Vec<String> = match &raw.levels {
        None => DEFAULT_LEVELS.iter().map(|s| (*s).to_string()).collect(),
        Some(list) => {
            if list.value.is_empty() {
                cx.err(list.loc, "`levels` cannot be empty");
                ok = false;
            }
            let mut seen = HashSet::new();
            for l in &list.value {
                if l.value.trim().is_empty() {
                    cx.err(l.loc, "a level name cannot be empty");
                    ok = false;
                } else if !seen.insert(l.value.as_str()) {
                    cx.err(l.loc, format!("level `{}` is listed twice", l.value));
                    ok = false;
                }
            }
            list.value.iter().map(|l| l.value.clone()).collect()
        }
    };
    let level_of = |cx: &mut Cx<'_>, s: &Sp<String>| -> Option<usize> {
        let i = levels.iter().position(|l| *l == s.value);
        if i.is_none() {
            cx.err_help(
                s.loc,
                format!("unknown data level `{}`", s.value),
                format!(
                    "the levels are {}",
                    one_of(&levels.iter().map(String::as_str).collect::<Vec<_>>())
                ),
            );
        }
        i
    };

    let mut labels = HashMap::new();
    let mut specs = Vec::new();
    // (label, pattern index) pairs already reported, so the scanner's own report of
    // the same pattern is not repeated.
    let mut reported: HashSet<(String, Option<usize>)> = HashSet::new();
    let mut label_locs: HashMap<String, (Loc, Vec<Loc>)> = HashMap::new();
    for (name, label) in raw.labels.0.iter() {
        check_name(cx, "a label", name);
        let Some(label) = &label.0 else {
            ok = false;
            continue;
        };
        match level_of(cx, &label.level) {
            Some(i) => {
                labels.insert(name.value.clone(), i);
            }
            None => ok = false,
        }
        let mut spec = LabelSpec {
            name: name.value.clone(),
            ..LabelSpec::default()
        };
        if label.detect.is_empty() && label.patterns.is_empty() {
            cx.err_help(
                name.loc,
                format!("label `{}` detects nothing", name.value),
                "give it `detect:` (built-in detectors or a gitleaks file) or `match:` regexes",
            );
            ok = false;
        }
        for d in &label.detect {
            match detect_entry(cx, d) {
                Some(Detect::Builtin(b)) => spec.builtins.push(b),
                Some(Detect::Gitleaks(rules)) => spec.gitleaks.extend(rules),
                None => {
                    ok = false;
                    reported.insert((name.value.clone(), None));
                }
            }
        }
        for (i, p) in label.patterns.iter().enumerate() {
            if let Err(m) = cx.regex(&p.value, false) {
                cx.err(p.loc, m);
                reported.insert((name.value.clone(), Some(i)));
                ok = false;
            }
            spec.patterns.push(p.value.clone());
        }
        label_locs.insert(
            name.value.clone(),
            (name.loc, label.patterns.iter().map(|p| p.loc).collect()),
        );
        specs.push(spec);
    }

    let mut egress = Vec::new();
    for (i, e) in raw.egress.iter().enumerate() {
        let Some(e) = &e.0 else {
            ok = false;
            continue;
        };
        let mut to = Vec::new();
        if e.value.to.value.is_empty() {
            cx.err(e.value.to.loc, "`to` cannot be empty");
            ok = false;
        }
        for t in &e.value.to.value {
            match DestPattern::parse(&t.value) {
                Ok(p) => to.push(p),
                Err(m) => {
                    cx.err(
                        t.loc,
                        format!("invalid destination pattern `{}`: {m}", t.value),
                    );
                    ok = false;
                }
            }
        }
        let max = level_of(cx, &e.value.max);
        match max {
            Some(max) => egress.push(EgressRule {
                id: RuleId::data_egress(i),
                to,
                max,
            }),
            None => ok = false,
        }
    }
    let default_egress = match &raw.default_egress {
        None => Some(0),
        Some(d) => level_of(cx, d),
    };

    let scanner = match Scanner::new(&specs) {
        Ok(s) => Some(s),
        Err(errors) => {
            for e in errors {
                if reported.contains(&(e.label.clone(), e.pattern)) {
                    continue;
                }
                let loc = label_locs.get(&e.label).map(|(l, pats)| match e.pattern {
                    Some(i) => pats.get(i).copied().unwrap_or(*l),
                    None => *l,
                });
                cx.problems.push(Problem::at(
                    loc,
                    format!("label `{}`: {}", e.label, e.message),
                ));
            }
            None
        }
    };
    if !ok {
        return None;
    }
    Some(DataPolicy {
        levels,
        labels,
        egress,
        default_egress: default_egress?,
        scanner: scanner?,
        declared: true,
    })
}

/// The secure default when the policy has no `data:` section: the four default
/// levels, a `credentials` label at `secret` detecting `secrets`, default egress `public`.
pub(super) fn default_data() -> Option<DataPolicy> {
    // Compiled once per process: the scanner is immutable and cheap to clone.
    static SCANNER: std::sync::OnceLock<Option<Scanner>> = std::sync::OnceLock::new();
    let scanner = SCANNER
        .get_or_init(|| {
            let spec = LabelSpec {
                name: "credentials".into(),
                builtins: vec!["secrets".into()],
                ..LabelSpec::default()
            };
            Scanner::new(&[spec]).ok()
        })
        .clone()?;
    Some(DataPolicy {
        levels: DEFAULT_LEVELS.iter().map(|s| (*s).to_string()).collect(),
        labels: HashMap::from([("credentials".to_string(), 3)]),
        egress: Vec::new(),
        default_egress: 0,
        scanner,
        declared: false,
    })
}

enum Detect {
    Builtin(String),
    Gitleaks(Vec<GitleaksRule>),
}

fn detect_entry(cx: &mut Cx<'_>, d: &Sp<Value>) -> Option<Detect> {
    match &d.value {
        Value::String(s) => {
            if conductor_scan::is_builtin(s) {
                Some(Detect::Builtin(s.clone()))
            } else {
                cx.err_help(
                    d.loc,
                    format!("unknown detector `{s}`"),
                    format!(
                        "built-in detectors are {}; a gitleaks rules file is written `{{gitleaks: rules.toml}}`",
                        one_of(conductor_scan::BUILTIN_DETECTORS)
                    ),
                );
                None
            }
        }
        Value::Object(m) if m.len() == 1 && m.contains_key("gitleaks") => {
            let Some(Value::String(path)) = m.get("gitleaks") else {
                cx.err(d.loc, "`gitleaks` must name a file");
                return None;
            };
            let Some(base) = cx.base_dir else {
                cx.err(
                    d.loc,
                    format!(
                        "cannot read gitleaks file `{path}`: this policy was not loaded from a file"
                    ),
                );
                return None;
            };
            // INVARIANT: referenced files stay inside the policy's directory, so a
            // policy cannot make the loader read (and quote in errors) other files.
            let rel = Path::new(path);
            let inside = rel.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
            if path.is_empty() || !inside {
                cx.err_help(
                    d.loc,
                    format!("gitleaks file `{path}` must be a relative path inside the policy's directory"),
                    "absolute paths and `..` are not allowed; put the rules file next to the policy",
                );
                return None;
            }
            let full = base.join(rel);
            cx.files.push(full.clone());
            match read_limited(&full, MAX_GITLEAKS_BYTES) {
                Ok(text) => match conductor_scan::parse_gitleaks_toml(&text) {
                    Ok(rules) => {
                        use sha2::Digest;
                        cx.file_digests.push((
                            path.to_string(),
                            sha2::Sha256::digest(text.as_bytes()).into(),
                        ));
                        Some(Detect::Gitleaks(rules))
                    }
                    Err(e) => {
                        cx.err(d.loc, format!("gitleaks file `{path}`: {e}"));
                        None
                    }
                },
                Err(e) => {
                    cx.err(d.loc, format!("cannot read gitleaks file `{path}`: {e}"));
                    None
                }
            }
        }
        _ => {
            cx.err(
                d.loc,
                "a `detect` entry is a built-in detector name or `{gitleaks: <file>}`",
            );
            None
        }
    }
}
