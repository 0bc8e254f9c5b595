//! `conductor check`: requests in, decisions out.
//!
//! INVARIANT: nothing this command cannot read is ever reported as allowed. A single
//! request that cannot be parsed exits 65 with no decision; with `--jsonl`, a line that
//! cannot be parsed gets a `deny` decision (check `input`) on its output line, a
//! message on stderr, and the command exits 65 at the end.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use conductor_core::{Check, Decision, Effect, Reason, Request, World};
use conductor_types::RuleId;

use crate::resolve::ResolveArgs;
use crate::{CliError, exit};

/// The largest request (or `--jsonl` line) accepted, in bytes.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

const AFTER_HELP: &str = "\
A request is a JSON object:
  {\"agent\": \"research-bot\", \"tool\": \"fetch.fetch\",
   \"arguments\": {\"url\": \"http://2852039166/latest/meta-data/\"},
   \"workflow\": \"market-research\", \"session_labels\": [\"personal\"]}
(`workflow`, `session` and `session_labels` are optional.)

Exit status for one request: 0 allow, 1 deny, 2 approval required.
With --jsonl: 0 when every line was decided, 65 when a line could not be read as a
request (that line's output is a deny with check `input`; the message, with the line
number, goes to stderr; later lines are still decided). Blank lines are skipped.
Always: 64 bad usage, 65 invalid policy or request, 66 missing input file,
78 unusable fingerprint key (see CONDUCTOR_FINGERPRINT_KEY_FILE).

Examples:
  # the motivating attack: 2852039166 is 169.254.169.254, the cloud metadata service
  conductor check --policy examples/policy.yaml --format human \\
    --request examples/requests/metadata-decimal-ip.json

  # one request from standard input
  echo '{\"agent\":\"intern-bot\",\"tool\":\"search.web\",\"arguments\":{\"q\":\"mcp\"}}' \\
    | conductor check --policy examples/policy.yaml

  # a batch, offline, with a fixed address for one host
  conductor check --policy examples/policy.yaml --jsonl --no-dns \\
    --resolve en.wikipedia.org=208.80.154.224 < examples/requests.jsonl

  # use the exit status in a script
  if conductor check --policy policy.yaml --request req.json > decision.json; then echo allowed; fi";

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// The decision as JSON (pretty for one request, one line each with --jsonl).
    #[default]
    Json,
    /// A readable explanation: decision, reasons, destinations, findings.
    Human,
}

/// Arguments of `conductor check`.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct CheckArgs {
    /// The policy file (YAML, version 1).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Read the request from FILE (`-`, the default: standard input).
    #[arg(long, value_name = "FILE|-")]
    pub request: Option<PathBuf>,
    /// Read one request per line and print one decision per line, in order.
    #[arg(long)]
    pub jsonl: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    #[command(flatten)]
    pub resolve: ResolveArgs,
}

pub fn run(args: CheckArgs) -> u8 {
    crate::finish(execute(&args))
}

/// The exit status of a decided request.
pub fn effect_code(effect: Effect) -> u8 {
    match effect {
        Effect::Allow => exit::ALLOW,
        Effect::Deny => exit::DENY,
        Effect::Approve => exit::APPROVE,
    }
}

fn execute(args: &CheckArgs) -> anyhow::Result<u8> {
    let resolver = args
        .resolve
        .build()
        .map_err(|e| CliError::Usage(format!("invalid `--resolve`: {e}")))?;
    let policy = crate::load_policy(&args.policy)?;
    let key = crate::world::load_fingerprint_key()?;
    let world = World {
        resolver: &resolver,
        fingerprint_key: &key,
    };

    let name = args
        .request
        .as_deref()
        .map(crate::shown)
        .unwrap_or_else(|| "<stdin>".to_string());
    let input: Box<dyn Read> = if crate::is_stdin(args.request.as_ref()) {
        if io::stdin().is_terminal() {
            return Err(CliError::Usage(
                "no request: pipe one in, or name a file with `--request FILE` (see `conductor check --help`)".into(),
            )
            .into());
        }
        Box::new(io::stdin().lock())
    } else {
        let path = args.request.as_deref().unwrap_or(std::path::Path::new("-"));
        crate::require_file("request file", path)?;
        Box::new(std::fs::File::open(path).map_err(|e| CliError::NoInput {
            what: "request file",
            path: name.clone(),
            reason: crate::io_reason(&e),
        })?)
    };
    let mut out = crate::Stdout::new();

    if !args.jsonl {
        let text = read_bounded(input, &name)?;
        let request = Request::from_json(&text).map_err(|e| {
            CliError::Data(format!("invalid request `{name}`: {}", e.message.clone()))
        })?;
        let decision = conductor_core::decide(&policy, &request, &world);
        let code = effect_code(decision.decision);
        // A reader that went away (EPIPE) does not change what was decided.
        write_decision(&mut out, args.format, None, Some(&request), &decision)
            .and_then(|()| out.flush())
            .context("cannot write to standard output")?;
        return Ok(code);
    }

    let mut reader = io::BufReader::new(input);
    let mut line_no = 0usize;
    let mut invalid = 0usize;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let (n, truncated) = read_line_bounded(&mut reader, &mut buf, MAX_REQUEST_BYTES)
            .with_context(|| format!("cannot read `{name}`"))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let parsed = if truncated {
            Err(format!("longer than {MAX_REQUEST_BYTES} bytes"))
        } else {
            match std::str::from_utf8(&buf) {
                Err(_) => Err("not valid UTF-8".to_string()),
                Ok(text) if text.trim().is_empty() => continue,
                // The whole request is on one line: its column is what matters.
                Ok(text) => Request::from_json(text).map_err(|e| {
                    e.message
                        .clone()
                        .replace(" at line 1 column ", " at column ")
                }),
            }
        };
        let (request, decision) = match parsed {
            Ok(request) => {
                let decision = conductor_core::decide(&policy, &request, &world);
                (Some(request), decision)
            }
            Err(message) => {
                invalid += 1;
                crate::warn(format_args!(
                    "error: invalid request on line {line_no} of `{name}`: {message}"
                ));
                (None, invalid_input_decision(policy.sha256(), line_no))
            }
        };
        write_decision(
            &mut out,
            args.format,
            Some(line_no),
            request.as_ref(),
            &decision,
        )
        .context("cannot write to standard output")?;
        // INVARIANT: never wait for input with decisions unflushed — a caller using
        // `check --jsonl` as a coprocess waits for this decision before sending the next
        // request. While more input is already buffered, batch the output instead.
        if reader.buffer().is_empty() {
            out.flush().context("cannot write to standard output")?;
        }
        if out.closed() {
            // The reader went away: nobody is left to read the remaining decisions.
            break;
        }
    }
    out.flush().context("cannot write to standard output")?;
    if invalid > 0 {
        crate::warn(format_args!(
            "{invalid} of {line_no} line(s) of `{name}` could not be read as requests and were denied; exiting 65"
        ));
        return Ok(exit::DATA);
    }
    Ok(exit::OK)
}

/// The decision printed for a `--jsonl` line that is not a request: a deny, so that a
/// reader that looks only at `decision` never mistakes it for an allow.
pub fn invalid_input_decision(policy_sha256: &str, line: usize) -> Decision {
    Decision {
        decision: Effect::Deny,
        reasons: vec![Reason {
            check: Check::Input,
            rule: RuleId::unreadable_request(),
            message: format!("line {line} is not a valid request (see stderr)"),
        }],
        destinations: Vec::new(),
        findings: Vec::new(),
        policy: policy_sha256.to_string(),
    }
}

/// Read a whole document, refusing anything larger than [`MAX_REQUEST_BYTES`].
fn read_bounded(input: impl Read, name: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    input
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read `{name}`"))?;
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(CliError::Data(format!(
            "invalid request `{name}`: longer than {MAX_REQUEST_BYTES} bytes"
        ))
        .into());
    }
    String::from_utf8(bytes)
        .map_err(|_| CliError::Data(format!("invalid request `{name}`: not valid UTF-8")).into())
}

/// Read one line (without its `\n`) into `buf`, keeping at most `max` bytes; the rest
/// of an overlong line is consumed and dropped. Returns the bytes consumed (0 at end of
/// input) and whether the line was cut.
fn read_line_bounded(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<(usize, bool)> {
    let mut consumed = 0usize;
    let mut truncated = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok((consumed, truncated));
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (available.get(..i).unwrap_or_default(), Some(i + 1)),
            None => (available, None),
        };
        let room = max.saturating_sub(buf.len());
        if chunk.len() > room {
            truncated = true;
        }
        buf.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        let used = done.unwrap_or(available.len());
        reader.consume(used);
        consumed += used;
        if done.is_some() {
            return Ok((consumed, truncated));
        }
    }
}

/// JSON text that every line reader keeps on one line: serde escapes the C0 controls,
/// but U+0085, U+2028 and U+2029 stay raw, and Python's `str.splitlines()` (and
/// JavaScript before ES2019, for the last two) splits there. Inside a JSON string, where
/// they can only occur, their `\u` escapes mean the same.
fn one_line(json: &str) -> std::borrow::Cow<'_, str> {
    if !json.contains(['\u{85}', '\u{2028}', '\u{2029}']) {
        return std::borrow::Cow::Borrowed(json);
    }
    std::borrow::Cow::Owned(
        json.replace('\u{85}', "\\u0085")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029"),
    )
}

fn write_decision(
    out: &mut impl Write,
    format: Format,
    line: Option<usize>,
    request: Option<&Request>,
    decision: &Decision,
) -> io::Result<()> {
    match (format, line) {
        (Format::Json, None) => {
            serde_json::to_writer_pretty(&mut *out, decision)?;
            writeln!(out)
        }
        (Format::Json, Some(_)) => {
            let text = serde_json::to_string(decision).map_err(io::Error::other)?;
            writeln!(out, "{}", one_line(&text))
        }
        (Format::Human, _) => {
            if line.is_some_and(|l| l > 1) {
                writeln!(out)?;
            }
            out.write_all(human(line, request, decision).as_bytes())
        }
    }
}

/// Text from a request (or derived from one) made safe for a terminal: control
/// characters (a newline could forge a line of the explanation, an escape sequence
/// could rewrite the screen) and bidirectional overrides are shown escaped.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A readable explanation of a decision.
pub fn human(line: Option<usize>, request: Option<&Request>, decision: &Decision) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let verdict = match decision.decision {
        Effect::Allow => "ALLOW",
        Effect::Deny => "DENY",
        Effect::Approve => "APPROVAL REQUIRED",
    };
    let prefix = line.map(|l| format!("line {l}: ")).unwrap_or_default();
    match request {
        Some(r) => {
            let _ = write!(
                s,
                "{prefix}{verdict}  {} calls {}",
                terminal_safe(&r.agent),
                terminal_safe(&r.tool)
            );
            if let Some(w) = &r.workflow {
                let _ = write!(s, " in workflow {}", terminal_safe(w));
            }
            let _ = writeln!(s);
        }
        None => {
            let _ = writeln!(s, "{prefix}{verdict}");
        }
    }
    if decision.reasons.is_empty() {
        let _ = writeln!(s, "  reasons: none");
    } else {
        let _ = writeln!(s, "  reasons:");
        for r in &decision.reasons {
            let check = serde_json::to_value(r.check)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = writeln!(s, "    - {check} ({})", terminal_safe(r.rule.as_str()));
            let _ = writeln!(s, "      {}", terminal_safe(&r.message));
        }
    }
    if !decision.destinations.is_empty() {
        let _ = writeln!(s, "  destinations:");
        for d in &decision.destinations {
            let at = d
                .pointer
                .as_ref()
                .map(|p| format!(" (at {})", terminal_safe(&p.to_pointer())))
                .unwrap_or_else(|| " (declared)".to_string());
            let _ = writeln!(s, "    - {}{at}", terminal_safe(&d.input));
            let port = d.port.map(|p| format!(":{p}")).unwrap_or_default();
            let host = if d.host.is_empty() {
                "<unparseable>"
            } else {
                &terminal_safe(&d.host)
            };
            let mut detail = format!("{}://{host}{port}", d.scheme);
            if !d.addresses.is_empty() {
                let addrs: Vec<String> = d.addresses.iter().map(|a| a.to_string()).collect();
                let _ = write!(detail, " -> {}", addrs.join(", "));
            }
            if !d.classes.is_empty() {
                let classes: Vec<&str> = d.classes.iter().map(|c| c.name()).collect();
                let _ = write!(detail, " [{}]", classes.join(", "));
            }
            let _ = writeln!(s, "      {detail}");
        }
    }
    if !decision.findings.is_empty() {
        let _ = writeln!(s, "  findings:");
        for f in &decision.findings {
            let enc = f
                .encoding
                .as_deref()
                .map(|e| format!(", {e}-decoded"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "    - {} (label {}) at {} bytes {}..{}{enc}",
                terminal_safe(&f.detector),
                terminal_safe(&f.label),
                terminal_safe(&f.pointer.to_pointer()),
                f.start,
                f.end
            );
            let _ = writeln!(s, "      {}", f.fingerprint);
        }
    }
    let _ = writeln!(s, "  policy: {}", decision.policy);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut r = io::BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            let mut buf = Vec::new();
            let (n, cut) = read_line_bounded(&mut r, &mut buf, max).unwrap();
            if n == 0 {
                return out;
            }
            out.push((buf, cut));
        }
    }

    #[test]
    fn bounded_lines_split_on_newlines_and_cut_overlong_ones() {
        assert_eq!(
            lines(b"ab\n\ncdefgh\nij", 3),
            vec![
                (b"ab".to_vec(), false),
                (b"".to_vec(), false),
                (b"cde".to_vec(), true),
                (b"ij".to_vec(), false),
            ]
        );
        assert!(lines(b"", 3).is_empty());
    }

    #[test]
    fn human_output_escapes_what_could_forge_lines_or_drive_the_terminal() {
        let request = Request::from_json(
            r#"{"agent":"a\nALLOW  x calls y","tool":"s.t\u001b[2J","workflow":"w\u202e"}"#,
        )
        .unwrap();
        let text = human(None, Some(&request), &invalid_input_decision("sha256:x", 1));
        assert!(
            text.starts_with(
                "DENY  a\\nALLOW  x calls y calls s.t\\u{1b}[2J in workflow w\\u{202e}\n"
            ),
            "{text}"
        );
        assert_eq!(text.lines().filter(|l| l.contains("ALLOW")).count(), 1);
        assert!(!text.contains('\u{1b}'));
        assert_eq!(terminal_safe("plain"), "plain");
    }

    #[test]
    fn an_unreadable_line_is_denied() {
        let d = invalid_input_decision("sha256:x", 3);
        assert_eq!(d.decision, Effect::Deny);
        assert_eq!(d.reasons.len(), 1);
        assert_eq!(d.reasons[0].check, Check::Input);
        assert!(d.reasons[0].message.contains("line 3"));
    }
}
