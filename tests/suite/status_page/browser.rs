//! Headless Chromium for the status page test: Debian's `/usr/bin/chromium` (or
//! `STAGEGATE_CHROMIUM`) with exactly the flags the project allows, a fresh profile, and a
//! page that records every request it makes and every console error or exception.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chromiumoxide::Page as CdpPage;
use chromiumoxide::browser::{Browser as Cdp, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::log::{self, EventEntryAdded, LogEntryLevel};
use chromiumoxide::cdp::browser_protocol::network::{self, EventRequestWillBeSent};
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown,
};
use chromiumoxide::page::ScreenshotParams;
use futures::StreamExt;
use serde_json::Value;

/// How long a page may take to reach a state (not a timing assertion: a bound on waiting).
const PATIENCE: Duration = Duration::from_secs(90);

pub struct Browser {
    cdp: Cdp,
    handler: tokio::task::JoinHandle<()>,
    _profile: tempfile::TempDir,
}

fn chromium() -> PathBuf {
    let path = PathBuf::from(
        std::env::var("STAGEGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    assert!(
        path.exists(),
        "{} is missing: scripts/test.sh installs Debian's chromium (STAGEGATE_APT_PACKAGES)",
        path.display()
    );
    path
}

impl Browser {
    pub async fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let config = BrowserConfig::builder()
            .chrome_executable(chromium())
            // Only these flags (chromiumoxide's defaults are dropped), plus the debugging
            // port and profile it needs; `headless` and `no-sandbox` come from the builder.
            .disable_default_args()
            .no_sandbox()
            .args([
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
                "--disable-quic",
            ])
            .user_data_dir(profile.path())
            .viewport(None)
            .window_size(1280, 900)
            .launch_timeout(Duration::from_secs(60))
            .build()
            .expect("browser config");
        let (cdp, mut events) = Cdp::launch(config).await.expect("launch chromium");
        let handler = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if event.is_err() {
                    break;
                }
            }
        });
        Browser {
            cdp,
            handler,
            _profile: profile,
        }
    }

    /// A new tab watching its requests and errors, opened at `url`.
    pub async fn open(&self, url: &str) -> Page {
        let page = self.cdp.new_page("about:blank").await.expect("new tab");
        page.execute(network::EnableParams::default())
            .await
            .unwrap();
        page.execute(log::EnableParams::default()).await.unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut sent = page
            .event_listener::<EventRequestWillBeSent>()
            .await
            .unwrap();
        let r = requests.clone();
        tokio::spawn(async move {
            while let Some(e) = sent.next().await {
                r.lock().unwrap().push(e.request.url.clone());
            }
        });
        let mut thrown = page.event_listener::<EventExceptionThrown>().await.unwrap();
        let e1 = errors.clone();
        tokio::spawn(async move {
            while let Some(e) = thrown.next().await {
                e1.lock()
                    .unwrap()
                    .push(format!("exception: {:?}", e.exception_details));
            }
        });
        let mut console = page
            .event_listener::<EventConsoleApiCalled>()
            .await
            .unwrap();
        let e2 = errors.clone();
        tokio::spawn(async move {
            while let Some(e) = console.next().await {
                if e.r#type == ConsoleApiCalledType::Error {
                    e2.lock()
                        .unwrap()
                        .push(format!("console.error: {:?}", e.args));
                }
            }
        });
        // Blocked loads (CSP), failed fetches and the like are logged here, not thrown.
        let mut logged = page.event_listener::<EventEntryAdded>().await.unwrap();
        let e3 = errors.clone();
        tokio::spawn(async move {
            while let Some(e) = logged.next().await {
                if e.entry.level == LogEntryLevel::Error {
                    e3.lock().unwrap().push(format!("log: {}", e.entry.text));
                }
            }
        });
        let p = Page {
            page,
            requests,
            errors,
        };
        p.goto(url).await;
        p
    }

    /// Save `name` at desktop and phone widths under the test's scratch directory; with
    /// `STAGEGATE_SCREENSHOTS=docs` the desktop one also becomes `docs/<docs_name>`.
    pub async fn screenshots(&self, page: &Page, name: &str, docs_name: &str) {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page");
        std::fs::create_dir_all(&dir).unwrap();
        for (label, w, h, mobile) in [("desktop", 1280, 900, false), ("phone", 390, 844, true)] {
            page.page
                .execute(SetDeviceMetricsOverrideParams::new(w, h, 1.0, mobile))
                .await
                .unwrap();
            let path = dir.join(format!("{name}-{label}.png"));
            let png = page
                .page
                .save_screenshot(ScreenshotParams::builder().full_page(true).build(), &path)
                .await
                .expect("screenshot");
            assert!(png.len() > 1000, "{} is a real image", path.display());
            eprintln!("screenshot: {}", path.display());
            if label == "desktop" && std::env::var("STAGEGATE_SCREENSHOTS").as_deref() == Ok("docs")
            {
                let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("docs")
                    .join(docs_name);
                std::fs::write(&docs, &png).unwrap();
            }
        }
        page.page
            .execute(SetDeviceMetricsOverrideParams::new(1280, 900, 1.0, false))
            .await
            .unwrap();
    }

    pub async fn close(mut self) {
        let _ = self.cdp.close().await;
        let _ = self.cdp.wait().await;
        self.handler.abort();
    }
}

pub struct Page {
    page: CdpPage,
    requests: Arc<Mutex<Vec<String>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Page {
    pub async fn goto(&self, url: &str) {
        self.page.goto(url).await.expect("navigate");
        self.page.wait_for_navigation().await.expect("page loaded");
    }

    /// The value of a JavaScript expression.
    pub async fn eval(&self, js: &str) -> Value {
        self.page
            .evaluate(js)
            .await
            .unwrap_or_else(|e| panic!("evaluating {js}: {e}"))
            .into_value()
            .unwrap_or(Value::Null)
    }

    /// Wait until `js` is true (the page changes by itself: no reload is made here).
    pub async fn until(&self, what: &str, js: &str) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.eval(js).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// Every URL requested so far, and every error seen.
    pub fn observed(&self) -> (Vec<String>, Vec<String>) {
        (
            self.requests.lock().unwrap().clone(),
            self.errors.lock().unwrap().clone(),
        )
    }
}
