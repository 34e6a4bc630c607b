//! A fault-injecting HTTP/1.1 proxy in front of the real MLflow server. It forwards every
//! request unchanged, except those matched by a rule, which get a 5xx, a stall, a dropped
//! connection, or a hook run just before forwarding (to change the registry at an exact moment).
//! It never stands in for MLflow: the answers come from the real server.
//!
//! A hook runs on the proxy's runtime, where a failed assert would only end the connection's
//! task and leave the test waiting for a race that never happened. So a hook's panic is
//! caught and recorded, the request is dropped, and the test fails with the hook's own
//! message: at once in any [`super::eventually`] wait of the thread that started the proxy,
//! else when the proxy is dropped.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub type Hook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

#[derive(Clone)]
pub enum Fault {
    /// Answer with this status and an MLflow-style error body.
    Status(u16),
    /// Hold the request this long, then close without answering.
    Stall(Duration),
    /// Close the connection without answering.
    Drop,
    /// Run the hook, then forward as usual.
    Before(Hook),
}

#[derive(Clone)]
pub struct Rule {
    pub method: Option<&'static str>,
    /// Substring of the request path (with query).
    pub path: &'static str,
    /// Substring of the body, if any.
    pub body: Option<String>,
    pub fault: Fault,
    /// How many matching requests to fault; then the rule retires. 0 = forever.
    pub times: usize,
}

impl Rule {
    pub fn new(
        method: Option<&'static str>,
        path: &'static str,
        fault: Fault,
        times: usize,
    ) -> Rule {
        Rule {
            method,
            path,
            body: None,
            fault,
            times,
        }
    }
}

struct State {
    upstream: String,
    http: reqwest::Client,
    rules: Mutex<Vec<(Rule, usize)>>,
    log: Mutex<Vec<String>>,
    /// The `Authorization` header of each request, in order.
    auth: Mutex<Vec<Option<String>>>,
    /// The panic message of each hook that failed.
    failures: super::Failures,
}

pub struct FaultProxy {
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        let failures = self.state.failures.lock().clone();
        if failures.is_empty() {
            return;
        }
        let text = format!("a fault proxy hook failed: {}", failures.join("; "));
        if std::thread::panicking() {
            eprintln!("{text}");
        } else {
            panic!("{text}");
        }
    }
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            auth: Mutex::new(Vec::new()),
            failures: super::Failures::default(),
        });
        super::watch(&state.failures);
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, s.clone()));
            }
        });
        FaultProxy { url, state, task }
    }

    pub fn add(&self, rule: Rule) {
        self.state.rules.lock().unwrap().push((rule, 0));
    }

    /// `METHOD path` of every request seen, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }

    /// The `Authorization` header of every request seen.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.state.auth.lock().unwrap().clone()
    }

    /// How many requests matched `method` and contained `path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with(method) && r.contains(path))
            .count()
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn read_request(conn: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

fn matching(state: &State, req: &Request) -> Option<Fault> {
    let mut rules = state.rules.lock().unwrap();
    let body = String::from_utf8_lossy(&req.body);
    for (rule, used) in rules.iter_mut() {
        let live = rule.times == 0 || *used < rule.times;
        let hit = rule.method.is_none_or(|m| m == req.method)
            && req.path.contains(rule.path)
            && rule.body.as_ref().is_none_or(|b| body.contains(b.as_str()));
        if live && hit {
            *used += 1;
            return Some(rule.fault.clone());
        }
    }
    None
}

async fn serve(mut conn: TcpStream, state: Arc<State>) {
    while let Some(req) = read_request(&mut conn).await {
        state
            .log
            .lock()
            .unwrap()
            .push(format!("{} {}", req.method, req.path));
        let auth = req
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone());
        state.auth.lock().unwrap().push(auth);
        match matching(&state, &req) {
            Some(Fault::Status(code)) => {
                let body = format!(
                    r#"{{"error_code": "INJECTED_{code}", "message": "fault injected by the test proxy"}}"#
                );
                if respond(&mut conn, code, "application/json", &[], body.as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Some(Fault::Stall(d)) => {
                tokio::time::sleep(d).await;
                return;
            }
            Some(Fault::Drop) => return,
            Some(Fault::Before(hook)) => {
                if let Err(panic) = AssertUnwindSafe(hook()).catch_unwind().await {
                    state
                        .failures
                        .record(format!("{}: {}", req.path, super::panic_text(&*panic)));
                    return;
                }
            }
            None => {}
        }
        let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap();
        let mut up = state
            .http
            .request(method, format!("{}{}", state.upstream, req.path))
            .body(req.body);
        for (k, v) in &req.headers {
            if FORWARDED.contains(&k.as_str()) {
                up = up.header(k.as_str(), v.as_str());
            }
        }
        let Ok(resp) = up.send().await else { return };
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_string();
        // What a reader of an object needs to see: its identity and which bytes came.
        let kept: Vec<(String, String)> = ["etag", "last-modified", "content-range"]
            .iter()
            .filter_map(|k| {
                let v = resp.headers().get(*k)?.to_str().ok()?;
                Some((k.to_string(), v.to_string()))
            })
            .collect();
        let Ok(bytes) = resp.bytes().await else {
            return;
        };
        if respond(&mut conn, status, &ctype, &kept, &bytes)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The request headers passed on: what MLflow and an object store need (a range, and the
/// identity a read is pinned to).
const FORWARDED: &[&str] = &["content-type", "authorization", "range", "if-match"];

async fn respond(
    conn: &mut TcpStream,
    status: u16,
    ctype: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\n{extra}content-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body).await?;
    conn.flush().await
}
