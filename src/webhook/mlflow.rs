//! MLflow OSS webhook deliveries: signature verification over the raw body (before any
//! parsing), timestamp tolerance, the typed event inside and where it leads. No IO.
//!
//! Signature: `X-MLflow-Signature: v1,<base64(HMAC-SHA256(secret, "{id}.{ts}.{body}"))>`
//! with the secret's UTF-8 bytes as key. Every configured secret is tried, so secrets rotate.

use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use serde_json::json;

use super::{
    ApiDoc, Context, Delivery, Rejection, Route, Source, any_secret_signed, api_header,
    check_fresh, hmac_sha256,
};
use crate::secret::Secret;

pub const DELIVERY_ID: &str = "x-mlflow-delivery-id";
pub const TIMESTAMP: &str = "x-mlflow-timestamp";
pub const SIGNATURE: &str = "x-mlflow-signature";

/// The signed headers of a delivery.
pub struct Headers<'a> {
    pub delivery_id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Check a delivery's signature and timestamp; returns its delivery id.
pub fn verify<'a>(
    h: &Headers<'a>,
    body: &[u8],
    secrets: &[Secret],
    tolerance: Duration,
    now_unix: u64,
) -> Result<&'a str, Rejection> {
    if secrets.is_empty() {
        return Err(NO_SECRETS);
    }
    let id = h
        .delivery_id
        .filter(|s| !s.is_empty())
        .ok_or(Rejection::MissingHeader(DELIVERY_ID))?;
    let ts = h.timestamp.ok_or(Rejection::MissingHeader(TIMESTAMP))?;
    let sig = h.signature.ok_or(Rejection::MissingHeader(SIGNATURE))?;
    let ts_num: u64 = ts
        .trim()
        .parse()
        .map_err(|_| Rejection::MalformedHeader(TIMESTAMP))?;
    let given = sig
        .split(' ')
        .filter_map(|part| part.strip_prefix("v1,"))
        .filter_map(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .collect::<Vec<_>>();
    if given.is_empty() {
        return Err(Rejection::MalformedHeader(SIGNATURE));
    }
    // Verify before judging the timestamp, so an unsigned request learns nothing from it.
    if !any_secret_signed(secrets, &given, |s| sign(s.expose(), id, ts, body)) {
        return Err(Rejection::BadSignature);
    }
    check_fresh(ts_num, now_unix, tolerance)?;
    Ok(id)
}

/// HMAC-SHA256 over `{id}.{ts}.{body}`, raw bytes.
pub fn sign(secret: &str, id: &str, ts: &str, body: &[u8]) -> Vec<u8> {
    hmac_sha256(secret, &[id.as_bytes(), b".", ts.as_bytes(), b".", body])
}

/// The `X-MLflow-Signature` header value for a body (tests, load generators).
pub fn signature_header(secret: &str, id: &str, ts: &str, body: &[u8]) -> String {
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(sign(secret, id, ts, body))
    )
}

/// A registry event, as far as stagegate cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `model_version.created`, `model_version_tag.set`, …
    pub kind: String,
    pub model: String,
    pub version: Option<String>,
    /// The tag key, for tag events.
    pub tag_key: Option<String>,
}

#[derive(Deserialize)]
struct Payload {
    entity: String,
    action: String,
    #[serde(default)]
    data: serde_json::Map<String, serde_json::Value>,
}

/// Parse a verified body. Events without a model name are malformed.
pub fn parse(body: &[u8]) -> Result<Event, Rejection> {
    let p: Payload =
        serde_json::from_slice(body).map_err(|e| Rejection::Malformed(e.to_string()))?;
    let text = |k: &str| match p.data.get(k) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let model = text("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Rejection::Malformed("data.name is missing".into()))?;
    Ok(Event {
        kind: format!(
            "{}.{}",
            p.entity.to_ascii_lowercase(),
            p.action.to_ascii_lowercase()
        ),
        model,
        version: text("version"),
        tag_key: text("key"),
    })
}

pub fn route(e: &Event, tag_prefix: &str) -> Route {
    match e.kind.as_str() {
        "model_version.created" => Route::Created {
            version: e.version.clone(),
        },
        "model_version_tag.set" | "model_version_tag.deleted" => {
            if e.tag_key
                .as_deref()
                .is_some_and(|k| k.starts_with(tag_prefix))
            {
                // Our own writes echo back; acting on them would feed the daemon itself.
                return Route::Ignore("stagegate's own tag");
            }
            Route::Reconcile
        }
        "model_version_alias.created"
        | "model_version_alias.deleted"
        | "registered_model.created" => Route::Reconcile,
        _ => Route::Ignore("event not used by stagegate"),
    }
}

const NO_SECRETS: Rejection = Rejection::NoSecrets {
    sender: "MLflow",
    key: Mlflow::SECRETS_KEY,
};

/// The MLflow OSS sender, as a [`Source`] of the shared receiver.
pub struct Mlflow;

impl Source for Mlflow {
    const NAME: &'static str = "mlflow";
    const SECRETS_KEY: &'static str = "secrets";

    fn accept(
        header: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
        cx: &Context,
    ) -> Result<Delivery, Rejection> {
        let (id, ts, sig) = (header(DELIVERY_ID), header(TIMESTAMP), header(SIGNATURE));
        let signed = Headers {
            delivery_id: id.as_deref(),
            timestamp: ts.as_deref(),
            signature: sig.as_deref(),
        };
        let id = verify(&signed, body, cx.secrets, cx.tolerance, cx.now_unix)?;
        let event = parse(body)?;
        let route = route(&event, cx.tag_prefix);
        Ok(Delivery {
            identity: id.to_string(),
            event: event.kind,
            model: event.model,
            route,
        })
    }

    fn api() -> ApiDoc {
        ApiDoc {
            summary: "MLflow OSS webhook receiver",
            description: "Verifies X-MLflow-Signature (HMAC-SHA256 over `{delivery id}.{timestamp}.{raw body}` \
                          with any of webhooks.secrets) and the timestamp tolerance, de-duplicates by delivery id, queues \
                          the model and answers at once.",
            headers: vec![
                api_header(
                    "X-MLflow-Delivery-Id",
                    json!({"type": "string", "minLength": 1}),
                    "unique per delivery; retries repeat it",
                ),
                api_header(
                    "X-MLflow-Timestamp",
                    json!({"type": "string", "pattern": "^[0-9]+$"}),
                    "unix seconds",
                ),
                api_header(
                    "X-MLflow-Signature",
                    json!({"type": "string", "pattern": "^v1,"}),
                    "v1,<base64 HMAC-SHA256>",
                ),
            ],
            // What the receiver reads of MLflow's payload: anything else in it is passed over.
            payload: (
                "WebhookEvent",
                json!({"type": "object", "required": ["entity", "action", "data"], "properties": {
                    "entity": {"type": "string", "example": "model_version"},
                    "action": {"type": "string", "example": "created"},
                    "timestamp": {"type": "string"},
                    "data": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string", "minLength": 1}, "version": {"type": "string"},
                        "key": {"type": "string", "description": "the tag key of tag events"}}}}}),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"entity":"model_version","action":"created","timestamp":"2026-01-01T00:00:00+00:00","data":{"name":"m","version":"3","source":"models:/m-1","run_id":null,"tags":{},"description":null}}"#;

    fn headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> Headers<'a> {
        Headers {
            delivery_id: Some(id),
            timestamp: Some(ts),
            signature: Some(sig),
        }
    }

    fn secrets(s: &[&str]) -> Vec<Secret> {
        s.iter().map(|x| Secret::new(*x)).collect()
    }

    #[test]
    fn accepts_a_signature_from_any_configured_secret() {
        let sig = signature_header("next", "d1", "1000", BODY);
        let h = headers("d1", "1000", &sig);
        assert_eq!(
            verify(
                &h,
                BODY,
                &secrets(&["first", "next"]),
                Duration::from_secs(300),
                1100
            ),
            Ok("d1")
        );
        assert_eq!(
            verify(
                &h,
                BODY,
                &secrets(&["first"]),
                Duration::from_secs(300),
                1100
            ),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn a_changed_byte_or_id_breaks_the_signature() {
        let sig = signature_header("s", "d1", "1000", BODY);
        let mut tampered = BODY.to_vec();
        tampered[10] ^= 1;
        let s = secrets(&["s"]);
        assert_eq!(
            verify(
                &headers("d1", "1000", &sig),
                &tampered,
                &s,
                Duration::from_secs(300),
                1000
            ),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            verify(
                &headers("d2", "1000", &sig),
                BODY,
                &s,
                Duration::from_secs(300),
                1000
            ),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let sig = signature_header("s", "d1", "1000", BODY);
        let s = secrets(&["s"]);
        let h = headers("d1", "1000", &sig);
        assert_eq!(
            verify(&h, BODY, &s, Duration::from_secs(300), 1301),
            Err(Rejection::Stale(301))
        );
        assert_eq!(
            verify(&h, BODY, &s, Duration::from_secs(300), 699),
            Err(Rejection::Stale(301))
        );
        assert!(verify(&h, BODY, &s, Duration::from_secs(300), 1300).is_ok());
    }

    #[test]
    fn missing_and_malformed_headers_and_no_secrets() {
        let s = secrets(&["s"]);
        let t = Duration::from_secs(300);
        let h = Headers {
            delivery_id: None,
            timestamp: Some("1"),
            signature: Some("v1,AA=="),
        };
        assert_eq!(
            verify(&h, BODY, &s, t, 1),
            Err(Rejection::MissingHeader(DELIVERY_ID))
        );
        assert_eq!(
            verify(&headers("d", "1", "sha256=abc"), BODY, &s, t, 1),
            Err(Rejection::MalformedHeader(SIGNATURE))
        );
        assert_eq!(
            verify(&headers("d", "soon", "v1,AA=="), BODY, &s, t, 1),
            Err(Rejection::MalformedHeader(TIMESTAMP))
        );
        assert_eq!(
            verify(&headers("d", "1", "v1,AA=="), BODY, &[], t, 1),
            Err(NO_SECRETS)
        );
        assert_eq!(NO_SECRETS.status(), 401);
        assert_eq!(Rejection::TooLarge(1).status(), 413);
    }

    #[test]
    fn parses_and_routes_events() {
        let e = parse(BODY).unwrap();
        assert_eq!(e.kind, "model_version.created");
        assert_eq!((e.model.as_str(), e.version.as_deref()), ("m", Some("3")));
        assert_eq!(
            route(&e, "stagegate."),
            Route::Created {
                version: Some("3".into())
            }
        );

        let tag = |key: &str| {
            parse(format!(r#"{{"entity":"model_version_tag","action":"set","data":{{"name":"m","version":"2","key":"{key}","value":"x"}}}}"#).as_bytes()).unwrap()
        };
        assert_eq!(
            route(&tag("stagegate.verdict"), "stagegate."),
            Route::Ignore("stagegate's own tag")
        );
        assert_eq!(route(&tag("accuracy"), "stagegate."), Route::Reconcile);
        assert!(matches!(parse(b"{not json"), Err(Rejection::Malformed(_))));
        assert!(matches!(
            parse(br#"{"entity":"model_version","action":"created","data":{}}"#),
            Err(Rejection::Malformed(_))
        ));
    }
}
