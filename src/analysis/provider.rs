//! One measurement from a metrics provider. Each provider fills its query's placeholders in
//! the quoting of its own language (a PromQL string literal, a URL path or query), so a model
//! name with a quote in it cannot change the query's meaning.
//!
//! Whatever is not exactly one finite number is [`Measurement::Inconclusive`], never a value:
//! an analysis must not pass, or roll back, on missing data.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::Value;

use crate::secret::Secret;

/// What one query gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Measurement {
    Value(f64),
    /// Why no value: the provider's words, or ours.
    Inconclusive(String),
}

/// The placeholders a query may use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vars {
    pub model: String,
    pub version: String,
    /// The champion this promotion replaced (empty if there was none).
    pub previous: String,
    /// The promotion's target: an alias or a stage (the other is empty).
    pub alias: String,
    pub stage: String,
}

impl Vars {
    /// `template` with `{model}`, `{version}`, `{previous}`, `{alias}` and `{stage}` replaced
    /// by their values as `quote` writes them.
    pub fn fill(&self, template: &str, quote: impl Fn(&str) -> String) -> String {
        let pairs = [
            ("{model}", &self.model),
            ("{version}", &self.version),
            ("{previous}", &self.previous),
            ("{alias}", &self.alias),
            ("{stage}", &self.stage),
        ];
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        'outer: while !rest.is_empty() {
            for (key, value) in &pairs {
                if let Some(after) = rest.strip_prefix(key) {
                    out.push_str(&quote(value));
                    rest = after;
                    continue 'outer;
                }
            }
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
        }
        out
    }
}

/// Credentials sent with every query, from the environment (never from the config file).
#[derive(Debug, Clone, Default)]
pub enum Credentials {
    #[default]
    None,
    Bearer(Secret),
    Basic {
        user: String,
        password: Secret,
    },
}

impl Credentials {
    fn header(&self) -> Option<HeaderValue> {
        let text = match self {
            Credentials::None => return None,
            Credentials::Bearer(t) => format!("Bearer {}", t.expose()),
            Credentials::Basic { user, password } => {
                use base64::Engine;
                let pair = base64::engine::general_purpose::STANDARD
                    .encode(format!("{user}:{}", password.expose()));
                format!("Basic {pair}")
            }
        };
        let mut v = HeaderValue::from_str(&text).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

/// Where a metric's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// An instant query to Prometheus's HTTP API (`GET <address>/api/v1/query`).
    Prometheus { address: String, query: String },
    /// `GET <url>`, a JSON answer, the number at `pointer` (RFC 6901).
    Web { url: String, pointer: String },
}

/// Ask once. `timeout` bounds the whole request.
pub async fn measure(
    http: &reqwest::Client,
    q: &Query,
    vars: &Vars,
    credentials: &Credentials,
    timeout: Duration,
) -> Measurement {
    match ask(http, q, vars, credentials, timeout).await {
        Ok(answer) => value(&answer, q),
        Err(why) => inconclusive(why),
    }
}

/// The value in a provider's JSON answer to `q`.
pub fn value(answer: &Value, q: &Query) -> Measurement {
    match q {
        Query::Prometheus { .. } => prometheus_value(answer),
        Query::Web { pointer, .. } => pointed_value(answer, pointer),
    }
}

/// The provider's JSON answer; an error says why there is none (no connection, a non-2xx
/// answer with the provider's own message, an answer that is not JSON).
pub async fn ask(
    http: &reqwest::Client,
    q: &Query,
    vars: &Vars,
    credentials: &Credentials,
    timeout: Duration,
) -> Result<Value, String> {
    let url = match q {
        Query::Prometheus { address, query } => {
            let promql = vars.fill(query, promql_string);
            let base = address.trim_end_matches('/');
            match url::Url::parse_with_params(&format!("{base}/api/v1/query"), [("query", promql)])
            {
                Ok(u) => u.to_string(),
                Err(e) => return Err(format!("bad Prometheus address {address}: {e}")),
            }
        }
        Query::Web { url, .. } => vars.fill(url, url_part),
    };
    let mut req = http.get(&url).timeout(timeout);
    if let Some(h) = credentials.header() {
        req = req.header(AUTHORIZATION, h);
    }
    let shown = crate::location::redact_str(&url);
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Err(format!("{shown}: {}", without_url(&e))),
    };
    let status = resp.status();
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return Err(format!("{shown}: reading the answer: {}", without_url(&e))),
    };
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    if !status.is_success() {
        // Prometheus explains a bad query in its JSON error body.
        let why = json
            .as_ref()
            .and_then(|j| j["error"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
        return Err(format!("{shown}: HTTP {status}: {why}"));
    }
    json.ok_or_else(|| format!("{shown}: the answer is not JSON"))
}

fn inconclusive(why: String) -> Measurement {
    Measurement::Inconclusive(why)
}

/// The error down to its root cause, without the URL (shown redacted beside it).
fn without_url(e: &reqwest::Error) -> String {
    let text = crate::objects::chain(e);
    match e.url() {
        Some(u) => text.replace(u.as_str(), ""),
        None => text,
    }
}

/// A value for a PromQL double-quoted string literal: backslash, double quote and newline
/// escaped (a single quote needs none there, and PromQL refuses `\'` in double quotes).
pub fn promql_string(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A value for a URL path segment or query value.
pub fn url_part(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The one value of an instant query's answer: a scalar, or a vector of exactly one sample.
pub fn prometheus_value(answer: &Value) -> Measurement {
    if answer["status"] != "success" {
        let why = answer["error"].as_str().unwrap_or("no status \"success\"");
        return inconclusive(format!("Prometheus: {why}"));
    }
    let data = &answer["data"];
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([one]) => &one["value"],
            Some([]) => return inconclusive("the query returned no series".into()),
            Some(many) => {
                return inconclusive(format!(
                    "the query returned {} series, not one (aggregate it, e.g. with sum())",
                    many.len()
                ));
            }
            None => return inconclusive("a vector without a result list".into()),
        },
        Some(other) => {
            return inconclusive(format!(
                "the query returned a {other}, not a scalar or a one-series vector"
            ));
        }
        None => return inconclusive("no resultType in the answer".into()),
    };
    // A sample is [timestamp, "value"]; Prometheus writes values as strings ("NaN", "+Inf").
    match sample[1].as_str().map(str::parse::<f64>) {
        Some(Ok(v)) => finite(v),
        _ => inconclusive(format!("not a sample: {sample}")),
    }
}

/// The number at `pointer` in a JSON answer (a JSON number, or a string holding one).
pub fn pointed_value(answer: &Value, pointer: &str) -> Measurement {
    match answer.pointer(pointer) {
        Some(Value::Number(n)) => n.as_f64().map_or_else(
            || inconclusive(format!("{pointer}: {n} is not a number we can use")),
            finite,
        ),
        Some(Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(v) => finite(v),
            Err(_) => inconclusive(format!("{pointer}: {s:?} is not a number")),
        },
        Some(Value::Null) | None => inconclusive(format!("{pointer}: nothing there")),
        Some(other) => inconclusive(format!("{pointer}: {} is not a number", short(other))),
    }
}

fn finite(v: f64) -> Measurement {
    if v.is_finite() {
        Measurement::Value(v)
    } else {
        inconclusive(format!("the value is {v}"))
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests;
