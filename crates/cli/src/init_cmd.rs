//! `conductor init`: put an MCP client's servers behind the gate in one step.
//!
//! Reads the client's configuration (Claude Desktop `claude_desktop_config.json` and
//! Cursor `mcp.json` with `mcpServers`, VS Code `mcp.json` with `servers`), starts each
//! stdio server once to list its tools, and writes a starter policy, a policy test file
//! that passes, and the configuration rewritten so every server runs under
//! `conductor wrap` (the original kept as a backup).
//!
//! INVARIANT: a server's annotations never grant anything. A tool is `read` only when
//! its server says `readOnlyHint: true`, and `read` is then the only action the starter
//! roles allow without a person's approval; everything else is behind `approve`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use conductor_gate::schema::{Seg, destination_paths};
use serde_json::{Map, Value, json};

use crate::{CliError, exit};

const AFTER_HELP: &str = "\
Examples:
  # Claude Desktop, found in its usual place; show what would change
  conductor init --client claude-desktop --dry-run
  # a VS Code workspace configuration
  conductor init --client vscode --config .vscode/mcp.json --out-dir .conductor

Writes <out-dir>/policy.yaml and <out-dir>/policy.test.yaml, backs the configuration
up as <config>.conductor-backup, and rewrites it so each server runs under
`conductor wrap`. A server that does not start is reported and left as it was.
Docs: docs/init.md";

/// The MCP client whose configuration is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Client {
    /// Claude Desktop (`claude_desktop_config.json`, `mcpServers`).
    ClaudeDesktop,
    /// VS Code (`.vscode/mcp.json` or the user's `mcp.json`, `servers`).
    Vscode,
    /// Cursor (`.cursor/mcp.json` or `~/.cursor/mcp.json`, `mcpServers`).
    Cursor,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::ClaudeDesktop => "claude-desktop",
            Client::Vscode => "vscode",
            Client::Cursor => "cursor",
        }
    }

    fn servers_key(self) -> &'static str {
        match self {
            Client::Vscode => "servers",
            Client::ClaudeDesktop | Client::Cursor => "mcpServers",
        }
    }

    /// Where the client keeps its configuration, first match wins.
    fn usual_places(self) -> Vec<PathBuf> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".config")));
        let mut out = Vec::new();
        match self {
            Client::ClaudeDesktop => {
                if let Some(c) = &config {
                    out.push(c.join("Claude/claude_desktop_config.json"));
                }
                if let Some(h) = &home {
                    out.push(
                        h.join("Library/Application Support/Claude/claude_desktop_config.json"),
                    );
                }
                if let Some(a) = std::env::var_os("APPDATA") {
                    out.push(PathBuf::from(a).join("Claude/claude_desktop_config.json"));
                }
            }
            Client::Vscode => {
                out.push(PathBuf::from(".vscode/mcp.json"));
                if let Some(c) = &config {
                    out.push(c.join("Code/User/mcp.json"));
                }
                if let Some(h) = &home {
                    out.push(h.join("Library/Application Support/Code/User/mcp.json"));
                }
            }
            Client::Cursor => {
                out.push(PathBuf::from(".cursor/mcp.json"));
                if let Some(h) = &home {
                    out.push(h.join(".cursor/mcp.json"));
                }
            }
        }
        out
    }
}

/// Arguments of `conductor init`.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct InitArgs {
    /// The MCP client.
    #[arg(long, value_enum)]
    pub client: Client,
    /// The client's configuration file (default: found in the client's usual places).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Where the policy and its test file are written.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out_dir: PathBuf,
    /// The agent the client acts as in the policy (default: the client's name).
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,
    /// The `conductor` program the rewritten configuration runs (default: this one).
    #[arg(long, value_name = "PATH")]
    pub conductor: Option<PathBuf>,
    /// The audit store the wrapped servers record to (passed to `wrap --audit`).
    #[arg(long, value_name = "PATH")]
    pub audit: Option<PathBuf>,
    /// How long each server may take to list its tools, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 20)]
    pub timeout: u64,
    /// Print what would change (the configuration as a diff) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: InitArgs) -> u8 {
    crate::finish(execute(&args))
}

/// A tool as a server listed it.
#[derive(Debug, Clone)]
struct Tool {
    name: String,
    read_only_hint: bool,
    destructive_hint: bool,
    pointers: Vec<String>,
    unexpressed: usize,
}

/// What starting one server found.
#[derive(Debug)]
struct Listed {
    id: String,
    key: String,
    tools: Vec<Tool>,
}

fn execute(args: &InitArgs) -> anyhow::Result<u8> {
    let config_path = match &args.config {
        Some(p) => p.clone(),
        None => args
            .client
            .usual_places()
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "no {} configuration found in its usual places; name it with `--config PATH`",
                    args.client.name()
                ))
            })?,
    };
    crate::require_file("client configuration", &config_path)?;
    let text = std::fs::read_to_string(&config_path).map_err(|e| CliError::NoInput {
        what: "client configuration",
        path: config_path.display().to_string(),
        reason: crate::io_reason(&e),
    })?;
    let config: Value = serde_json::from_str(&text).map_err(|e| {
        CliError::Data(format!(
            "`{}` is not JSON: line {} column {}",
            config_path.display(),
            e.line(),
            e.column()
        ))
    })?;
    let key = args.client.servers_key();
    let Some(Value::Object(servers)) = config.get(key) else {
        return Err(
            CliError::Data(format!("`{}` has no `{key}` object", config_path.display())).into(),
        );
    };
    let agent = args
        .agent
        .clone()
        .unwrap_or_else(|| args.client.name().to_string());
    if !valid_id(&agent) {
        return Err(
            CliError::Usage(format!("invalid agent id `{agent}`: use `[a-z0-9_-]+`")).into(),
        );
    }
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut listed: Vec<Listed> = Vec::new();
    let mut used_ids: Vec<String> = Vec::new();
    for (name, entry) in servers {
        let id = unique_id(&server_id(name), &used_ids);
        if is_wrapped(entry) {
            crate::warn(format_args!(
                "server `{name}` already runs under `conductor wrap`: left as it is"
            ));
            continue;
        }
        let Some((command, cmd_args, env)) = stdio_command(entry) else {
            crate::warn(format_args!(
                "warning: server `{name}` is not a stdio server (no `command`): left unwrapped"
            ));
            continue;
        };
        match list_tools(&command, &cmd_args, &env, timeout) {
            Ok(tools) => {
                crate::warn(format_args!(
                    "server `{name}` (`{id}`): {} tool(s)",
                    tools.len()
                ));
                used_ids.push(id.clone());
                listed.push(Listed {
                    id,
                    key: name.clone(),
                    tools,
                });
            }
            Err(e) => crate::warn(format_args!(
                "warning: server `{name}` did not list its tools ({e}): left unwrapped, its calls are NOT gated"
            )),
        }
    }

    let out_dir = &args.out_dir;
    let policy_path = out_dir.join("policy.yaml");
    let test_path = out_dir.join("policy.test.yaml");
    let policy_abs = absolute(&policy_path);
    let policy = policy_text(&agent, args.client, &config_path, &listed);
    let tests = tests_text(&agent, &listed);

    let conductor = match &args.conductor {
        Some(p) => p.display().to_string(),
        None => std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "conductor".into()),
    };
    let mut rewritten = config.clone();
    if let Some(Value::Object(m)) = rewritten.get_mut(key) {
        for l in &listed {
            if let Some(entry) = m.get_mut(&l.key) {
                wrap_entry(
                    entry,
                    &conductor,
                    &policy_abs,
                    &agent,
                    &l.id,
                    args.audit.as_deref(),
                );
            }
        }
    }
    let new_text = format!(
        "{}\n",
        serde_json::to_string_pretty(&rewritten).unwrap_or_default()
    );
    let mut out = crate::Stdout::new();
    if args.dry_run {
        writeln!(out, "--- {}", config_path.display())?;
        writeln!(out, "+++ {} (under conductor wrap)", config_path.display())?;
        let old_pretty = format!(
            "{}\n",
            serde_json::to_string_pretty(&config).unwrap_or_default()
        );
        for line in diff_lines(&old_pretty, &new_text) {
            writeln!(out, "{line}")?;
        }
        writeln!(
            out,
            "# would write {} and {}",
            policy_path.display(),
            test_path.display()
        )?;
        out.flush()?;
        return Ok(exit::OK);
    }
    std::fs::create_dir_all(out_dir).map_err(|e| CliError::Io {
        what: format!("cannot create `{}`", out_dir.display()),
        source: e,
    })?;
    write_file(&policy_path, &policy)?;
    write_file(&test_path, &tests)?;
    let backup = PathBuf::from(format!("{}.conductor-backup", config_path.display()));
    if backup.exists() {
        return Err(CliError::Usage(format!(
            "the backup `{}` exists already (from an earlier `conductor init`?): move it away first",
            backup.display()
        ))
        .into());
    }
    std::fs::copy(&config_path, &backup).map_err(|e| CliError::Io {
        what: format!("cannot back up `{}`", config_path.display()),
        source: e,
    })?;
    write_file(&config_path, &new_text)?;
    writeln!(
        out,
        "wrote {}, {}; rewrote {} (original in {})",
        policy_path.display(),
        test_path.display(),
        config_path.display(),
        backup.display()
    )?;
    out.flush()?;
    Ok(exit::OK)
}

fn write_file(path: &Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text).map_err(|e| CliError::Io {
        what: format!("cannot write `{}`", path.display()),
        source: e,
    })
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A server id (`[a-z0-9_-]+`) from a configuration key.
fn server_id(name: &str) -> String {
    let mut id: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.trim_matches('-').is_empty() {
        id = "server".into();
    }
    id
}

fn unique_id(id: &str, used: &[String]) -> String {
    if !used.iter().any(|u| u == id) {
        return id.to_string();
    }
    (2..)
        .map(|n| format!("{id}-{n}"))
        .find(|c| !used.iter().any(|u| u == c))
        .unwrap_or_else(|| id.to_string())
}

fn is_wrapped(entry: &Value) -> bool {
    let args: Vec<&str> = entry
        .get("args")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let cmd = entry.get("command").and_then(Value::as_str).unwrap_or("");
    cmd.rsplit('/').next().is_some_and(|c| c == "conductor") && args.first() == Some(&"wrap")
}

type StdioCommand = (String, Vec<String>, Vec<(String, String)>);

fn stdio_command(entry: &Value) -> Option<StdioCommand> {
    if let Some(t) = entry.get("type").and_then(Value::as_str)
        && t != "stdio"
    {
        return None;
    }
    let command = entry.get("command")?.as_str()?.to_string();
    let args = entry
        .get("args")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let env = entry
        .get("env")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Some((command, args, env))
}

fn wrap_entry(
    entry: &mut Value,
    conductor: &str,
    policy: &Path,
    agent: &str,
    id: &str,
    audit: Option<&Path>,
) {
    let Value::Object(m) = entry else { return };
    let old_cmd = m.get("command").cloned().unwrap_or(Value::Null);
    let old_args = m.get("args").cloned().unwrap_or(json!([]));
    let mut args = vec![
        json!("wrap"),
        json!("--policy"),
        json!(policy.display().to_string()),
        json!("--agent"),
        json!(agent),
        json!("--server"),
        json!(id),
    ];
    if let Some(a) = audit {
        args.push(json!("--audit"));
        args.push(json!(a.display().to_string()));
    }
    args.push(json!("--"));
    args.push(old_cmd);
    if let Value::Array(a) = old_args {
        args.extend(a);
    }
    m.insert("command".into(), json!(conductor));
    m.insert("args".into(), Value::Array(args));
}

/// Start a server, `initialize`, `tools/list` (every page), and stop it.
fn list_tools(
    command: &str,
    args: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Vec<Tool>, String> {
    let mut child = Command::new(command)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start `{command}`: {}", crate::io_reason(&e)))?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        return Err("cannot connect to the server's standard streams".into());
    };
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + timeout;
    let mut send = |v: Value| writeln!(stdin, "{v}").and_then(|()| stdin.flush());
    let wait_for = |id: i64| -> Result<Value, String> {
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let v = rx
                .recv_timeout(left)
                .map_err(|_| "no answer before the timeout".to_string())?;
            if v.get("id").and_then(Value::as_i64) == Some(id) {
                if let Some(e) = v.get("error") {
                    return Err(format!(
                        "the server answered with an error: {}",
                        e.get("message").and_then(Value::as_str).unwrap_or("")
                    ));
                }
                return Ok(v.get("result").cloned().unwrap_or(Value::Null));
            }
        }
    };
    let result = (|| {
        send(
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},
            "clientInfo":{"name":"conductor-init","version":env!("CARGO_PKG_VERSION")}}}),
        )
        .map_err(|e| format!("cannot write to the server: {e}"))?;
        wait_for(1)?;
        send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .map_err(|e| format!("cannot write to the server: {e}"))?;
        let mut tools = Vec::new();
        let mut cursor: Option<Value> = None;
        for page in 0..100i64 {
            let mut params = Map::new();
            if let Some(c) = &cursor {
                params.insert("cursor".into(), c.clone());
            }
            send(json!({"jsonrpc":"2.0","id":2 + page,"method":"tools/list","params":params}))
                .map_err(|e| format!("cannot write to the server: {e}"))?;
            let r = wait_for(2 + page)?;
            for t in r
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(tool) = tool_of(t) {
                    tools.push(tool);
                }
            }
            cursor = r.get("nextCursor").filter(|c| !c.is_null()).cloned();
            if cursor.is_none() {
                break;
            }
        }
        Ok(tools)
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn tool_of(t: &Value) -> Option<Tool> {
    let name = t.get("name")?.as_str()?.to_string();
    let hint = |k: &str| {
        t.get("annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_bool)
            == Some(true)
    };
    let schema = t.get("inputSchema").cloned().unwrap_or(Value::Null);
    let mut pointers = Vec::new();
    let mut unexpressed = 0;
    for path in destination_paths(&schema) {
        // A policy pointer names a member; a pointer to an array names each element.
        let mut p = String::new();
        let mut ok = true;
        for (i, seg) in path.iter().enumerate() {
            match seg {
                Seg::Key(k) => p.push_str(&format!("/{}", k.replace('~', "~0").replace('/', "~1"))),
                Seg::Each if i + 1 == path.len() => {}
                Seg::Each => ok = false,
            }
        }
        if ok && !p.is_empty() {
            if !pointers.contains(&p) {
                pointers.push(p);
            }
        } else {
            unexpressed += 1;
        }
    }
    Some(Tool {
        name,
        read_only_hint: hint("readOnlyHint"),
        destructive_hint: hint("destructiveHint"),
        pointers,
        unexpressed,
    })
}

/// The action a tool performs in the starter policy.
fn action_of(t: &Tool) -> &'static str {
    if t.read_only_hint && !t.destructive_hint {
        return "read";
    }
    let n = t.name.to_ascii_lowercase();
    if t.destructive_hint
        || ["delete", "remove", "drop", "destroy"]
            .iter()
            .any(|w| n.contains(w))
    {
        return "delete";
    }
    if [
        "write", "create", "edit", "update", "move", "set", "add", "put", "upload",
    ]
    .iter()
    .any(|w| n.contains(w))
    {
        return "write";
    }
    "execute"
}

/// A YAML double-quoted string.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn policy_text(agent: &str, client: Client, config: &Path, listed: &[Listed]) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# A starter Conductor policy written by `conductor init` for {} ({}).\n",
        client.name(),
        config.display()
    ));
    s.push_str(
        "# Review it: every tool the servers listed is a `tools:` fact below. A tool is\n\
         # `read` only when its server's annotations say `readOnlyHint: true` (a hint from\n\
         # the server, marked `hint` below: check it); reads are allowed, every other\n\
         # action (write, delete, execute) needs a person's approval.\n\
         # Validate: conductor policy validate policy.yaml\n\
         # Test:     conductor policy test policy.test.yaml\n\
         version: 1\n\n",
    );
    let role = format!("{agent}-user");
    s.push_str(&format!(
        "agents:\n  {agent}:\n    roles: [{role}]\n    clearance: internal\n\n"
    ));
    s.push_str(&format!("roles:\n  {role}:\n"));
    if listed.is_empty() {
        s.push_str("    allow: []\n");
    } else {
        let globs: Vec<String> = listed.iter().map(|l| q(&format!("{}.*", l.id))).collect();
        s.push_str(&format!(
            "    allow:\n      - tools: [{}]\n        actions: [read]\n",
            globs.join(", ")
        ));
        s.push_str(&format!(
            "    approve:\n      - tools: [{}]\n        actions: [write, delete, execute]\n",
            globs.join(", ")
        ));
    }
    s.push_str("\ntools:\n");
    let mut any = false;
    for l in listed {
        s.push_str(&format!(
            "  # server `{}` (`{}` in the client configuration)\n",
            l.id, l.key
        ));
        for t in &l.tools {
            let full = format!("{}.{}", l.id, t.name);
            if conductor_core::tool_name_problem(&full).is_some() {
                s.push_str(&format!(
                    "  # {} cannot be named in a policy: its calls are denied\n",
                    q(&full)
                ));
                continue;
            }
            any = true;
            let action = action_of(t);
            let mut line = format!("  {}:\n    action: {action}", q(&full));
            if t.read_only_hint {
                line.push_str("            # hint: the server's readOnlyHint");
            } else if t.destructive_hint {
                line.push_str("            # hint: the server's destructiveHint");
            } else if action != "execute" {
                line.push_str("            # guessed from the name");
            }
            line.push('\n');
            if !t.pointers.is_empty() {
                let ps: Vec<String> = t.pointers.iter().map(|p| q(p)).collect();
                line.push_str(&format!(
                    "    destinations: [{}]      # from the input schema\n",
                    ps.join(", ")
                ));
            }
            if t.unexpressed > 0 {
                line.push_str(&format!(
                    "    # {} more destination field(s) in the schema (inside arrays of objects): `wrap` learns them from the schema\n",
                    t.unexpressed
                ));
            }
            s.push_str(&line);
        }
    }
    if !any {
        s.push_str("  {}\n");
    }
    s.push_str(
        "\n# Where calls may go: add the hosts your tools use. Metadata, loopback, private\n\
         # and reserved addresses are blocked whatever this list says.\n\
         destinations:\n  allow: []\n  scan: true\n\n\
         data:\n  levels: [public, internal, confidential, secret]\n  labels:\n    \
         credentials: {level: secret, detect: [secrets]}\n    \
         personal: {level: confidential, detect: [email, phone, payment-card, us-ssn, iban]}\n  \
         default_egress: public\n",
    );
    s
}

fn tests_text(agent: &str, listed: &[Listed]) -> String {
    let mut s = String::from(
        "# Tests of policy.yaml written by `conductor init` (format: docs/policy-tests.md).\n\
         version: 1\npolicy: policy.yaml\nresolve: {}\ncases:\n",
    );
    let mut cases = 0;
    let mut first_tool: Option<String> = None;
    for l in listed {
        for t in &l.tools {
            let full = format!("{}.{}", l.id, t.name);
            if conductor_core::tool_name_problem(&full).is_some() {
                continue;
            }
            first_tool.get_or_insert_with(|| full.clone());
            let expect = if action_of(t) == "read" {
                "allow"
            } else {
                "approve"
            };
            s.push_str(&format!(
                "  - name: {}\n    request: {{agent: {agent}, tool: {}, arguments: {{}}}}\n    expect: {expect}\n",
                q(&format!("{full} ({})", action_of(t))),
                q(&full)
            ));
            cases += 1;
        }
    }
    if let Some(tool) = first_tool {
        s.push_str(&format!(
            "  - name: an agent the policy does not name is denied\n    request: {{agent: someone-else, tool: {}, arguments: {{}}}}\n    expect: deny\n    checks: [identity]\n",
            q(&tool)
        ));
        cases += 1;
    }
    if cases == 0 {
        s.push_str(&format!(
            "  - name: no server listed a tool, so nothing is allowed\n    request: {{agent: {agent}, tool: none.none, arguments: {{}}}}\n    expect: deny\n"
        ));
    }
    s
}

/// A line diff (`-` removed, `+` added, ` ` kept) by longest common subsequence.
fn diff_lines(old: &str, new: &str) -> Vec<String> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let v = if a.get(i) == b.get(j) {
                lcs.get(i + 1)
                    .and_then(|r| r.get(j + 1))
                    .copied()
                    .unwrap_or(0)
                    + 1
            } else {
                let down = lcs.get(i + 1).and_then(|r| r.get(j)).copied().unwrap_or(0);
                let right = lcs.get(i).and_then(|r| r.get(j + 1)).copied().unwrap_or(0);
                down.max(right)
            };
            if let Some(c) = lcs.get_mut(i).and_then(|r| r.get_mut(j)) {
                *c = v;
            }
        }
    }
    let at = |i: usize, j: usize| lcs.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0);
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                out.push(format!(" {x}"));
                i += 1;
                j += 1;
            }
            (Some(x), Some(_)) if at(i + 1, j) >= at(i, j + 1) => {
                out.push(format!("-{x}"));
                i += 1;
            }
            (_, Some(y)) => {
                out.push(format!("+{y}"));
                j += 1;
            }
            (Some(x), None) => {
                out.push(format!("-{x}"));
                i += 1;
            }
            (None, None) => break,
        }
    }
    out
}
