//! A real headless Chromium (Debian's `chromium`, driven through Debian's `chromedriver` with
//! WebDriver via `fantoccini`), with the accessibility check (npm `axe-core`, injected into
//! the page) and screenshots written to `test-artifacts/<suite>/` at the workspace root.
//!
//! Chromium runs with `--headless --no-sandbox --disable-gpu --disable-background-networking
//! --disable-component-update --disable-sync --no-first-run` and a fresh `--user-data-dir`,
//! so it reaches nothing but the pages the test opens.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::eventually::{eventually, eventually_ok};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The workspace root.
fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// A browser session, with chromedriver stopped when dropped.
#[derive(Debug)]
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
    _profile: TempDir,
    artifacts: PathBuf,
    axe: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium `width` by `height` pixels; screenshots
    /// go to `test-artifacts/<suite>/`. Panics with the setup command when a piece is missing.
    pub async fn start(suite: &str, width: u32, height: u32) -> Browser {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(binary).is_file(),
                "{binary} is missing: run scripts/setup.sh (Debian packages chromium and chromium-driver)"
            );
        }
        let axe_path = workspace().join("tests/browser/node_modules/axe-core/axe.min.js");
        let axe = std::fs::read_to_string(&axe_path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run scripts/setup.sh (npm ci in tests/browser)",
                axe_path.display()
            )
        });
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        eventually_ok(
            "chromedriver to be ready",
            &format!("{url}/status"),
            Duration::from_secs(20),
        )
        .await;
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&url)
            .await
            .expect("a WebDriver session with Chromium");
        client
            .set_window_size(width, height)
            .await
            .expect("the window size");
        let artifacts = workspace().join("test-artifacts").join(suite);
        std::fs::create_dir_all(&artifacts).expect("the artifacts directory");
        Browser {
            client,
            driver,
            _profile: profile,
            artifacts,
            axe,
        }
    }

    /// Opens a URL.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("the page to open");
    }

    /// The current path.
    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("the current URL")
            .path()
            .to_owned()
    }

    /// Types into the field matching `css` (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("field {css}: {error}"));
        field.clear().await.expect("clear the field");
        field.send_keys(text).await.expect("type");
    }

    /// Clicks the element matching `css`, a link or a submit button, and waits (bounded) for
    /// the next page: the old document gone, the new one loaded.
    pub async fn click(&self, css: &str) {
        let old = self
            .client
            .find(Locator::Css("html"))
            .await
            .expect("the current document");
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("element {css}: {error}"))
            .click()
            .await
            .unwrap_or_else(|error| panic!("click {css}: {error}"));
        eventually(
            &format!("the page after clicking {css}"),
            Duration::from_secs(20),
            || {
                let old = old.clone();
                let client = self.client.clone();
                async move {
                    if old.tag_name().await.is_ok() {
                        return None;
                    }
                    let state = client
                        .execute("return document.readyState;", vec![])
                        .await
                        .ok()?;
                    (state == "complete").then_some(())
                }
            },
        )
        .await;
    }

    /// The text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("element {css}: {error}"))
            .text()
            .await
            .expect("its text")
    }

    /// The whole page's visible text.
    pub async fn page_text(&self) -> String {
        self.text("body").await
    }

    /// Scrolls the element matching `css` to the top of the window (a screenshot shows the
    /// window only).
    pub async fn scroll_to(&self, css: &str) {
        self.client
            .execute(
                "document.querySelector(arguments[0]).scrollIntoView();",
                vec![serde_json::Value::String(css.to_owned())],
            )
            .await
            .unwrap_or_else(|error| panic!("scroll to {css}: {error}"));
    }

    /// Writes a screenshot of the page to `test-artifacts/<suite>/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(self.artifacts.join(format!("{name}.png")), png).expect("write it");
    }

    /// The page's axe-core violations of impact "serious" or "critical", as `id: help` lines.
    pub async fn serious_accessibility_violations(&self) -> Vec<String> {
        self.client
            .execute(&self.axe, vec![])
            .await
            .expect("inject axe-core");
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']}).then(result => done(
                   result.violations
                     .filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => v.id + ': ' + v.help + ' at ' +
                          v.nodes.map(n => n.target.join(' ')).join(', '))));",
                vec![],
            )
            .await
            .expect("run axe-core");
        match found {
            Value::Array(items) => items
                .into_iter()
                .map(|item| item.as_str().unwrap_or_default().to_owned())
                .collect(),
            other => panic!("axe-core answered {other}"),
        }
    }

    /// Whether the page is wider than the window (sideways scrolling).
    pub async fn overflows_sideways(&self) -> bool {
        self.client
            .execute(
                "return document.documentElement.scrollWidth > window.innerWidth;",
                vec![],
            )
            .await
            .expect("measure the page")
            .as_bool()
            .unwrap_or(true)
    }

    /// Checks a page the way every page is checked: a screenshot, no serious or critical
    /// accessibility violation, no sideways scrolling.
    pub async fn check_page(&self, name: &str) {
        self.screenshot(name).await;
        let violations = self.serious_accessibility_violations().await;
        assert!(
            violations.is_empty(),
            "{name} ({}): {violations:#?}",
            self.path().await
        );
        assert!(!self.overflows_sideways().await, "{name} scrolls sideways");
    }

    /// Ends the browser session (Chromium exits), then chromedriver.
    pub async fn close(self) {
        self.client.clone().close().await.expect("end the session");
    }

    /// Resizes the window.
    pub async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("resize");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
