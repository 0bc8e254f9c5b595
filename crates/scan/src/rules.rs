//! The built-in `secrets` rules.
//!
//! Each rule names the keywords (lowercase) that must occur before its regex is run
//! (the Aho-Corasick prefilter), the window around a keyword hit the regex is run on,
//! and the checks a match must pass (entropy, placeholder rejection, a format check).
//!
//! Sources of the formats: gitleaks `config/gitleaks.toml` (rule ids noted as `gl:`),
//! the vendors' public token-format documentation (noted inline), and RFC 7519 (JWT),
//! RFC 3986 (userinfo), RFC 7468 (PEM).
//!
//! Regexes are compiled as byte regexes with Unicode off (ASCII `\w`, `\s`, `\b`), like
//! gitleaks' Go RE2 semantics.

/// A format check beyond the regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verify {
    None,
    /// Header decodes to a JSON object with `alg`.
    Jwt,
    /// First part base64url-decodes to a Discord snowflake (17-20 digits).
    Discord,
    /// `scheme://user:pass@host`; database schemes are reported as `database-url`.
    UrlPassword,
    /// `name = value`: the name must look secret-ish, the value like a secret.
    Generic,
    /// `Basic <base64>` decodes to `user:password`.
    BasicAuth,
    /// A bearer token: high entropy, not a placeholder.
    Bearer,
    /// A PEM/PGP block with a real-looking body.
    PrivateKey,
    /// Mixed-case base64 of high entropy (not a hex digest).
    AwsSecret,
    /// The URL around `sig=` carries SAS parameters (`sv=`, `se=`, `sp=`).
    SasToken,
    /// The text around `Password=` is an ADO.NET/ODBC connection string.
    AdoNet,
    /// `user:password` whose password is a value, not a variable reference.
    UserPass,
}

/// What must follow a keyword hit for the rule's regex to be worth running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Follow {
    Any,
    /// A name continues (`[A-Za-z0-9_.-]`), then an optional quote, spaces, and `=`,
    /// `:` or `|`: an assignment such as `DB_PASSWORD=`, `"api_key": `, `token: `.
    Assign,
    /// Spaces, then a token (`Basic dXNl...`, `Bearer ...`).
    Space,
    /// The rest of a base64url segment, a dot, and the next segment's `ey` (JWTs).
    Jwt,
    /// Exactly `n` ASCII alphanumerics, then the byte given (`pat` + 14 + `.`).
    AlnumThen(usize, u8),
    /// URL userinfo with a password: within `n` bytes a `:` and then an `@`, before any
    /// byte that cannot be in userinfo (ASCII whitespace, `/?#"'<>\`). Every URL has
    /// `://`; only this shape can hold a password, and the regex is then compiled and
    /// run only for it.
    Userinfo(usize),
}

/// One built-in rule. `id` is reported as `secrets.<id>`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BuiltinRule {
    pub id: &'static str,
    /// Lowercase keywords; at least one must occur (case-insensitively) for the regex to run.
    pub keywords: &'static [&'static str],
    /// The keyword must occur with exactly the case of `case_keywords` (same order).
    pub case_keywords: Option<&'static [&'static str]>,
    /// The keyword must not follow `[A-Za-z0-9_]`.
    pub word_start: bool,
    /// A cheap check of the bytes after the keyword.
    pub follow: Follow,
    /// Search `case_keywords` case-sensitively with memchr's SIMD substring search
    /// instead of the shared automaton (for short keywords that are frequent in any
    /// case but rare in the exact case, like `SK`).
    pub literal: bool,
    pub regex: &'static str,
    /// Which capture group is the secret; `None`: the first group that took part.
    pub group: Option<usize>,
    /// Minimum Shannon entropy (bits per byte) of the secret.
    pub min_entropy: f64,
    pub verify: Verify,
    /// Bytes before / after a keyword hit that the regex is run on.
    pub before: usize,
    pub after: usize,
    /// Suppressed when a more specific `secrets` finding overlaps it.
    pub low_priority: bool,
    /// A vendor-gated rule (`<vendor>_API_KEY = <value>`): also checked on the value
    /// of a JSON member whose key contains one of the keywords.
    pub vendor: bool,
}

const P: BuiltinRule = BuiltinRule {
    id: "",
    keywords: &[],
    case_keywords: None,
    word_start: true,
    follow: Follow::Any,
    literal: false,
    regex: "",
    group: None,
    min_entropy: 3.0,
    verify: Verify::None,
    before: 4,
    after: 400,
    low_priority: false,
    vendor: false,
};

/// Context rules: a keyword names the secret, the value follows within a few bytes.
const C: BuiltinRule = BuiltinRule {
    word_start: false,
    follow: Follow::Assign,
    before: 48,
    after: 96,
    ..P
};

// Token end: the secret must not continue.
macro_rules! end {
    () => {
        r"(?:[^A-Za-z0-9_\-]|$)"
    };
}

pub(crate) static RULES: &[BuiltinRule] = &[
    // ---- cloud: AWS --------------------------------------------------------------
    // gl:aws-access-token; AWS IAM "unique ID prefixes" (IAM user guide, reference_identifiers).
    BuiltinRule {
        id: "aws-access-key-id",
        keywords: &[
            "akia", "asia", "abia", "acca", "a3t", "agpa", "aida", "aroa", "aipa", "anpa", "anva",
            "apka",
        ],
        case_keywords: Some(&[
            "AKIA", "ASIA", "ABIA", "ACCA", "A3T", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA",
            "APKA",
        ]),
        regex: r"\b((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z2-7]{16})\b",
        ..P
    },
    // AWS secret access key: 40 base64 characters, only in context (aws/secret nearby).
    BuiltinRule {
        id: "aws-secret-access-key",
        keywords: &["aws", "secret"],
        regex: r#"(?i)(?:aws|secret)[a-z0-9_.\-]{0,40}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"]?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
        min_entropy: 4.0,
        verify: Verify::AwsSecret,
        ..C
    },
    // STS session tokens start with the base64 of their protobuf/`origin_ec` header.
    BuiltinRule {
        id: "aws-session-token",
        keywords: &["iqojb3jpz2", "fwogzxivyx"],
        case_keywords: Some(&["IQoJb3JpZ2", "FwoGZXIvYX"]),
        regex: r"\b((?:IQoJb3JpZ2luX2Vj|FwoGZXIvYXdzE)[A-Za-z0-9/+=]{100,})",
        min_entropy: 4.0,
        after: 8192,
        ..P
    },
    BuiltinRule {
        id: "aws-session-token",
        keywords: &[
            "session_token",
            "sessiontoken",
            "session-token",
            "security-token",
            "security_token",
        ],
        regex: r#"(?i)(?:session[_\-]?token|security[_\-]token)['"]?\s{0,5}(?:=|:|=>|:=)\s{0,5}['"]?([A-Za-z0-9/+=]{100,})"#,
        min_entropy: 4.0,
        after: 8192,
        ..C
    },
    // ---- cloud: Google ----------------------------------------------------------
    // gl:gcp-api-key
    BuiltinRule {
        id: "gcp-api-key",
        keywords: &["aiza"],
        case_keywords: Some(&["AIza"]),
        regex: concat!(r"\b(AIza[0-9A-Za-z_\-]{35})", end!()),
        min_entropy: 3.5,
        ..P
    },
    // A service-account key file: `"private_key_id": "<40 hex>"` (the key itself is
    // found by `private-key`; whole objects are also checked structurally).
    BuiltinRule {
        id: "gcp-service-account",
        keywords: &["private_key_id"],
        regex: r#"\\?"private_key_id\\?"\s*:\s*\\?"([a-f0-9]{40})\\?""#,
        before: 4,
        after: 120,
        ..C
    },
    // Google OAuth client secrets (`GOCSPX-` + 28), Google Identity docs.
    BuiltinRule {
        id: "google-oauth-client-secret",
        keywords: &["gocspx-"],
        case_keywords: Some(&["GOCSPX-"]),
        regex: concat!(r"\b(GOCSPX-[A-Za-z0-9_\-]{28})", end!()),
        ..P
    },
    // ---- cloud: Azure -----------------------------------------------------------
    // Storage connection strings: `...;AccountKey=<88 base64>;...` (Azure Storage docs).
    BuiltinRule {
        id: "azure-storage-account-key",
        keywords: &["accountkey"],
        regex: r"(?i)\bAccountKey\s*=\s*([A-Za-z0-9+/]{40,100}={0,2})",
        min_entropy: 4.0,
        ..C
    },
    // Service Bus / Event Hubs connection strings: `SharedAccessKey=<base64>`.
    BuiltinRule {
        id: "azure-shared-access-key",
        keywords: &["sharedaccesskey"],
        regex: r"(?i)\bSharedAccessKey\s*=\s*([A-Za-z0-9+/]{40,100}={0,2})",
        min_entropy: 4.0,
        ..C
    },
    // SAS tokens: `sv=2022-11-02&ss=b&...&se=...&sig=<base64, url-encoded>`.
    BuiltinRule {
        id: "azure-sas-token",
        keywords: &["sig="],
        regex: r"(?i)\bsig=([A-Za-z0-9%+/]{30,}(?:=|%3d){0,2})",
        min_entropy: 3.5,
        verify: Verify::SasToken,
        before: 8,
        after: 300,
        follow: Follow::Any,
        ..C
    },
    // gl:azure-ad-client-secret
    BuiltinRule {
        id: "azure-ad-client-secret",
        keywords: &["q~"],
        case_keywords: Some(&["Q~"]),
        word_start: false,
        regex: r#"(?:^|[\\'"\x60\s>=:(,])([a-zA-Z0-9_~.]{3}\dQ~[a-zA-Z0-9_~.\-]{31,34})(?:$|[\\'"\x60\s<),])"#,
        before: 8,
        after: 60,
        ..P
    },
    // ---- source hosting and CI --------------------------------------------------
    // GitHub token formats (GitHub blog "Behind GitHub's new authentication token formats"), gl:github-*.
    BuiltinRule {
        id: "github-pat",
        keywords: &["ghp_"],
        regex: r"\b(ghp_[0-9a-zA-Z]{36})\b",
        ..P
    },
    BuiltinRule {
        id: "github-oauth",
        keywords: &["gho_"],
        regex: r"\b(gho_[0-9a-zA-Z]{36})\b",
        ..P
    },
    BuiltinRule {
        id: "github-user-token",
        keywords: &["ghu_"],
        regex: r"\b(ghu_[0-9a-zA-Z]{36})\b",
        ..P
    },
    BuiltinRule {
        id: "github-app-token",
        keywords: &["ghs_"],
        regex: r"\b(ghs_[0-9a-zA-Z]{36})\b",
        ..P
    },
    BuiltinRule {
        id: "github-refresh-token",
        keywords: &["ghr_"],
        regex: r"\b(ghr_[0-9a-zA-Z]{36,76})\b",
        ..P
    },
    BuiltinRule {
        id: "github-fine-grained-pat",
        keywords: &["github_pat_"],
        regex: r"\b(github_pat_[0-9A-Za-z_]{82})\b",
        ..P
    },
    // gl:gitlab-pat, gl:gitlab-pat-routable
    BuiltinRule {
        id: "gitlab-pat",
        keywords: &["glpat-"],
        regex: concat!(
            r"\b(glpat-[0-9A-Za-z_\-]{20,300}(?:\.[0-9a-z]{9})?)",
            end!()
        ),
        ..P
    },
    // gl:gitlab-{deploy,runner,ptt,feed,incoming-mail,kubernetes-agent,oauth-app,cicd-job,scim,feature-flag}, gl:gitlab-rrt
    BuiltinRule {
        id: "gitlab-token",
        keywords: &[
            "gldt-",
            "glrt-",
            "glptt-",
            "glft-",
            "glimt-",
            "glagent-",
            "gloas-",
            "glcbt-",
            "glsoat-",
            "glffct-",
            "gr1348941",
        ],
        regex: concat!(
            r"\b((?:gldt|glrt|glptt|glft|glimt|glagent|gloas|glcbt|glsoat|glffct)-[0-9A-Za-z_\-]{20,300}|GR1348941[0-9A-Za-z_\-]{20})",
            end!()
        ),
        ..P
    },
    // Bitbucket app passwords (`ATBB` prefix, Atlassian docs), repository/workspace access tokens (`ATCTT3`).
    BuiltinRule {
        id: "bitbucket-token",
        keywords: &["atbb", "atctt3"],
        case_keywords: Some(&["ATBB", "ATCTT3"]),
        regex: concat!(
            r"\b(ATBB[A-Za-z0-9_=.\-]{28,}|ATCTT3[A-Za-z0-9_=\-]{100,300})",
            end!()
        ),
        ..P
    },
    // gl:atlassian-api-token
    BuiltinRule {
        id: "atlassian-api-token",
        keywords: &["atatt3"],
        case_keywords: Some(&["ATATT3"]),
        regex: concat!(r"\b(ATATT3[A-Za-z0-9_=\-]{186})", end!()),
        ..P
    },
    // gl:npm-access-token
    BuiltinRule {
        id: "npm-token",
        keywords: &["npm_"],
        regex: r"\b(npm_[A-Za-z0-9]{36})\b",
        ..P
    },
    // gl:pypi-upload-token (macaroon: base64 of the `pypi.org` / `test.pypi.org` location).
    BuiltinRule {
        id: "pypi-token",
        keywords: &["pypi-age"],
        case_keywords: Some(&["pypi-AgE"]),
        regex: r"\b(pypi-(?:AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)[A-Za-z0-9_\-]{50,1000})",
        after: 1100,
        ..P
    },
    // Docker Hub personal / organization access tokens (`dckr_pat_`, `dckr_oat_`), Docker docs.
    BuiltinRule {
        id: "dockerhub-token",
        keywords: &["dckr_pat_", "dckr_oat_"],
        regex: concat!(r"\b(dckr_(?:pat|oat)_[A-Za-z0-9_\-]{27,})", end!()),
        ..P
    },
    // gl:huggingface-access-token, gl:huggingface-organization-api-token
    BuiltinRule {
        id: "huggingface-token",
        keywords: &["hf_", "api_org_"],
        regex: r"\b((?:hf|api_org)_[A-Za-z0-9]{34,40})\b",
        ..P
    },
    // ---- payments and messaging -------------------------------------------------
    // gl:stripe-access-token (Stripe API keys docs: sk_/rk_ + live/test).
    BuiltinRule {
        id: "stripe-secret-key",
        // Test-mode keys (`sk_test_`, `rk_test_`) are not reported: see docs/detectors.md.
        keywords: &["sk_live_", "sk_prod_", "rk_live_", "rk_prod_"],
        regex: r"\b((?:sk|rk)_(?:live|prod)_[A-Za-z0-9]{20,247})\b",
        ..P
    },
    // Stripe webhook signing secrets (`whsec_`), Stripe webhooks docs.
    BuiltinRule {
        id: "stripe-webhook-secret",
        keywords: &["whsec_"],
        regex: r"\b(whsec_[A-Za-z0-9+/=]{32,})",
        ..P
    },
    // gl:slack-bot-token, gl:slack-legacy-bot-token
    BuiltinRule {
        id: "slack-bot-token",
        keywords: &["xoxb-"],
        regex: concat!(r"\b(xoxb-[0-9]{8,14}-[0-9A-Za-z\-]{10,})", end!()),
        ..P
    },
    // gl:slack-user-token
    BuiltinRule {
        id: "slack-user-token",
        keywords: &["xoxp-"],
        regex: concat!(r"\b(xoxp-[0-9]{8,14}-[0-9A-Za-z\-]{10,})", end!()),
        ..P
    },
    // gl:slack-app-token
    BuiltinRule {
        id: "slack-app-token",
        keywords: &["xapp-"],
        regex: concat!(r"(?i)\b(xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+)", end!()),
        ..P
    },
    // gl:slack-legacy-token, gl:slack-legacy-workspace-token, gl:slack-config-*
    BuiltinRule {
        id: "slack-token",
        keywords: &["xoxa-", "xoxo-", "xoxs-", "xoxr-", "xoxe-", "xoxe.xox"],
        regex: concat!(r"\b((?:xoxe\.)?xox[aorsebp]-[0-9A-Za-z\-]{10,})", end!()),
        ..P
    },
    // gl:slack-webhook-url
    BuiltinRule {
        id: "slack-webhook",
        keywords: &["hooks.slack"],
        word_start: false,
        regex: r"((?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{30,80})",
        before: 12,
        after: 120,
        ..P
    },
    // gl:twilio-api-key (`SK` + 32 hex); Twilio account SIDs (`AC` + 32 hex).
    BuiltinRule {
        id: "twilio-api-key",
        keywords: &["sk"],
        case_keywords: Some(&["SK"]),
        regex: r"\b(SK[0-9a-fA-F]{32})\b",
        before: 1,
        after: 40,
        literal: true,
        ..P
    },
    BuiltinRule {
        id: "twilio-account-sid",
        keywords: &["ac"],
        case_keywords: Some(&["AC"]),
        regex: r"\b(AC[0-9a-f]{32})\b",
        before: 1,
        after: 40,
        literal: true,
        ..P
    },
    BuiltinRule {
        id: "twilio-auth-token",
        keywords: &["twilio"],
        regex: r#"(?i)twilio[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=)\s{0,5}['"]?([0-9a-f]{32})\b"#,
        ..C
    },
    // gl:sendgrid-api-token (`SG.` + 22 + `.` + 43).
    BuiltinRule {
        id: "sendgrid-api-key",
        keywords: &["sg."],
        case_keywords: Some(&["SG."]),
        regex: concat!(r"\b(SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43})", end!()),
        ..P
    },
    // gl:mailgun-private-api-token (`key-` + 32 hex).
    BuiltinRule {
        id: "mailgun-api-key",
        keywords: &["key-"],
        regex: r"\b(key-[0-9a-f]{32})\b",
        ..P
    },
    // gl:mailchimp-api-key (32 hex + `-us<dc>`).
    BuiltinRule {
        id: "mailchimp-api-key",
        keywords: &["-us"],
        word_start: false,
        regex: r"\b([0-9a-f]{32}-us[0-9]{1,2})\b",
        before: 34,
        after: 8,
        ..P
    },
    // gl:sendinblue-api-token
    BuiltinRule {
        id: "sendinblue-api-key",
        keywords: &["xkeysib-"],
        regex: r"\b(xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16})\b",
        ..P
    },
    // Telegram Bot API tokens: `<bot id>:AA<33>` (core.telegram.org/bots/api#authorizing-your-bot).
    BuiltinRule {
        id: "telegram-bot-token",
        keywords: &[":aa"],
        case_keywords: Some(&[":AA"]),
        word_start: false,
        regex: concat!(r"(?:^|[^0-9])([0-9]{8,10}:AA[0-9A-Za-z_\-]{33})", end!()),
        before: 12,
        after: 40,
        ..P
    },
    // Discord bot tokens: base64url(user id) . timestamp . HMAC (discord.com/developers/docs/reference#authentication).
    BuiltinRule {
        id: "discord-bot-token",
        keywords: &["discord", "bot"],
        regex: concat!(
            r"\b([MNO][A-Za-z0-9_\-]{23,27}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,40})",
            end!()
        ),
        verify: Verify::Discord,
        before: 200,
        after: 300,
        follow: Follow::Any,
        ..C
    },
    // Discord webhooks (discord.com/developers/docs/resources/webhook).
    BuiltinRule {
        id: "discord-webhook",
        keywords: &["discord"],
        regex: r"(https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_\-]{60,72})",
        before: 40,
        after: 200,
        follow: Follow::Any,
        ..C
    },
    // ---- AI providers -----------------------------------------------------------
    // gl:openai-api-key (`T3BlbkFJ` = base64 of "OpenAI").
    BuiltinRule {
        id: "openai-api-key",
        keywords: &["t3blbkfj", "sk-proj-", "sk-svcacct-", "sk-admin-"],
        case_keywords: Some(&["T3BlbkFJ", "sk-proj-", "sk-svcacct-", "sk-admin-"]),
        word_start: false,
        regex: concat!(
            r"\b(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,200}T3BlbkFJ[A-Za-z0-9_\-]{20,200}|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}|sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{80,300})",
            end!()
        ),
        before: 230,
        after: 420,
        ..P
    },
    // gl:anthropic-api-key, gl:anthropic-admin-api-key
    BuiltinRule {
        id: "anthropic-api-key",
        keywords: &["sk-ant-"],
        regex: concat!(
            r"\b(sk-ant-(?:api|admin|oat|ort)\d{2}-[A-Za-z0-9_\-]{80,120})",
            end!()
        ),
        ..P
    },
    // Groq (`gsk_` + 52), console.groq.com keys.
    BuiltinRule {
        id: "groq-api-key",
        keywords: &["gsk_"],
        regex: r"\b(gsk_[A-Za-z0-9]{52})\b",
        ..P
    },
    // Replicate (`r8_` + 37), replicate.com/account/api-tokens.
    BuiltinRule {
        id: "replicate-api-token",
        keywords: &["r8_"],
        regex: r"\b(r8_[A-Za-z0-9]{37})\b",
        ..P
    },
    // gl:perplexity-api-key
    BuiltinRule {
        id: "perplexity-api-key",
        keywords: &["pplx-"],
        regex: r"\b(pplx-[A-Za-z0-9]{48})\b",
        ..P
    },
    // xAI (`xai-` + 80), console.x.ai.
    BuiltinRule {
        id: "xai-api-key",
        keywords: &["xai-"],
        regex: r"\b(xai-[A-Za-z0-9]{80})\b",
        ..P
    },
    // ---- keys and tokens ---------------------------------------------------------
    // gl:private-key; RFC 7468 labels (RSA/EC/DSA/OPENSSH/ENCRYPTED/PKCS#8 "PRIVATE KEY"),
    // RFC 4880 armor (PGP PRIVATE KEY BLOCK). A truncated block without END also counts.
    BuiltinRule {
        id: "private-key",
        keywords: &["-----begin"],
        word_start: false,
        regex: r"-----BEGIN[ A-Z0-9_\-]{0,100}PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]{64,}?-----END[ A-Z0-9_\-]{0,100}PRIVATE KEY(?: BLOCK)?-----|[\r\n\t A-Za-z0-9+/=:,\\\-]{64,})",
        group: Some(0),
        min_entropy: 0.0,
        verify: Verify::PrivateKey,
        before: 0,
        after: 65536,
        ..P
    },
    // gl:age-secret-key
    BuiltinRule {
        id: "age-secret-key",
        keywords: &["age-secret"],
        regex: r"\b(AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})\b",
        ..P
    },
    // RFC 7519 JWTs: base64url(header).base64url(payload).signature (gl:jwt).
    BuiltinRule {
        id: "jwt",
        keywords: &["eyj", "eyai"],
        case_keywords: Some(&["eyJ", "eyAi"]),
        regex: concat!(
            r"\b(ey[A-Za-z0-9_\-]{10,}\.ey[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]*)",
            end!()
        ),
        verify: Verify::Jwt,
        after: 8192,
        follow: Follow::Jwt,
        ..P
    },
    // RFC 3986 userinfo with a password: `scheme://user:password@host`.
    BuiltinRule {
        id: "url-password",
        keywords: &["://"],
        word_start: false,
        // Group 2 (≤ 128), `:`, group 3 (≤ 256), `@`: nothing of the match after `://`
        // but these, so `Userinfo` is a necessary condition of a match at this `://`.
        follow: Follow::Userinfo(386),
        regex: r#"\b([a-zA-Z][a-zA-Z0-9+.\-]{1,30})://([^\s:/?#@"'<>\[\]\\]{0,128}):([^\s/?#@"'<>\\]{1,256})@[A-Za-z0-9.\-_\[\]:%]+"#,
        group: Some(3),
        min_entropy: 0.0,
        verify: Verify::UrlPassword,
        before: 40,
        after: 600,
        ..P
    },
    // ADO.NET / ODBC connection strings: `Server=...;User Id=...;Password=...;`.
    BuiltinRule {
        id: "connection-string-password",
        keywords: &["password", "pwd"],
        regex: r#"(?i)(?:^|[;"'\s])(?:password|pwd)\s*=\s*([^;"'\r\n]{1,200})"#,
        min_entropy: 0.0,
        verify: Verify::AdoNet,
        before: 4,
        after: 220,
        ..C
    },
    // HTTP Basic credentials (RFC 7617).
    BuiltinRule {
        id: "basic-auth",
        keywords: &["basic"],
        regex: r"(?i)\bbasic\s+([A-Za-z0-9+/]{8,}={0,2})(?:[^A-Za-z0-9+/=]|$)",
        min_entropy: 0.0,
        verify: Verify::BasicAuth,
        before: 4,
        after: 600,
        follow: Follow::Space,
        ..C
    },
    // HTTP Bearer tokens (RFC 6750).
    BuiltinRule {
        id: "bearer-token",
        keywords: &["bearer"],
        regex: r"(?i)\bbearer\s+([A-Za-z0-9._~+/\-]{20,}=*)",
        min_entropy: 3.5,
        verify: Verify::Bearer,
        before: 4,
        after: 4096,
        low_priority: true,
        follow: Follow::Space,
        ..C
    },
    // gl:generic-api-key, narrowed: a secret-ish name assigned a secret-looking value.
    BuiltinRule {
        id: "generic-secret",
        keywords: &[
            "password",
            "passwd",
            "pwd",
            "secret",
            "token",
            "api_key",
            "apikey",
            "api-key",
            "access_key",
            "access-key",
            "accesskey",
            "auth_key",
            "credential",
            "private_key",
        ],
        regex: r#"(?i)([a-z0-9_.\-]{0,40}(?:password|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key|auth[_\-]?key|credentials?|private[_\-]?key)[a-z0-9_.\-]{0,30})['"]?\s{0,5}(?:=|:|:=|=>|\|\|=)\s{0,5}['"\x60]?([^\s'"\x60;,<>(){}\[\]]{8,200})"#,
        group: Some(2),
        min_entropy: 0.0,
        verify: Verify::Generic,
        before: 48,
        after: 96,
        low_priority: true,
        ..C
    },
    // ---- more SaaS formats (gitleaks rule ids in comments) -----------------------
    // gl:shopify-*
    BuiltinRule {
        id: "shopify-token",
        keywords: &["shpat_", "shpca_", "shppa_", "shpss_"],
        regex: r"\b(shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})\b",
        ..P
    },
    // gl:digitalocean-*
    BuiltinRule {
        id: "digitalocean-token",
        keywords: &["dop_v1_", "doo_v1_", "dor_v1_"],
        regex: r"\b(do[opr]_v1_[a-f0-9]{64})\b",
        ..P
    },
    // gl:linear-api-key
    BuiltinRule {
        id: "linear-api-key",
        keywords: &["lin_api_"],
        regex: r"\b(lin_api_[A-Za-z0-9]{40})\b",
        ..P
    },
    // gl:postman-api-token
    BuiltinRule {
        id: "postman-api-key",
        keywords: &["pmak-"],
        case_keywords: Some(&["PMAK-"]),
        regex: r"\b(PMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34})\b",
        ..P
    },
    // gl:doppler-api-token
    BuiltinRule {
        id: "doppler-token",
        keywords: &["dp.pt."],
        regex: r"\b(dp\.pt\.[A-Za-z0-9]{43})\b",
        ..P
    },
    // gl:databricks-api-token
    BuiltinRule {
        id: "databricks-token",
        keywords: &["dapi"],
        case_keywords: Some(&["dapi"]),
        regex: r"\b(dapi[a-f0-9]{32}(?:-\d)?)\b",
        ..P
    },
    // gl:vault-service-token, gl:vault-batch-token
    BuiltinRule {
        id: "vault-token",
        keywords: &["hvs.", "hvb."],
        regex: concat!(r"\b(hv[sb]\.[A-Za-z0-9_\-]{90,300})", end!()),
        ..P
    },
    // gl:sentry-user-token, gl:sentry-org-token
    BuiltinRule {
        id: "sentry-token",
        keywords: &["sntryu_", "sntrys_"],
        regex: r"\b(sntryu_[a-f0-9]{64}|sntrys_eyJ[A-Za-z0-9+/=_]{60,600})",
        after: 800,
        ..P
    },
    // gl:grafana-service-account-token, gl:grafana-cloud-api-token
    BuiltinRule {
        id: "grafana-token",
        keywords: &["glsa_", "glc_"],
        regex: r"\b(glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|glc_[A-Za-z0-9+/]{32,400}={0,3})",
        ..P
    },
    // gl:new-relic-user-api-key
    BuiltinRule {
        id: "new-relic-api-key",
        keywords: &["nrak-"],
        case_keywords: Some(&["NRAK-"]),
        regex: r"\b(NRAK-[A-Z0-9]{27})\b",
        ..P
    },
    // gl:pulumi-api-token
    BuiltinRule {
        id: "pulumi-token",
        keywords: &["pul-"],
        regex: r"\b(pul-[a-f0-9]{40})\b",
        ..P
    },
    // gl:rubygems-api-token
    BuiltinRule {
        id: "rubygems-token",
        keywords: &["rubygems_"],
        regex: r"\b(rubygems_[a-f0-9]{48})\b",
        ..P
    },
    // gl:square-access-token (`sq0atp-`), Square OAuth secrets (`sq0csp-`).
    BuiltinRule {
        id: "square-token",
        keywords: &["sq0atp-", "sq0csp-"],
        regex: concat!(r"\b(sq0(?:atp|csp)-[0-9A-Za-z_\-]{22,60})", end!()),
        ..P
    },
    // gl:heroku-api-key-v2
    BuiltinRule {
        id: "heroku-api-key",
        keywords: &["hrku-aa"],
        case_keywords: Some(&["HRKU-AA"]),
        regex: concat!(r"\b(HRKU-AA[0-9A-Za-z_\-]{58})", end!()),
        ..P
    },
    // Tailscale keys (`tskey-<kind>-<id>-<secret>`), tailscale.com/kb/1085/auth-keys.
    BuiltinRule {
        id: "tailscale-key",
        keywords: &["tskey-"],
        regex: concat!(r"\b(tskey-[a-z]+-[A-Za-z0-9]{6,}-[A-Za-z0-9]{20,})", end!()),
        ..P
    },
    // gl:notion-api-token
    BuiltinRule {
        id: "notion-token",
        keywords: &["ntn_"],
        regex: r"\b(ntn_[0-9]{11}[A-Za-z0-9]{35})\b",
        ..P
    },
    // gl:alibaba-access-key-id
    BuiltinRule {
        id: "alibaba-access-key-id",
        keywords: &["ltai"],
        case_keywords: Some(&["LTAI"]),
        regex: r"\b(LTAI[A-Za-z0-9]{20})\b",
        ..P
    },
    // gl:1password-service-account-token
    BuiltinRule {
        id: "1password-service-account-token",
        keywords: &["ops_eyj"],
        case_keywords: Some(&["ops_eyJ"]),
        regex: r"\b(ops_eyJ[a-zA-Z0-9+/]{250,}={0,3})",
        after: 4096,
        ..P
    },
    // gl:planetscale-*
    BuiltinRule {
        id: "planetscale-token",
        keywords: &["pscale_tkn_", "pscale_oauth_", "pscale_pw_"],
        regex: concat!(
            r"\b(pscale_(?:tkn|oauth|pw)_[A-Za-z0-9_=.\-]{32,64})",
            end!()
        ),
        ..P
    },
    // ==== issue 16: config-file carriers, webhooks and private keys beyond PEM ==========
    // gl:microsoft-teams-webhook (Office 365 connector URLs); Power Automate workflow
    // trigger URLs that replace them carry their secret in `sig=` (Microsoft Teams docs,
    // "Create incoming webhooks with Workflows").
    BuiltinRule {
        id: "microsoft-teams-webhook",
        keywords: &["webhook.off", "logic.azure"],
        word_start: false,
        regex: r#"(https://[a-z0-9\-]+\.webhook\.office\.com/webhookb2/[a-f0-9\-]{36}@[a-f0-9\-]{36}/IncomingWebhook/[a-f0-9]{32}/[a-f0-9\-]{36}(?:/[A-Za-z0-9_\-]{20,80})?|https://[a-z0-9\-.]+\.logic\.azure\.com(?::443)?/workflows/[a-f0-9]{32}/triggers/[^\s"'?]{1,200}\?[^\s"']{0,400}sig=[A-Za-z0-9%_\-]{20,})"#,
        before: 120,
        after: 700,
        ..P
    },
    // Google Chat incoming webhooks (Google Chat docs, "Build a Google Chat app as a
    // webhook"): the `token=` parameter is the secret. trufflehog googlechatwebhook.
    BuiltinRule {
        id: "google-chat-webhook",
        keywords: &["chat.google"],
        word_start: false,
        regex: r#"(https://chat\.googleapis\.com/v1/spaces/[A-Za-z0-9_\-]{6,40}/messages\?[^\s"']{0,200}token=[A-Za-z0-9_\-%=]{20,})"#,
        before: 12,
        after: 500,
        ..P
    },
    // Zapier catch hooks: the URL is the credential. trufflehog zapierwebhook.
    BuiltinRule {
        id: "zapier-webhook",
        keywords: &["hooks.zapier"],
        word_start: false,
        regex: r"(https://hooks\.zapier\.com/hooks/catch/[0-9]{5,10}/[a-z0-9]{5,10})",
        before: 12,
        after: 80,
        ..P
    },
    // gl:nuget-config-password (`<add key="ClearTextPassword" value="..."/>` in NuGet.Config).
    BuiltinRule {
        id: "nuget-config-password",
        keywords: &["<add"],
        word_start: false,
        regex: r#"(?i)<add\s+key=\\?"(?:ClearText)?Password\\?"\s+value=\\?"([^"\\]{6,200})\\?"\s*/>"#,
        min_entropy: 0.0,
        before: 4,
        after: 300,
        ..P
    },
    // gl:curl-auth-user: `curl -u user:password`, `--user user:password`, `--user=...`.
    BuiltinRule {
        id: "curl-user-password",
        keywords: &["curl"],
        regex: r#"\bcurl\b[^\r\n]{0,400}?\s(?:-u|--user)(?:=|[ \t]{1,5})(?:"([^":\s]{1,100}:[^"\r\n]{3,200})"|'([^':\s]{1,100}:[^'\r\n]{3,200})'|([^\s'":]{1,100}:[^\s'"]{3,200}))"#,
        min_entropy: 0.0,
        verify: Verify::UserPass,
        before: 4,
        after: 900,
        ..P
    },
    // gl:curl-auth-header, for headers other than Basic/Bearer (found by `basic-auth`
    // and `bearer-token`): `-H 'X-API-Key: ...'`, `Authorization: token ...`,
    // `PRIVATE-TOKEN: ...` (GitLab API docs), `X-Auth-Token`, `X-Access-Token`.
    BuiltinRule {
        id: "auth-header",
        keywords: &[
            "x-api-key",
            "x-api-token",
            "x-auth-token",
            "x-access-token",
            "private-token",
            "authorization",
        ],
        word_start: false,
        regex: r#"(?i)(?:x-api-key|x-api-token|x-auth-token|x-access-token|private-token|authorization:\s*(?:token|apikey|api-key|sso-key|key))\s*[:=]?\s*([A-Za-z0-9._~+/=\-]{16,400})"#,
        min_entropy: 3.5,
        verify: Verify::Bearer,
        before: 4,
        after: 500,
        follow: Follow::Any,
        low_priority: true,
        ..C
    },
    // gl:kubernetes-secret-yaml: a `kind: Secret` manifest's `data:` values (either order,
    // as kubectl prints `data:` before `kind:`).
    BuiltinRule {
        id: "kubernetes-secret",
        keywords: &["kind:"],
        regex: r#"(?s)kind:\s*Secret\b.{0,600}?\n(?:data|stringData):[ \t]*\r?\n[ \t]+[A-Za-z0-9_.\-]+:[ \t]*['"]?([A-Za-z0-9+/=]{12,})|(?s)\n(?:data|stringData):[ \t]*\r?\n[ \t]+[A-Za-z0-9_.\-]+:[ \t]*['"]?([A-Za-z0-9+/=]{12,})['"]?\s.{0,2000}?kind:\s*Secret\b"#,
        min_entropy: 3.0,
        before: 2400,
        after: 2400,
        ..P
    },
    // gl:sidekiq-secret, gl:sidekiq-sensitive-url (Sidekiq Pro/Enterprise gem credentials).
    BuiltinRule {
        id: "sidekiq-secret",
        keywords: &["contribsys"],
        word_start: false,
        regex: r#"(?i)(?:BUNDLE_(?:ENTERPRISE|GEMS)__CONTRIBSYS__COM['"]?\s{0,5}(?:=|:)\s{0,5}['"]?([a-f0-9]{8}:[a-f0-9]{8})\b|https?://([a-f0-9]{8}:[a-f0-9]{8})@(?:gems|enterprise)\.contribsys\.com)"#,
        min_entropy: 0.0,
        before: 80,
        after: 120,
        ..P
    },
    // `.netrc` / `_netrc` entries (GNU inetutils ftp manual, curl `--netrc` docs):
    // `machine <host> login <user> password <password>`, tokens in any order.
    BuiltinRule {
        id: "netrc-password",
        keywords: &["machine"],
        follow: Follow::Space,
        regex: r"(?i)\bmachine\s+\S+(?:\s+(?:login|account)\s+\S+)*\s+password\s+(\S{3,200})",
        min_entropy: 0.0,
        verify: Verify::Bearer,
        before: 4,
        after: 600,
        ..P
    },
    // Docker `config.json` (`docker login` docs): `"auths": {"<registry>": {"auth":
    // "<base64 of user:password>"}}` as text; as JSON it is checked by key.
    BuiltinRule {
        id: "docker-config-auth",
        keywords: &["auths"],
        regex: r#"(?s)auths\\?"\s*:\s*\{.{0,2000}?\\?"auth\\?"\s*:\s*\\?"([A-Za-z0-9+/]{8,}={0,2})\\?""#,
        min_entropy: 0.0,
        verify: Verify::BasicAuth,
        before: 4,
        after: 2400,
        follow: Follow::Any,
        ..P
    },
    // kubeconfig `users[].user.client-key-data`: the base64 of a PEM private key
    // (`LS0tLS1CRUdJTi` is the base64 of `-----BEGIN`). Kubernetes docs, "Organizing
    // cluster access using kubeconfig files".
    BuiltinRule {
        id: "kubeconfig-client-key",
        keywords: &["client-key"],
        regex: r#"client-key-data\\?"?\s*:\s*\\?['"]?(LS0tLS1CRUdJTi[A-Za-z0-9+/=]{40,})"#,
        min_entropy: 0.0,
        before: 4,
        after: 16384,
        ..C
    },
    // `.npmrc` (npm docs, "npmrc"): `//registry/:_authToken=`, `_auth=` (base64 of
    // user:password), `_password=` (base64 of the password).
    BuiltinRule {
        id: "npmrc-auth",
        keywords: &["_authtoken", "_auth", "_password"],
        word_start: false,
        regex: r#"(?i)(?:^|[\s:])(_authToken|_auth|_password)\s*=\s*['"]?([^\s'"]{8,400})"#,
        group: Some(2),
        min_entropy: 2.5,
        before: 4,
        after: 420,
        ..C
    },
    // `.pypirc` (PyPA packaging guide, "The .pypirc file"): a `password` in an index
    // section.
    BuiltinRule {
        id: "pypirc-password",
        keywords: &["[pypi]", "[testpypi]", "[distutils]"],
        word_start: false,
        regex: r"(?is)\[(?:pypi|testpypi|distutils)\].{0,400}?\bpassword\s*[=:]\s*(\S{6,400})",
        min_entropy: 0.0,
        verify: Verify::Bearer,
        before: 4,
        after: 900,
        follow: Follow::Any,
        ..C
    },
    // JDBC URLs (MySQL Connector/J, PostgreSQL JDBC and SQL Server JDBC docs):
    // `jdbc:<sub>://host/db?user=x&password=y`, `;password=y`, and Oracle thin
    // `jdbc:oracle:thin:user/password@host`.
    BuiltinRule {
        id: "jdbc-password",
        keywords: &["jdbc:"],
        regex: r#"(?i)\bjdbc:(?:oracle:thin:[^/\s'"@]{1,64}/([^@\s'"]{3,200})@|[a-z0-9]{2,20}:[^\s'"]{0,300}?[?;&:](?:password|pwd)=([^\s&;'"]{3,200}))"#,
        min_entropy: 0.0,
        verify: Verify::Bearer,
        before: 4,
        after: 700,
        ..P
    },
    // PuTTY private key files (PuTTY manual, appendix C "PPK file format"): the
    // `Private-Lines:` base64 block.
    BuiltinRule {
        id: "putty-private-key",
        keywords: &["putty-user"],
        case_keywords: Some(&["PuTTY-User"]),
        regex: r"(PuTTY-User-Key-File-[23]:[\s\S]{0,4000}?Private-Lines:\s*\d+\s*[A-Za-z0-9+/=\r\n]{40,})",
        min_entropy: 0.0,
        before: 0,
        after: 16384,
        ..P
    },
    // WireGuard `[Interface] PrivateKey = <base64 of 32 bytes>` (wg(8) man page).
    BuiltinRule {
        id: "wireguard-private-key",
        keywords: &["privatekey"],
        regex: r"(?i)\bPrivateKey\s*=\s*([A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)",
        min_entropy: 3.5,
        before: 4,
        after: 80,
        ..C
    },
    // ==== issue 16: prefixed formats, found without a keyword nearby ==================
    // gl:1password-secret-key
    BuiltinRule {
        id: "1password-secret-key",
        keywords: &["a3-"],
        case_keywords: Some(&["A3-"]),
        regex: r#"\b(A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5})\b"#,
        after: 120,
        ..P
    },
    // gl:adobe-client-secret
    BuiltinRule {
        id: "adobe-client-secret",
        keywords: &["p8e-"],
        regex: r#"\b(p8e-[A-Za-z0-9]{32})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 120,
        ..P
    },
    // gl:airtable-personnal-access-token
    BuiltinRule {
        id: "airtable-pat",
        keywords: &["pat"],
        case_keywords: Some(&["pat"]),
        follow: Follow::AlnumThen(14, b'.'),
        regex: r#"\b(pat[A-Za-z0-9]{14}\.[a-f0-9]{64})\b"#,
        after: 120,
        ..P
    },
    // gl:artifactory-api-key
    BuiltinRule {
        id: "artifactory-api-key",
        keywords: &["akcp"],
        case_keywords: Some(&["AKCp"]),
        regex: r#"\b(AKCp[A-Za-z0-9]{69})\b"#,
        after: 120,
        ..P
    },
    // gl:artifactory-reference-token
    BuiltinRule {
        id: "artifactory-reference-token",
        keywords: &["cmvmd"],
        case_keywords: Some(&["cmVmd"]),
        regex: r#"\b(cmVmd[A-Za-z0-9]{59})\b"#,
        after: 120,
        ..P
    },
    // gl:aws-amazon-bedrock-api-key-long-lived, gl:aws-amazon-bedrock-api-key-short-lived
    BuiltinRule {
        id: "aws-bedrock-api-key",
        keywords: &["absk", "bedrock-api"],
        case_keywords: Some(&["ABSK", "bedrock-api"]),
        regex: r#"\b(ABSK[A-Za-z0-9+/]{109,269}={0,2}|bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t[A-Za-z0-9+/=%&._\-]{0,2000})"#,
        after: 2400,
        ..P
    },
    // gl:clickhouse-cloud-api-secret-key
    BuiltinRule {
        id: "clickhouse-cloud-secret-key",
        keywords: &["4b1d"],
        regex: r#"\b(4b1d[A-Za-z0-9]{38})\b"#,
        after: 120,
        ..P
    },
    // gl:clojars-api-token
    BuiltinRule {
        id: "clojars-token",
        keywords: &["clojars_"],
        regex: r#"(?i)\b(CLOJARS_[a-z0-9]{60})\b"#,
        after: 120,
        ..P
    },
    // gl:cloudflare-origin-ca-key
    BuiltinRule {
        id: "cloudflare-origin-ca-key",
        keywords: &["v1.0-"],
        regex: r#"\b(v1\.0-[a-f0-9]{24}-[a-f0-9]{146})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 190,
        ..P
    },
    // gl:duffel-api-token (live mode only; test mode is a placeholder here)
    BuiltinRule {
        id: "duffel-token",
        keywords: &["duffel_"],
        regex: r#"\b(duffel_live_[A-Za-z0-9_\-=]{43})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 120,
        ..P
    },
    // gl:dynatrace-api-token
    BuiltinRule {
        id: "dynatrace-token",
        keywords: &["dt0c01."],
        regex: r#"\b(dt0c01\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{64})\b"#,
        after: 120,
        ..P
    },
    // gl:easypost-api-token (EZTK test keys are not reported)
    BuiltinRule {
        id: "easypost-token",
        keywords: &["ezak"],
        case_keywords: Some(&["EZAK"]),
        regex: r#"\b(EZAK[A-Za-z0-9]{54})\b"#,
        after: 120,
        ..P
    },
    // gl:facebook-page-access-token
    BuiltinRule {
        id: "facebook-page-access-token",
        keywords: &["eaam", "eaac"],
        case_keywords: Some(&["EAAM", "EAAC"]),
        regex: r#"\b(EAA[MC][A-Za-z0-9]{100,})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 2400,
        ..P
    },
    // gl:flyio-access-token
    BuiltinRule {
        id: "flyio-token",
        keywords: &["fo1_", "fm1a_", "fm1r_", "fm2_"],
        regex: r#"\b(fo1_[A-Za-z0-9_\-]{43}|fm1[ar]_[A-Za-z0-9+/]{100,}={0,3}|fm2_[A-Za-z0-9+/]{100,}={0,3})"#,
        after: 2400,
        ..P
    },
    // gl:frameio-api-token
    BuiltinRule {
        id: "frameio-token",
        keywords: &["fio-u-"],
        regex: r#"\b(fio-u-[A-Za-z0-9_\-=]{64})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 120,
        ..P
    },
    // gl:gitlab-session-cookie
    BuiltinRule {
        id: "gitlab-session-cookie",
        keywords: &["_gitlab_sess"],
        word_start: false,
        regex: r#"(_gitlab_session=[0-9a-z]{32})\b"#,
        after: 120,
        ..P
    },
    // gl:grafana-api-key
    BuiltinRule {
        id: "grafana-api-key",
        keywords: &["eyjrijoi"],
        case_keywords: Some(&["eyJrIjoi"]),
        regex: r#"\b(eyJrIjoi[A-Za-z0-9]{70,400}={0,3})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 420,
        ..P
    },
    // gl:harness-api-key
    BuiltinRule {
        id: "harness-api-key",
        keywords: &["pat.", "sat."],
        regex: r#"\b((?:pat|sat)\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{20})\b"#,
        after: 120,
        ..P
    },
    // gl:hashicorp-tf-api-token
    BuiltinRule {
        id: "terraform-cloud-token",
        keywords: &[".atlasv1."],
        word_start: false,
        regex: r#"\b([A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_\-=]{60,70})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 120,
        ..P
    },
    // gl:infracost-api-token
    BuiltinRule {
        id: "infracost-token",
        keywords: &["ico-"],
        regex: r#"\b(ico-[A-Za-z0-9]{32})\b"#,
        after: 120,
        ..P
    },
    // gl:maxmind-license-key
    BuiltinRule {
        id: "maxmind-license-key",
        keywords: &["_mmk"],
        word_start: false,
        regex: r#"\b([A-Za-z0-9]{6}_[A-Za-z0-9]{29}_mmk)\b"#,
        after: 120,
        ..P
    },
    // gl:octopus-deploy-api-key
    BuiltinRule {
        id: "octopus-deploy-api-key",
        keywords: &["api-"],
        case_keywords: Some(&["API-"]),
        regex: r#"\b(API-[A-Z0-9]{26})\b"#,
        after: 120,
        ..P
    },
    // gl:openshift-user-token
    BuiltinRule {
        id: "openshift-user-token",
        keywords: &["sha256~"],
        regex: r#"\b(sha256~[A-Za-z0-9_\-]{43})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 120,
        ..P
    },
    // gl:prefect-api-token
    BuiltinRule {
        id: "prefect-api-token",
        keywords: &["pnu_"],
        regex: r#"\b(pnu_[A-Za-z0-9]{36})\b"#,
        after: 120,
        ..P
    },
    // gl:readme-api-token
    BuiltinRule {
        id: "readme-api-token",
        keywords: &["rdme_"],
        regex: r#"\b(rdme_[a-z0-9]{70})\b"#,
        after: 120,
        ..P
    },
    // gl:scalingo-api-token
    BuiltinRule {
        id: "scalingo-token",
        keywords: &["tk-us-"],
        regex: r#"\b(tk-us-[A-Za-z0-9_\-]{48})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 120,
        ..P
    },
    // gl:settlemint-application-access-token, gl:settlemint-personal-access-token, gl:settlemint-service-access-token
    BuiltinRule {
        id: "settlemint-token",
        keywords: &["sm_aat_", "sm_pat_", "sm_sat_"],
        regex: r#"\b(sm_(?:aat|pat|sat)_[A-Za-z0-9]{16})\b"#,
        after: 120,
        ..P
    },
    // gl:shippo-api-token (live mode only)
    BuiltinRule {
        id: "shippo-token",
        keywords: &["shippo_"],
        regex: r#"\b(shippo_live_[a-fA-F0-9]{40})\b"#,
        after: 120,
        ..P
    },
    // gl:sourcegraph-access-token
    BuiltinRule {
        id: "sourcegraph-token",
        keywords: &["sgp_"],
        regex: r#"\b(sgp_(?:[a-fA-F0-9]{16}|local)_[a-fA-F0-9]{40}|sgp_[a-fA-F0-9]{40})\b"#,
        after: 120,
        ..P
    },
    // gl:typeform-api-token
    BuiltinRule {
        id: "typeform-token",
        keywords: &["tfp_"],
        regex: r#"\b(tfp_[A-Za-z0-9_\-.=]{59})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 120,
        ..P
    },
    // np.mapbox.2 (noseyparker), trufflehog mapbox; Mapbox access-token docs (sk. = secret scope)
    BuiltinRule {
        id: "mapbox-secret-token",
        keywords: &["sk.eyj1ijoi"],
        case_keywords: Some(&["sk.eyJ1Ijoi"]),
        regex: r#"\b(sk\.eyJ1Ijoi[A-Za-z0-9_\-]{40,300}\.[A-Za-z0-9_\-]{20,30})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 350,
        ..P
    },
    // gl:new-relic-insert-key
    BuiltinRule {
        id: "new-relic-insert-key",
        keywords: &["nrii-"],
        case_keywords: Some(&["NRII-"]),
        regex: r#"\b(NRII-[A-Za-z0-9\-]{32})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 120,
        ..P
    },
    // gl:yandex-api-key (prefix alone: distinctive)
    BuiltinRule {
        id: "yandex-api-key",
        keywords: &["aqvn"],
        case_keywords: Some(&["AQVN"]),
        regex: r#"\b(AQVN[A-Za-z0-9_\-]{35,38})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 120,
        ..P
    },
    // gl:plaid-api-token (sandbox tokens are not reported)
    BuiltinRule {
        id: "plaid-access-token",
        keywords: &["access-dev", "access-prod"],
        regex: r#"\b(access-(?:development|production)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b"#,
        after: 120,
        ..P
    },
    // np.google.7 (noseyparker Google OAuth access token); Google OAuth 2.0 docs
    BuiltinRule {
        id: "google-oauth-access-token",
        keywords: &["ya29."],
        regex: r#"\b(ya29\.[A-Za-z0-9_\-]{30,2048})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 2400,
        ..P
    },
    // np.google.6 (noseyparker Google OAuth refresh token)
    BuiltinRule {
        id: "google-oauth-refresh-token",
        keywords: &["1//0"],
        regex: r#"(?:^|[^A-Za-z0-9_/])(1//0[A-Za-z0-9_\-]{40,300})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 320,
        ..P
    },
    // trufflehog braintreepayments; noseyparker np.braintree.1 (sandbox tokens are not reported)
    BuiltinRule {
        id: "braintree-access-token",
        keywords: &["$production"],
        word_start: false,
        before: 16,
        regex: r#"(access_token\$production\$[a-z0-9]{16}\$[a-f0-9]{32})\b"#,
        after: 120,
        ..P
    },
    // np.salesforce.1 (noseyparker Salesforce access token)
    BuiltinRule {
        id: "salesforce-access-token",
        keywords: &["00d"],
        case_keywords: Some(&["00D"]),
        regex: r#"\b(00D[A-Za-z0-9]{12,15}![A-Za-z0-9._]{80,200})"#,
        before: 4,
        after: 240,
        ..P
    },
    // trufflehog posthog (phx_ personal keys; phc_ project keys are public)
    BuiltinRule {
        id: "posthog-personal-api-key",
        keywords: &["phx_"],
        regex: r#"\b(phx_[A-Za-z0-9]{43})\b"#,
        after: 120,
        ..P
    },
    // trufflehog pinecone; Pinecone API key docs
    BuiltinRule {
        id: "pinecone-api-key",
        keywords: &["pcsk_"],
        regex: r#"\b(pcsk_[A-Za-z0-9]{5,6}_[A-Za-z0-9]{60,70})\b"#,
        after: 120,
        ..P
    },
    // trufflehog openrouter
    BuiltinRule {
        id: "openrouter-api-key",
        keywords: &["sk-or-v1-"],
        regex: r#"\b(sk-or-v1-[a-f0-9]{64})\b"#,
        after: 120,
        ..P
    },
    // trufflehog langsmith
    BuiltinRule {
        id: "langsmith-api-key",
        keywords: &["lsv2_pt_", "lsv2_sk_"],
        regex: r#"\b(lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10})\b"#,
        after: 120,
        ..P
    },
    // np.nuget.1 (noseyparker NuGet API key)
    BuiltinRule {
        id: "nuget-api-key",
        keywords: &["oy2"],
        regex: r#"\b(oy2[a-z0-9]{43})\b"#,
        after: 120,
        ..P
    },
    // noseyparker np.cratesio.1; crates.io API token format (`cio` + 32 alphanumerics)
    BuiltinRule {
        id: "cratesio-token",
        keywords: &["cio"],
        case_keywords: Some(&["cio"]),
        regex: r#"\b(cio[A-Za-z0-9]{32})\b"#,
        after: 120,
        ..P
    },
    // gl:sonar-api-token (prefixed SonarQube 9.5+ tokens, found without the keyword)
    BuiltinRule {
        id: "sonarqube-token",
        keywords: &["squ_", "sqp_", "sqa_"],
        regex: r#"\b(sq[upa]_[a-f0-9]{40})\b"#,
        after: 120,
        ..P
    },
    // noseyparker np.tencent.1 (Tencent Cloud SecretId)
    BuiltinRule {
        id: "tencent-secret-id",
        keywords: &["akid"],
        case_keywords: Some(&["AKID"]),
        regex: r#"\b(AKID[A-Za-z0-9]{32})\b"#,
        after: 120,
        ..P
    },
    // trufflehog supabasetoken; Supabase API keys docs (sb_secret_)
    BuiltinRule {
        id: "supabase-token",
        keywords: &["sbp_", "sb_secret_"],
        regex: r#"\b(sbp_[a-f0-9]{40}|sb_secret_[A-Za-z0-9_\-]{31,40})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 120,
        ..P
    },
    // trufflehog figmapersonalaccesstoken
    BuiltinRule {
        id: "figma-token",
        keywords: &["figd_"],
        regex: r#"\b(figd_[A-Za-z0-9_\-]{40})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 120,
        ..P
    },
    // trufflehog buildkitev2
    BuiltinRule {
        id: "buildkite-token",
        keywords: &["bkua_"],
        regex: r#"\b(bkua_[a-z0-9]{40})\b"#,
        after: 120,
        ..P
    },
    // trufflehog circleci (personal API tokens)
    BuiltinRule {
        id: "circleci-token",
        keywords: &["ccipat_"],
        case_keywords: Some(&["CCIPAT_"]),
        regex: r#"\b(CCIPAT_[A-Za-z0-9]{22}_[a-f0-9]{40})\b"#,
        after: 120,
        ..P
    },
    // trufflehog contentfulpersonalaccesstoken
    BuiltinRule {
        id: "contentful-token",
        keywords: &["cfpat-"],
        case_keywords: Some(&["CFPAT-"]),
        regex: r#"\b(CFPAT-[A-Za-z0-9_\-]{43})(?:[^A-Za-z0-9_\-]|$)"#,
        after: 120,
        ..P
    },
    // noseyparker np.scaleway.1; Scaleway IAM API keys docs
    BuiltinRule {
        id: "scaleway-access-key",
        keywords: &["scw"],
        case_keywords: Some(&["SCW"]),
        regex: r#"\b(SCW[A-Z0-9]{17})\b"#,
        after: 120,
        ..P
    },
    // ==== issue 16: vendor formats that need the vendor's name nearby ================
    // gl:datadog-access-token
    BuiltinRule {
        id: "datadog-api-key",
        keywords: &["datadog", "dd_api_key", "dd_app_key"],
        regex: r#"(?i)(?:datadog|dd_api|dd_app)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([a-f0-9]{32}|[a-f0-9]{40})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:cisco-meraki-api-key
    BuiltinRule {
        id: "cisco-meraki-api-key",
        keywords: &["meraki"],
        regex: r#"(?i)(?:meraki)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([0-9a-f]{40})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:cohere-api-token
    BuiltinRule {
        id: "cohere-api-key",
        keywords: &["cohere", "co_api_key"],
        regex: r#"(?i)(?:cohere|co_api_key)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([A-Za-z0-9]{40})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:twitter-bearer-token
    BuiltinRule {
        id: "twitter-bearer-token",
        keywords: &["twitter"],
        regex: r#"(?i)(?:twitter)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?((?-i:A{22})[A-Za-z0-9%]{80,100})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:twitter-access-token
    BuiltinRule {
        id: "twitter-access-token",
        keywords: &["twitter"],
        regex: r#"(?i)(?:twitter)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([0-9]{15,25}-[A-Za-z0-9]{20,40})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:twitter-api-secret, gl:twitter-access-secret
    BuiltinRule {
        id: "twitter-api-secret",
        keywords: &["twitter"],
        regex: r#"(?i)(?:twitter)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([A-Za-z0-9]{50})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:hubspot-api-key
    BuiltinRule {
        id: "hubspot-api-key",
        keywords: &["hubspot"],
        regex: r#"(?i)(?:hubspot)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:snyk-api-token
    BuiltinRule {
        id: "snyk-token",
        keywords: &["snyk"],
        regex: r#"(?i)(?:snyk)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:cloudflare-api-key, gl:cloudflare-global-api-key
    BuiltinRule {
        id: "cloudflare-api-key",
        keywords: &["cloudflare", "cf_api"],
        regex: r#"(?i)(?:cloudflare|cf_api)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([A-Za-z0-9_\-]{40}|[a-f0-9]{37})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:sumologic-access-token
    BuiltinRule {
        id: "sumologic-access-token",
        keywords: &["sumo"],
        regex: r#"(?i)(?:sumo)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([A-Za-z0-9]{64})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:zendesk-secret-key
    BuiltinRule {
        id: "zendesk-secret-key",
        keywords: &["zendesk"],
        regex: r#"(?i)(?:zendesk)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([A-Za-z0-9]{40})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:mailgun-signing-key
    BuiltinRule {
        id: "mailgun-signing-key",
        keywords: &["mailgun"],
        regex: r#"(?i)(?:mailgun)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([a-h0-9]{32}-[a-h0-9]{8}-[a-h0-9]{8})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:lob-api-key (live keys only)
    BuiltinRule {
        id: "lob-api-key",
        keywords: &["lob_"],
        regex: r#"(?i)(?:lob_)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?(live_[a-f0-9]{35})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:gocardless-api-token
    BuiltinRule {
        id: "gocardless-token",
        keywords: &["gocardless"],
        regex: r#"(?i)(?:gocardless)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?(live_[A-Za-z0-9_=\-]{40})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:dropbox-short-lived-api-token, gl:dropbox-long-lived-api-token
    BuiltinRule {
        id: "dropbox-token",
        keywords: &["dropbox"],
        regex: r#"(?i)(?:dropbox)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?(sl\.[A-Za-z0-9_=\-]{135,1400}|[A-Za-z0-9]{11}AAAAAAAAAA[A-Za-z0-9_=\-]{43})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:netlify-access-token
    BuiltinRule {
        id: "netlify-token",
        keywords: &["netlify"],
        regex: r#"(?i)(?:netlify)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([A-Za-z0-9_=\-]{40,46})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:travisci-access-token
    BuiltinRule {
        id: "travisci-token",
        keywords: &["travis"],
        regex: r#"(?i)(?:travis)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([A-Za-z0-9]{22})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:algolia-api-key
    BuiltinRule {
        id: "algolia-api-key",
        keywords: &["algolia"],
        regex: r#"(?i)(?:algolia)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([a-f0-9]{32})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:asana-client-secret
    BuiltinRule {
        id: "asana-client-secret",
        keywords: &["asana"],
        regex: r#"(?i)(?:asana)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([A-Za-z0-9]{32})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:alibaba-secret-key
    BuiltinRule {
        id: "alibaba-secret-key",
        keywords: &["alibaba", "aliyun"],
        regex: r#"(?i)(?:alibaba|aliyun)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([A-Za-z0-9]{30})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:linear-client-secret
    BuiltinRule {
        id: "linear-client-secret",
        keywords: &["linear"],
        regex: r#"(?i)(?:linear)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([a-f0-9]{32})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:okta-access-token
    BuiltinRule {
        id: "okta-token",
        keywords: &["okta"],
        regex: r#"(?i)(?:okta)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?(00[A-Za-z0-9_=\-]{40})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:yandex-access-token, gl:yandex-aws-access-token
    BuiltinRule {
        id: "yandex-access-token",
        keywords: &["yandex"],
        regex: r#"(?i)(?:yandex)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?(t1\.[A-Za-z0-9_\-]+={0,2}\.[A-Za-z0-9_\-]{86}={0,2}|YC[A-Za-z0-9_\-]{38})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:launchdarkly-access-token
    BuiltinRule {
        id: "launchdarkly-token",
        keywords: &["launchdarkly"],
        regex: r#"(?i)(?:launchdarkly)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?((?:api|sdk)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:intercom-api-key
    BuiltinRule {
        id: "intercom-token",
        keywords: &["intercom"],
        regex: r#"(?i)(?:intercom)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([A-Za-z0-9_=\-]{60})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:twitch-api-token
    BuiltinRule {
        id: "twitch-token",
        keywords: &["twitch"],
        regex: r#"(?i)(?:twitch)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([a-z0-9]{30})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:sendbird-access-token
    BuiltinRule {
        id: "sendbird-token",
        keywords: &["sendbird"],
        regex: r#"(?i)(?:sendbird)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([a-f0-9]{40})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:freshbooks-access-token
    BuiltinRule {
        id: "freshbooks-token",
        keywords: &["freshbooks"],
        regex: r#"(?i)(?:freshbooks)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([a-z0-9]{64})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:rapidapi-access-token
    BuiltinRule {
        id: "rapidapi-key",
        keywords: &["rapidapi"],
        regex: r#"(?i)(?:rapidapi)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([A-Za-z0-9_\-]{50})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:codecov-access-token
    BuiltinRule {
        id: "codecov-token",
        keywords: &["codecov"],
        regex: r#"(?i)(?:codecov)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([a-z0-9]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:confluent-secret-key
    BuiltinRule {
        id: "confluent-secret-key",
        keywords: &["confluent"],
        regex: r#"(?i)(?:confluent)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([A-Za-z0-9+/]{64})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:coinbase-access-token
    BuiltinRule {
        id: "coinbase-token",
        keywords: &["coinbase"],
        regex: r#"(?i)(?:coinbase)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([A-Za-z0-9_\-]{64})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:mattermost-access-token
    BuiltinRule {
        id: "mattermost-token",
        keywords: &["mattermost"],
        regex: r#"(?i)(?:mattermost)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([a-z0-9]{26})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
    // gl:fastly-api-token
    BuiltinRule {
        id: "fastly-api-token",
        keywords: &["fastly"],
        regex: r#"(?i)(?:fastly)[a-z0-9_.\-]{0,30}['"]?\s{0,5}(?:=|:|=>|:=|,)\s{0,5}['"\x60]?([A-Za-z0-9_=\-]{32})(?:[^A-Za-z0-9_\-]|$)"#,
        vendor: true,
        ..C
    },
];
