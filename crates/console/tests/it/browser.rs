//! Driving Debian's `chromium` (scripts/setup-debian.sh installs it) over the DevTools
//! protocol with `headless_chrome`, which launches the system browser and downloads
//! nothing. Shared by the console's own browser test and the `conductor` binary's
//! (crates/cli/tests/it/console.rs includes this file by path).

use std::path::PathBuf;
use std::time::Duration;

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};

/// The system browser, or `None` (outside CI: the caller skips; in CI: a failure).
pub fn chromium() -> Option<PathBuf> {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "chromium is missing: scripts/setup-debian.sh installs it"
    );
    eprintln!("SKIPPED: chromium is not installed (scripts/setup-debian.sh installs it)");
    None
}

/// `target/test-artifacts/console/` of the workspace: where screenshots go.
pub fn artifacts() -> PathBuf {
    // Both including crates sit two levels below the workspace root.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A headless browser with a throw-away profile that reaches 127.0.0.1 only.
pub fn launch(path: PathBuf, profile: &std::path::Path) -> Browser {
    Browser::new(
        LaunchOptions::default_builder()
            .path(Some(path))
            .headless(true)
            .sandbox(false)
            .window_size(Some((1280, 1000)))
            .user_data_dir(Some(profile.to_path_buf()))
            .idle_browser_timeout(Duration::from_secs(90))
            .args(vec![
                // Nothing leaves this machine: every name but the console's fails.
                std::ffi::OsStr::new("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
                std::ffi::OsStr::new("--no-proxy-server"),
                std::ffi::OsStr::new("--disable-background-networking"),
                std::ffi::OsStr::new("--disable-component-update"),
                std::ffi::OsStr::new("--disable-dev-shm-usage"),
            ])
            .build()
            .unwrap(),
    )
    .unwrap()
}

/// A full-page PNG of `tab` as `name` in [`artifacts`].
pub fn shot(tab: &Tab, name: &str) {
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    std::fs::write(artifacts().join(name), png).unwrap();
}

/// Fill the login form (`#name`, `#key`) and submit it.
pub fn log_in(tab: &Tab, name: &str, key: &str) {
    tab.wait_for_element("#name").unwrap().click().unwrap();
    tab.type_str(name).unwrap();
    tab.wait_for_element("#key").unwrap().click().unwrap();
    tab.type_str(key).unwrap();
    tab.wait_for_element("#login").unwrap().click().unwrap();
}

/// Go to `url` and wait for the page.
pub fn go(tab: &Tab, url: &str) {
    tab.navigate_to(url)
        .unwrap()
        .wait_until_navigated()
        .unwrap();
}

/// The inner text of the first element matching `sel` (waiting for it).
pub fn text(tab: &Tab, sel: &str) -> String {
    tab.wait_for_element(sel).unwrap().get_inner_text().unwrap()
}

/// Click the first element matching `sel` (waiting for it).
pub fn click(tab: &Tab, sel: &str) {
    tab.wait_for_element(sel).unwrap().click().unwrap();
}

/// On the approvals page: approve held call `id` (with `scope`, else the form's
/// default, this call); the flash message that follows.
pub fn approve(tab: &Tab, id: &str, scope: Option<&str>) -> String {
    let card = format!("article.pending[data-id=\"{id}\"]");
    if let Some(scope) = scope {
        tab.wait_for_element(&format!("{card} select[name=scope]"))
            .unwrap()
            .call_js_fn(
                "function(v) { this.value = v; }",
                vec![serde_json::json!(scope)],
                false,
            )
            .unwrap();
    }
    click(tab, &format!("{card} button.approve"));
    text(tab, "#flash")
}

/// On the approvals page: deny held call `id` with `reason` (a screenshot `shot_name`
/// of the filled form first, if given); the flash message that follows.
pub fn deny(tab: &Tab, id: &str, reason: &str, shot_name: Option<&str>) -> String {
    let card = format!("article.pending[data-id=\"{id}\"]");
    click(tab, &format!("{card} input[name=reason]"));
    tab.type_str(reason).unwrap();
    if let Some(name) = shot_name {
        shot(tab, name);
    }
    click(tab, &format!("{card} button.deny"));
    text(tab, "#flash")
}
