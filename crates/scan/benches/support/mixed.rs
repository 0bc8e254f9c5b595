// Shared by the criterion bench and the `throughput` example (included with `include!`).
//
// A mixed corpus: prose, code, log lines, JSON records, base64 image data, and now and
// then an e-mail address, a phone number or a GitHub token (about one chunk in 100).

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick(&mut self, a: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| a[(self.next() % a.len() as u64) as usize] as char)
            .collect()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const HEX: &[u8] = b"0123456789abcdef";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

const PROSE: &[&str] = &[
    "The agent fetched the quarterly report and summarised the key risks for the board. ",
    "Please review the attached pull request; the tests pass on CI and the token budget is fine. ",
    "Meeting moved to 3 pm on 2026-11-26; call in details are in the calendar invite. ",
    "Our API returns 429 when the rate limit is exceeded, retry after 30 seconds. ",
    "The password policy requires 12 characters; secrets are stored in the vault. ",
    "Version 1.4.2 fixes the crash reported in issue #4821 and bumps serde to 1.0.229. ",
    "Contact the on-call engineer via the pager rotation, not by e-mail. ",
];

const CODE: &[&str] = &[
    "fn main() {\n    let config = Config::load(\"app.toml\")?;\n    println!(\"{}\", config.name);\n}\n",
    "def handler(event, context):\n    token = os.environ[\"API_TOKEN\"]\n    return {\"statusCode\": 200}\n",
    "const client = new Client({ timeout: 3000, retries: 3 });\nawait client.connect();\n",
    "SELECT id, name, created_at FROM users WHERE org_id = $1 ORDER BY created_at DESC LIMIT 50;\n",
];

fn log_line(r: &mut Rng) -> String {
    format!(
        "2026-11-26T22:{:02}:{:02}.{:03}Z INFO request_id={}-{}-{}-{}-{} method=GET path=/v1/items/{} status=200 duration_ms={} bytes={}\n",
        r.below(60),
        r.below(60),
        r.below(1000),
        r.pick(HEX, 8),
        r.pick(HEX, 4),
        r.pick(HEX, 4),
        r.pick(HEX, 4),
        r.pick(HEX, 12),
        r.below(100_000),
        r.below(900),
        r.below(1 << 20)
    )
}

fn json_record(r: &mut Rng) -> Value {
    json!({
        "id": r.below(1 << 40),
        "sha": r.pick(HEX, 40),
        "title": PROSE[r.below(PROSE.len() as u64) as usize].trim(),
        "labels": ["bug", "p2", "area/scan"],
        "created_at": "2026-11-26T10:00:00Z",
        "score": 0.87,
        "author": {"login": r.pick(ALNUM, 10), "id": r.below(1 << 30)},
    })
}

/// Mixed text: prose, code, logs, JSON, a base64 blob, and a few secrets and PII.
fn mixed_text(size: usize, seed: u64) -> String {
    let mut r = Rng(seed | 1);
    let mut s = String::with_capacity(size + 4096);
    while s.len() < size {
        match r.below(100) {
            0..=34 => s.push_str(PROSE[r.below(PROSE.len() as u64) as usize]),
            35..=49 => s.push_str(CODE[r.below(CODE.len() as u64) as usize]),
            50..=69 => s.push_str(&log_line(&mut r)),
            70..=89 => {
                s.push_str(&json_record(&mut r).to_string());
                s.push('\n');
            }
            90..=97 => {
                s.push_str("data:image/png;base64,");
                s.push_str(&r.pick(B64, 600));
                s.push('\n');
            }
            98 => s.push_str("Reach me at jane.doe@example.com or +44 20 7946 0958. "),
            _ => {
                s.push_str("export GITHUB_TOKEN=ghp_");
                s.push_str(&r.pick(ALNUM, 36));
                s.push('\n');
            }
        }
    }
    s
}
