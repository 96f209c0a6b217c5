//! The browser harness: a headless Chromium driven through Debian's
//! ChromeDriver with fantoccini, and the `ui` subcommand of a client binary
//! run as a child process.
//!
//! Chromium and ChromeDriver come from the distribution (`.ci/run`
//! installs `chromium` and `chromium-driver`). Without them the browser
//! tests fail when `CI=true` and skip loudly elsewhere.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::common::{free_port, User};

/// Where the page screenshots go (shown in the README).
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("docs").join("screenshots")
}

fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Chromium and ChromeDriver, if installed.
pub fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let chrome = std::env::var_os("MEDRELAY_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| find(&["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]))?;
    let driver = std::env::var_os("MEDRELAY_CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]))?;
    Some((chrome, driver))
}

/// Whether the browser tests can run here; panics in CI when they cannot.
pub fn browser_or_skip(test: &str) -> Option<(PathBuf, PathBuf)> {
    match browser_binaries() {
        Some(b) => Some(b),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: Chromium/ChromeDriver are not installed, and CI=true requires the browser tests")
        }
        None => {
            eprintln!(
                "\n*** SKIPPED {test}: Chromium and ChromeDriver are not installed \
                 (apt-get install chromium chromium-driver; .ci/run does it) ***\n"
            );
            None
        }
    }
}

/// A running ChromeDriver.
pub struct Driver {
    child: Child,
    pub port: u16,
    profile: tempfile::TempDir,
    chrome: PathBuf,
}

impl Driver {
    pub fn start(chrome: &Path, driver: &Path) -> Self {
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, profile: tempfile::tempdir().unwrap(), chrome: chrome.to_owned() }
    }

    /// A new headless browser session.
    pub async fn session(&self) -> Client {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1280,900",
            "--force-device-scale-factor=1",
            "--lang=en-US",
        ];
        let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        all.push(format!("--user-data-dir={}", self.profile.path().display()));
        let caps = serde_json::json!({
            "goog:chromeOptions": { "binary": self.chrome, "args": all },
            "pageLoadStrategy": "normal",
        });
        let serde_json::Value::Object(caps) = caps else { unreachable!() };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session (is chromium installed and runnable headless?)")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client's web app (`medrelay-<role> ui --no-open`) as a child process.
pub struct App {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>/`.
    pub base: String,
    /// The one-time sign-in link.
    pub launch: String,
    pub port: u16,
}

impl App {
    /// Starts `user`'s app and reads the sign-in link it prints.
    pub fn start(user: &User) -> Self {
        let mut child = Command::new(&user.bin)
            .args(["ui", "--no-open", "--profile"])
            .arg(&user.profile)
            .env("MEDRELAY_PASSPHRASE", &user.pass)
            .env("HOME", &user.home)
            .env_remove("MEDRELAY_SERVER")
            .env_remove("MEDRELAY_PROFILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the ui");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        let launch = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(i) = line.find("http://127.0.0.1:") {
                        if line[i..].contains("/launch?token=") {
                            break line[i..].trim().to_owned();
                        }
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = child.kill();
                        let _ = e.read_to_string(&mut err);
                    }
                    panic!("the ui printed no sign-in link: {seen:?} {err}");
                }
            }
        };
        let port: u16 = launch["http://127.0.0.1:".len()..].split('/').next().unwrap().parse().unwrap();
        Self { child: Some(child), base: format!("http://127.0.0.1:{port}/"), launch, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path.trim_start_matches('/'))
    }

    /// Waits for the process to exit by itself (after "Lock and quit").
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the ui did not exit after quitting");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A raw HTTP/1.1 exchange (for the security tests: any Host, any header).
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends one request to `127.0.0.1:port` and reads the whole answer.
pub fn raw(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Raw {
    raw_bytes(port, method, path, headers, body.as_bytes())
}

/// [`raw`] with a binary body.
pub fn raw_bytes(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Raw {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Raw { status, headers, body: body.to_owned() }
}

/// Waits until an element matching `css` is on the page.
pub async fn wait_for(c: &Client, css: &str, within: Duration) -> fantoccini::elements::Element {
    match c.wait().at_most(within).for_element(Locator::Css(css)).await {
        Ok(e) => e,
        Err(e) => {
            let url = c.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            let page = match c.find(Locator::Css("body")).await {
                Ok(b) => b.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            panic!("no {css} within {within:?} ({e}); the browser is at {url}, showing:\n{page}")
        }
    }
}

/// The text of the first element matching `css`.
pub async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}")).text().await.unwrap()
}

/// Clicks the first element matching `css`.
pub async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}")).click().await.unwrap();
}

/// Saves a screenshot of the whole page as `docs/screenshots/<name>.png`.
pub async fn screenshot(c: &Client, name: &str) {
    let number = |v: serde_json::Value| v.as_u64().unwrap_or(0);
    let script = "window.scrollTo(0, 0); \
                  return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight);";
    let height = number(c.execute(script, vec![]).await.unwrap()).clamp(600, 4000);
    // The window's own frame, if any, on top of the page's height.
    let frame = number(c.execute("return window.outerHeight - window.innerHeight;", vec![]).await.unwrap());
    c.set_window_size(1280, (height + frame) as u32).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let png = c.screenshot().await.unwrap();
    c.set_window_size(1280, 900).await.unwrap();
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// A signed-in session driven over raw HTTP (no browser): the launch
/// token redeemed, the cookie and the page's CSRF token kept.
pub struct Session {
    pub port: u16,
    pub host: String,
    pub cookie: String,
    pub csrf: String,
}

impl Session {
    /// Signs in to `app` with its launch link.
    pub fn sign_in(app: &App) -> Self {
        let host = format!("127.0.0.1:{}", app.port);
        let path = &app.launch[app.launch.find("/launch").unwrap()..];
        let r = raw(app.port, "GET", path, &[("Host", &host)], "");
        assert_eq!(r.status, 200, "{}", r.body);
        let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
        let page = raw(app.port, "GET", "/", &[("Host", &host), ("Cookie", &cookie)], "");
        let at = page.body.find("csrf=").expect("a form with the CSRF token") + 5;
        let csrf = page.body[at..at + 64].to_owned();
        Self { port: app.port, host, cookie, csrf }
    }

    pub fn get(&self, path: &str) -> Raw {
        raw(self.port, "GET", path, &[("Host", &self.host), ("Cookie", &self.cookie)], "")
    }

    /// A form POST from the page's own origin, with the CSRF token.
    pub fn post(&self, path: &str, form: &str) -> Raw {
        let sep = if path.contains('?') { '&' } else { '?' };
        let origin = format!("http://{}", self.host);
        raw(
            self.port,
            "POST",
            &format!("{path}{sep}csrf={}", self.csrf),
            &[
                ("Host", &self.host),
                ("Cookie", &self.cookie),
                ("Origin", &origin),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            form,
        )
    }

    /// Follows a job page until it redirects; returns where to.
    pub fn finish_job(&self, job: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.get(job);
            match r.status {
                303 => return r.header("location").unwrap().to_owned(),
                200 if !r.body.contains("It stopped") => {}
                _ => panic!("job {job} failed: {} {}", r.status, r.body),
            }
            assert!(Instant::now() < deadline, "job {job} did not finish");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A `multipart/form-data` body: (field, file name if a file, content).
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "medrelay-test-boundary-7d3f";
    let mut body = Vec::new();
    for (name, file, content) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl Session {
    /// A multipart POST from the page's own origin, with the CSRF token.
    pub fn post_multipart(&self, path: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Raw {
        let (content_type, body) = multipart(parts);
        let origin = format!("http://{}", self.host);
        raw_bytes(
            self.port,
            "POST",
            &format!("{path}?csrf={}", self.csrf),
            &[
                ("Host", &self.host),
                ("Cookie", &self.cookie),
                ("Origin", &origin),
                ("Content-Type", &content_type),
            ],
            &body,
        )
    }
}
