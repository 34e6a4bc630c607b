//! Talking to a scoring server: `POST /invocations` bodies (`dataframe_split`, `inputs`), the
//! `{"predictions": …}` answer, and the server's error message.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use serde_json::Value;

use super::host::HostModel;
use super::local::LocalServer;

/// What runs behind an endpoint, when stagegate runs it.
enum Backing {
    /// An existing deployment (`serving.url`).
    Remote,
    /// `mlflow models serve`, started for this evaluation.
    Local(Box<LocalServer>),
    /// MLflow's scoring server app in a warm host's model process.
    Hosted(Arc<HostModel>),
}

/// A served model's invocations endpoint (and the server behind it, if we started it).
pub struct Endpoint {
    pub url: String,
    http: reqwest::Client,
    backing: Backing,
    timeout: Duration,
    /// Requests sent and the wall time spent in them (the report's serving figures).
    requests: AtomicU64,
    busy_us: AtomicU64,
}

/// One answer of the scoring server.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Endpoint {
    fn with(url: String, backing: Backing, timeout: Duration) -> Endpoint {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            // A CA store only for https endpoints; loading it costs milliseconds.
            .tls_built_in_root_certs(url.starts_with("https://"))
            .build()
            .unwrap_or_default();
        Endpoint {
            url,
            http,
            backing,
            timeout,
            requests: AtomicU64::new(0),
            busy_us: AtomicU64::new(0),
        }
    }

    pub fn local(server: LocalServer, timeout: Duration) -> Endpoint {
        Endpoint::with(
            format!("{}/invocations", server.base),
            Backing::Local(Box::new(server)),
            timeout,
        )
    }

    pub fn remote(url: String, timeout: Duration) -> Endpoint {
        Endpoint::with(url, Backing::Remote, timeout)
    }

    /// MLflow's scoring server app at `base`, run by a warm host's model process.
    pub fn hosted(base: String, model: Arc<HostModel>, timeout: Duration) -> Endpoint {
        Endpoint::with(
            format!("{base}/invocations"),
            Backing::Hosted(model),
            timeout,
        )
    }

    /// False once a server we started has exited.
    pub fn alive(&self) -> bool {
        match &self.backing {
            Backing::Remote => true,
            Backing::Local(s) => s.exited().is_none(),
            Backing::Hosted(m) => m.alive(),
        }
    }

    /// The `mlflow models serve` behind this endpoint, if it is one.
    pub fn server(&self) -> Option<&LocalServer> {
        match &self.backing {
            Backing::Local(s) => Some(s),
            _ => None,
        }
    }

    /// `(requests answered, total time in them)`.
    pub fn usage(&self) -> (u64, Duration) {
        (
            self.requests.load(Ordering::Relaxed),
            Duration::from_micros(self.busy_us.load(Ordering::Relaxed)),
        )
    }

    /// POST a JSON body; a transport failure is `Err` (with the server's log tail if we run it).
    pub async fn invoke(&self, body: String) -> Result<Answer, String> {
        let started = Instant::now();
        let resp = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return Err(self.transport_error(&e).await),
        };
        let status = resp.status().as_u16();
        let body = match resp.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => return Err(self.transport_error(&e).await),
        };
        let elapsed = started.elapsed();
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.busy_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        Ok(Answer {
            status,
            body,
            elapsed,
        })
    }

    /// Count a request made outside [`invoke`](Self::invoke) (the latency gate's own
    /// connections) in this endpoint's figures.
    pub fn record(&self, elapsed: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.busy_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// A dedicated kept-alive HTTP/1.1 connection (plain http only), for the latency gate:
    /// it measures the model, so the client must cost as little as possible per request.
    pub async fn connect(&self) -> Option<Connection> {
        let uri: hyper::Uri = self.url.parse().ok()?;
        if uri.scheme_str() != Some("http") {
            return None;
        }
        let authority = uri.authority()?.clone();
        let stream = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .ok()?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        // Origin form (`/invocations`): the absolute form is for proxies.
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .ok()?;
        Some(Connection {
            sender,
            uri: path,
            authority: authority.to_string(),
            timeout: self.timeout,
        })
    }

    /// Explain a failed request. When our server's worker dies, the `mlflow models serve`
    /// leader notices a moment later: give it that moment, so the message can say so.
    async fn transport_error(&self, e: &reqwest::Error) -> String {
        let what = if e.is_timeout() {
            "timed out".to_string()
        } else {
            format!("failed: {e}")
        };
        let s = match &self.backing {
            Backing::Remote => return format!("request to {} {what}", self.url),
            Backing::Hosted(m) => {
                for _ in 0..30 {
                    if !m.alive() {
                        return format!("request {what}: {}", m.failure_now().await);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                return format!("request to {} {what}", self.url);
            }
            Backing::Local(s) => s,
        };
        for _ in 0..30 {
            if s.exited().is_some() {
                let (cause, tail) = s.diagnosis();
                return format!("request {what}: the serving process died; {cause}log: {tail}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        format!("request to {} {what}", self.url)
    }
}

/// See [`Endpoint::connect`].
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    uri: hyper::Uri,
    authority: String,
    timeout: Duration,
}

impl Connection {
    /// POST `body`; `(status, elapsed)`, the answer read whole. Err if the connection broke.
    pub async fn post(&mut self, body: bytes::Bytes) -> Result<(u16, Vec<u8>, Duration), String> {
        use http_body_util::BodyExt;
        let started = Instant::now();
        let req = hyper::Request::post(self.uri.clone())
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(body))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            self.sender
                .ready()
                .await
                .map_err(|e| format!("connection lost: {e}"))?;
            let resp = self
                .sender
                .send_request(req)
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body.to_vec()))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                format!(
                    "no answer within {} (serving.request_timeout)",
                    humantime::format_duration(self.timeout)
                )
            })??;
        Ok((status, body, started.elapsed()))
    }
}

/// A cell of a request, written as JSON — but NaN and ±infinity as the bare tokens Python's
/// `json` module reads, since JSON proper has no way to say them.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Raw(Value),
}

impl Cell {
    fn write(&self, out: &mut String) {
        match self {
            Cell::Null => out.push_str("null"),
            Cell::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Cell::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Cell::Float(f) if f.is_nan() => out.push_str("NaN"),
            Cell::Float(f) if f.is_infinite() => {
                out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" })
            }
            Cell::Float(f) => {
                // `{:?}` keeps a decimal point and full precision (1e6 -> 1000000.0).
                let _ = write!(out, "{f:?}");
            }
            Cell::Str(s) => out.push_str(&Value::String(s.clone()).to_string()),
            Cell::Raw(v) => out.push_str(&v.to_string()),
        }
    }
}

/// `{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`.
pub fn dataframe_split(columns: &[String], rows: &[Vec<Cell>]) -> String {
    let mut out = String::with_capacity(64 + rows.len() * columns.len() * 8);
    out.push_str("{\"dataframe_split\":{\"columns\":");
    out.push_str(&Value::from(columns.to_vec()).to_string());
    out.push_str(",\"data\":[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        for (j, c) in row.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            c.write(&mut out);
        }
        out.push(']');
    }
    out.push_str("]}}");
    out
}

/// Column `name` of `batch` as request cells: booleans, 64-bit integers and floats as such,
/// anything else as its text.
pub fn batch_cells(batch: &RecordBatch, name: &str) -> Result<Vec<Cell>, String> {
    let a = batch
        .column_by_name(name)
        .ok_or_else(|| format!("column {name:?} is not in the rows"))?;
    let bad = |e: arrow::error::ArrowError| format!("column {name:?}: {e}");
    let n = a.len();
    let cell = |i: usize, f: &dyn Fn(usize) -> Cell| if a.is_null(i) { Cell::Null } else { f(i) };
    Ok(match a.data_type() {
        DataType::Boolean => {
            let b = a.as_boolean();
            (0..n)
                .map(|i| cell(i, &|i| Cell::Bool(b.value(i))))
                .collect()
        }
        t if t.is_integer() => {
            let c = cast(a, &DataType::Int64).map_err(bad)?;
            let c = c.as_primitive::<Int64Type>();
            (0..n)
                .map(|i| cell(i, &|i| Cell::Int(c.value(i))))
                .collect()
        }
        t if t.is_floating() => {
            let c = cast(a, &DataType::Float64).map_err(bad)?;
            let c = c.as_primitive::<Float64Type>();
            (0..n)
                .map(|i| cell(i, &|i| Cell::Float(c.value(i))))
                .collect()
        }
        _ => {
            let c = cast(a, &DataType::Utf8)
                .map_err(|e| format!("column {name:?} cannot be read as text: {e}"))?;
            let c = c.as_string::<i32>();
            (0..n)
                .map(|i| cell(i, &|i| Cell::Str(c.value(i).to_string())))
                .collect()
        }
    })
}

/// Python's `json` writes NaN and infinities as bare tokens; read them as `null` (outside
/// strings), which JSON can say.
fn lenient_json(body: &[u8]) -> Result<Value, serde_json::Error> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(e) => {
            let text = String::from_utf8_lossy(body);
            let mut out = String::with_capacity(text.len());
            let (mut in_str, mut escaped) = (false, false);
            let mut rest = text.as_ref();
            while let Some(c) = rest.chars().next() {
                if in_str {
                    out.push(c);
                    match (escaped, c) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => in_str = false,
                        _ => {}
                    }
                    rest = &rest[c.len_utf8()..];
                    continue;
                }
                if let Some(tok) = ["-Infinity", "Infinity", "NaN"]
                    .iter()
                    .find(|t| rest.starts_with(**t))
                {
                    out.push_str("null");
                    rest = &rest[tok.len()..];
                    continue;
                }
                if c == '"' {
                    in_str = true;
                }
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
            serde_json::from_str(&out).map_err(|_| e)
        }
    }
}

/// The rows of `{"predictions": …}`: a list (one entry per row), or a dict of columns.
pub fn predictions(body: &[u8]) -> Result<Vec<Value>, String> {
    let v: Value = lenient_json(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let p = match v {
        Value::Object(mut o) => o
            .remove("predictions")
            .ok_or("the answer has no \"predictions\"")?,
        other => other,
    };
    match p {
        Value::Array(rows) => Ok(rows),
        Value::Object(cols) => {
            // {"col": [..], ...}: one row per index, as an object.
            let n = cols
                .values()
                .filter_map(Value::as_array)
                .map(Vec::len)
                .max()
                .unwrap_or(0);
            Ok((0..n)
                .map(|i| {
                    Value::Object(
                        cols.iter()
                            .map(|(k, c)| (k.clone(), c.get(i).cloned().unwrap_or(Value::Null)))
                            .collect(),
                    )
                })
                .collect())
        }
        other => Err(format!(
            "\"predictions\" is neither a list nor a table: {other}"
        )),
    }
}

pub fn prediction_count(body: &[u8]) -> Result<usize, String> {
    predictions(body).map(|p| p.len())
}

/// The server's explanation of a failed request: MLflow's `message`, plus the exception line
/// of its stack trace when there is one (that is where "Input X contains NaN" lives).
pub fn server_error(a: &Answer) -> String {
    let v: Value = match serde_json::from_slice(&a.body) {
        Ok(v) => v,
        Err(_) => {
            return format!(
                "{}: {}",
                a.status,
                String::from_utf8_lossy(&a.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
                    .trim()
            );
        }
    };
    let message = v.get("message").and_then(Value::as_str).unwrap_or("");
    let exception = v
        .get("stack_trace")
        .and_then(Value::as_str)
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| l.contains("Error: ") || l.contains("Exception: "))
        })
        .map(str::trim);
    let text = match exception {
        Some(e) => e.to_string(),
        None if !message.is_empty() => message.to_string(),
        None => v.to_string(),
    };
    let text: String = text.chars().take(300).collect();
    format!("{}: {text}", a.status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_carry_nan_and_infinity_as_python_reads_them() {
        let rows = vec![vec![
            Cell::Float(f64::NAN),
            Cell::Float(1e6),
            Cell::Str("ü\"".into()),
            Cell::Null,
            Cell::Int(-3),
        ]];
        let cols: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            dataframe_split(&cols, &rows),
            r#"{"dataframe_split":{"columns":["a","b","c","d","e"],"data":[[NaN,1000000.0,"ü\"",null,-3]]}}"#
        );
        let mut s = String::new();
        Cell::Float(f64::NEG_INFINITY).write(&mut s);
        assert_eq!(s, "-Infinity");
    }

    #[test]
    fn predictions_as_list_or_columns() {
        assert_eq!(prediction_count(br#"{"predictions": [0, 1, 1]}"#), Ok(3));
        assert_eq!(
            prediction_count(br#"{"predictions": {"a": [1, 2], "b": [3, 4]}}"#),
            Ok(2)
        );
        assert_eq!(prediction_count(br#"[1, 2]"#), Ok(2));
        assert_eq!(
            predictions(br#"{"predictions": [-Infinity, NaN, "NaN", 1.5]}"#),
            Ok(vec![Value::Null, Value::Null, json!("NaN"), json!(1.5)])
        );
        assert!(prediction_count(b"oops").is_err());
    }

    #[test]
    fn server_errors_name_the_exception() {
        let body = br#"{"error_code": "BAD_REQUEST", "message": "Encountered an unexpected error", "stack_trace": "Traceback\n  File x\nValueError: Input X contains NaN.\nLogisticRegression does not accept"}"#;
        let a = Answer {
            status: 400,
            body: body.to_vec(),
            elapsed: Duration::ZERO,
        };
        assert_eq!(server_error(&a), "400: ValueError: Input X contains NaN.");
        let a = Answer {
            status: 500,
            body: b"Internal Server Error".to_vec(),
            elapsed: Duration::ZERO,
        };
        assert_eq!(server_error(&a), "500: Internal Server Error");
    }
}
