//! Databricks Model Registry webhook deliveries: signature over the raw body, the event's own
//! timestamp, the typed event and where it leads. No IO.
//!
//! Signature: `X-Databricks-Signature: <hex(HMAC-SHA256(secret, raw body))>` (Databricks'
//! own example is hex; base64 is accepted too), checked against every configured
//! `webhooks.databricks_secrets` entry in constant time. Databricks sends no delivery id or
//! timestamp header: the timestamp is the payload's `event_timestamp` (milliseconds, judged
//! after the signature, since it is only trustworthy once the body is), and a delivery is
//! identified by a hash of the event's own identity (webhook, event, model, version, time,
//! target stage), so a resent event is recognised whatever its transport.

use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{
    ApiDoc, Context, Delivery, Rejection, Route, Source, any_secret_signed, api_header,
    check_fresh, hmac_sha256,
};
use crate::secret::Secret;

pub const SIGNATURE: &str = "x-databricks-signature";

const NO_SECRETS: Rejection = Rejection::NoSecrets {
    sender: "Databricks",
    key: Databricks::SECRETS_KEY,
};

/// Check `X-Databricks-Signature` (hex or base64) over the raw body.
pub fn verify(signature: Option<&str>, body: &[u8], secrets: &[Secret]) -> Result<(), Rejection> {
    if secrets.is_empty() {
        return Err(NO_SECRETS);
    }
    let sig = signature
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(Rejection::MissingHeader(SIGNATURE))?;
    // A hex digest is also valid base64 (of other bytes): keep every reading, compare each.
    let given: Vec<Vec<u8>> = [
        from_hex(sig),
        base64::engine::general_purpose::STANDARD.decode(sig).ok(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.is_empty() {
        return Err(Rejection::MalformedHeader(SIGNATURE));
    }
    if any_secret_signed(secrets, &given, |s| sign(s.expose(), body)) {
        Ok(())
    } else {
        Err(Rejection::BadSignature)
    }
}

/// HMAC-SHA256 of the raw body.
pub fn sign(secret: &str, body: &[u8]) -> Vec<u8> {
    hmac_sha256(secret, &[body])
}

/// The `X-Databricks-Signature` value Databricks sends: the lower-case hex digest.
pub fn signature_header(secret: &str, body: &[u8]) -> String {
    to_hex(&sign(secret, body))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// A registry event, as far as stagegate cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `MODEL_VERSION_CREATED`, `MODEL_VERSION_TRANSITIONED_STAGE`, …
    pub event: String,
    pub webhook_id: String,
    /// `event_timestamp`: unix milliseconds.
    pub timestamp_ms: u64,
    /// `model_name`; empty only for events stagegate does not use.
    pub model: String,
    pub version: Option<String>,
    pub to_stage: Option<String>,
    pub from_stage: Option<String>,
    /// The keys of a `MODEL_VERSION_TAG_SET` event's `tags`, when it lists them.
    pub tag_keys: Vec<String>,
}

/// What an event name means to stagegate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Created,
    /// Stage transitions (done or requested) and a new registered model: look again.
    Reconcile,
    TagSet,
    Comment,
    Unknown,
}

fn kind(event: &str) -> Kind {
    match event {
        "MODEL_VERSION_CREATED" => Kind::Created,
        "MODEL_VERSION_TRANSITIONED_STAGE"
        | "MODEL_VERSION_TRANSITIONED_TO_STAGING"
        | "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION"
        | "MODEL_VERSION_TRANSITIONED_TO_ARCHIVED"
        | "TRANSITION_REQUEST_CREATED"
        | "TRANSITION_REQUEST_TO_STAGING_CREATED"
        | "TRANSITION_REQUEST_TO_PRODUCTION_CREATED"
        | "TRANSITION_REQUEST_TO_ARCHIVED_CREATED"
        | "REGISTERED_MODEL_CREATED" => Kind::Reconcile,
        "MODEL_VERSION_TAG_SET" => Kind::TagSet,
        "COMMENT_CREATED" => Kind::Comment,
        _ => Kind::Unknown,
    }
}

/// Parse a verified body. A used event without `model_name`, or any event without `event` or
/// `event_timestamp`, is malformed; an unknown event is not (it is ignored).
pub fn parse(body: &[u8]) -> Result<Event, Rejection> {
    let p: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| Rejection::Malformed(e.to_string()))?;
    let text = |k: &str| match p.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let event = text("event")
        .filter(|e| !e.is_empty())
        .ok_or_else(|| Rejection::Malformed("event is missing".into()))?;
    let timestamp_ms = text("event_timestamp")
        .and_then(|t| t.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            Rejection::Malformed("event_timestamp is missing or not unix milliseconds".into())
        })?;
    let model = text("model_name").unwrap_or_default();
    if model.is_empty() && !matches!(kind(&event), Kind::Comment | Kind::Unknown) {
        return Err(Rejection::Malformed(format!(
            "model_name is missing from {event}"
        )));
    }
    let tag_keys = match p.get("tags") {
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(|t| t.get("key").and_then(Value::as_str).map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    Ok(Event {
        webhook_id: text("webhook_id").unwrap_or_default(),
        timestamp_ms,
        model,
        version: text("version"),
        to_stage: text("to_stage"),
        from_stage: text("from_stage"),
        tag_keys,
        event,
    })
}

/// Where an event leads. Databricks announces stage transitions, so unlike MLflow OSS a new
/// version becoming a candidate is an event of its own: only creation is re-checked.
pub fn route(e: &Event, tag_prefix: &str) -> Route {
    match kind(&e.event) {
        Kind::Created => Route::Created {
            version: e.version.clone(),
        },
        Kind::Reconcile => Route::Reconcile,
        Kind::TagSet
            if !e.tag_keys.is_empty() && e.tag_keys.iter().all(|k| k.starts_with(tag_prefix)) =>
        {
            // Our own writes echo back; acting on them would feed the daemon itself.
            Route::Ignore("stagegate's own tag")
        }
        Kind::TagSet => Route::Reconcile,
        Kind::Comment => Route::Ignore("comments are not used by stagegate"),
        Kind::Unknown => Route::Ignore("unknown event, not used by stagegate"),
    }
}

impl Event {
    /// The de-duplication identity: a hash of what makes this event this event. Each field is
    /// length-prefixed, so no two different events share the hashed bytes.
    pub fn identity(&self) -> String {
        let mut h = Sha256::new();
        let ts = self.timestamp_ms.to_string();
        for field in [
            self.webhook_id.as_str(),
            &self.event,
            &self.model,
            self.version.as_deref().unwrap_or(""),
            &ts,
            self.to_stage.as_deref().unwrap_or(""),
        ] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
        to_hex(&h.finalize())
    }
}

/// The Databricks sender, as a [`Source`] of the shared receiver.
pub struct Databricks;

impl Source for Databricks {
    const NAME: &'static str = "databricks";
    const SECRETS_KEY: &'static str = "databricks_secrets";

    fn accept(
        header: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
        cx: &Context,
    ) -> Result<Delivery, Rejection> {
        verify(header(SIGNATURE).as_deref(), body, cx.secrets)?;
        let event = parse(body)?;
        check_fresh(event.timestamp_ms / 1000, cx.now_unix, cx.tolerance)?;
        Ok(Delivery {
            identity: event.identity(),
            route: route(&event, cx.tag_prefix),
            event: event.event.clone(),
            model: event.model,
        })
    }

    fn api() -> ApiDoc {
        ApiDoc {
            summary: "Databricks Model Registry webhook receiver",
            description: "Verifies X-Databricks-Signature (HMAC-SHA256 of the raw body, hex or base64, with any of \
                          webhooks.databricks_secrets), then the payload's event_timestamp against the tolerance; \
                          de-duplicates by the event's own identity, queues the model and answers at once. Unknown events \
                          are acknowledged and ignored.",
            headers: vec![api_header(
                "X-Databricks-Signature",
                json!({"type": "string", "minLength": 1}),
                "hex (or base64) HMAC-SHA256 of the raw body",
            )],
            // What the receiver reads; `text` and anything else are passed over.
            payload: (
                "DatabricksEvent",
                json!({"type": "object", "required": ["event", "event_timestamp"], "properties": {
                    "event": {"type": "string", "minLength": 1, "example": "MODEL_VERSION_TRANSITIONED_STAGE"},
                    "webhook_id": {"type": "string"},
                    "event_timestamp": {"type": "integer", "minimum": 0, "description": "unix milliseconds"},
                    "model_name": {"type": "string", "description": "required for the events stagegate uses"},
                    "version": {"type": "string"}, "to_stage": {"type": "string"}, "from_stage": {"type": "string"},
                    "text": {"type": "string"}}}),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const NOW_MS: u64 = 1_700_000_000_000;

    fn body(event: &str, extra: &str) -> String {
        format!(
            r#"{{"event":"{event}","webhook_id":"c5596721253c4b429368cf6f4341b88a","event_timestamp":{NOW_MS},"model_name":"fraud","version":"8"{extra},"text":"Registered model 'fraud' version 8 …"}}"#
        )
    }

    fn secrets(s: &[&str]) -> Vec<Secret> {
        s.iter().map(|x| Secret::new(*x)).collect()
    }

    fn accept(
        sig: Option<&str>,
        body: &[u8],
        secrets: &[Secret],
        now: u64,
    ) -> Result<Delivery, Rejection> {
        let sig = sig.map(str::to_string);
        let header = move |name: &str| (name == SIGNATURE).then(|| sig.clone()).flatten();
        let cx = Context {
            secrets,
            tolerance: Duration::from_secs(300),
            tag_prefix: "stagegate.",
            now_unix: now,
        };
        Databricks::accept(&header, body, &cx)
    }

    #[test]
    fn hex_and_base64_signatures_of_any_configured_secret_are_accepted() {
        let b = body("MODEL_VERSION_CREATED", "");
        let raw = sign("next", b.as_bytes());
        let hex = signature_header("next", b.as_bytes());
        assert_eq!(hex, to_hex(&raw));
        assert_eq!(hex.len(), 64);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        let rotating = secrets(&["first", "next"]);
        for sig in [hex.as_str(), &hex.to_uppercase(), &b64, &format!(" {hex} ")] {
            assert_eq!(verify(Some(sig), b.as_bytes(), &rotating), Ok(()), "{sig}");
        }
        // The old secret alone does not sign for the new one.
        assert_eq!(
            verify(Some(&hex), b.as_bytes(), &secrets(&["first"])),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn a_wrong_secret_a_tampered_body_or_a_garbled_header_is_refused() {
        let b = body("MODEL_VERSION_CREATED", "");
        let s = secrets(&["s"]);
        let wrong = signature_header("other", b.as_bytes());
        assert_eq!(
            verify(Some(&wrong), b.as_bytes(), &s),
            Err(Rejection::BadSignature)
        );
        let good = signature_header("s", b.as_bytes());
        let tampered = b.replace("fraud", "frauD");
        assert_eq!(
            verify(Some(&good), tampered.as_bytes(), &s),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            verify(Some("zz-not-a-digest!"), b.as_bytes(), &s),
            Err(Rejection::MalformedHeader(SIGNATURE))
        );
        assert_eq!(
            verify(None, b.as_bytes(), &s),
            Err(Rejection::MissingHeader(SIGNATURE))
        );
        assert_eq!(verify(Some(&good), b.as_bytes(), &[]), Err(NO_SECRETS));
        // A half-length digest is refused, not compared as a prefix.
        assert_eq!(
            verify(Some(&good[..32]), b.as_bytes(), &s),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn the_event_timestamp_is_judged_after_the_signature() {
        let w = secrets(&["s"]);
        let b = body("MODEL_VERSION_CREATED", "");
        let sig = signature_header("s", b.as_bytes());
        let now = NOW_MS / 1000;
        assert!(accept(Some(&sig), b.as_bytes(), &w, now + 300).is_ok());
        assert_eq!(
            accept(Some(&sig), b.as_bytes(), &w, now + 301),
            Err(Rejection::Stale(301))
        );
        assert_eq!(
            accept(Some(&sig), b.as_bytes(), &w, now - 301),
            Err(Rejection::Stale(301))
        );
        // A stale, unsigned delivery learns only that it is unsigned.
        assert_eq!(
            accept(Some("00"), b.as_bytes(), &w, now + 3600),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn every_event_form_is_parsed_and_routed() {
        let routed = |event: &str, extra: &str| {
            let e = parse(body(event, extra).as_bytes()).unwrap();
            assert_eq!(e.model, "fraud");
            assert_eq!(e.timestamp_ms, NOW_MS);
            route(&e, "stagegate.")
        };
        assert_eq!(
            routed("MODEL_VERSION_CREATED", ""),
            Route::Created {
                version: Some("8".into())
            }
        );
        for event in [
            "MODEL_VERSION_TRANSITIONED_STAGE",
            "MODEL_VERSION_TRANSITIONED_TO_STAGING",
            "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION",
            "MODEL_VERSION_TRANSITIONED_TO_ARCHIVED",
            "TRANSITION_REQUEST_CREATED",
            "TRANSITION_REQUEST_TO_STAGING_CREATED",
            "TRANSITION_REQUEST_TO_PRODUCTION_CREATED",
            "TRANSITION_REQUEST_TO_ARCHIVED_CREATED",
            "REGISTERED_MODEL_CREATED",
        ] {
            let stages = r#","from_stage":"None","to_stage":"Staging""#;
            assert_eq!(routed(event, stages), Route::Reconcile, "{event}");
        }
        let e = parse(
            body(
                "MODEL_VERSION_TRANSITIONED_STAGE",
                r#","from_stage":"None","to_stage":"Staging""#,
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            (e.from_stage.as_deref(), e.to_stage.as_deref()),
            (Some("None"), Some("Staging"))
        );
        let tags = |keys: &str| format!(r#","tags":[{keys}]"#);
        assert_eq!(
            routed(
                "MODEL_VERSION_TAG_SET",
                &tags(r#"{"key":"stagegate.verdict","value":"passed"}"#)
            ),
            Route::Ignore("stagegate's own tag")
        );
        assert_eq!(
            routed(
                "MODEL_VERSION_TAG_SET",
                &tags(r#"{"key":"stagegate.verdict"},{"key":"owner"}"#)
            ),
            Route::Reconcile
        );
        assert_eq!(routed("MODEL_VERSION_TAG_SET", ""), Route::Reconcile);
        assert!(matches!(routed("COMMENT_CREATED", ""), Route::Ignore(_)));
        assert!(matches!(
            routed("MODEL_VERSION_SERVED_SOMEWHERE", ""),
            Route::Ignore(_)
        ));
    }

    #[test]
    fn malformed_payloads_name_what_is_wrong() {
        let reason = |b: &str| match parse(b.as_bytes()) {
            Err(Rejection::Malformed(r)) => r,
            other => panic!("{b}: {other:?}"),
        };
        assert!(reason("{not json").contains("key must be a string"));
        assert!(reason(r#"{"event_timestamp":1}"#).contains("event is missing"));
        assert!(
            reason(r#"{"event":"MODEL_VERSION_CREATED","model_name":"m"}"#)
                .contains("event_timestamp")
        );
        assert!(
            reason(
                r#"{"event":"MODEL_VERSION_CREATED","event_timestamp":"soon","model_name":"m"}"#
            )
            .contains("event_timestamp")
        );
        assert!(
            reason(r#"{"event":"MODEL_VERSION_CREATED","event_timestamp":1}"#)
                .contains("model_name")
        );
        // An unknown event needs no model: it is acknowledged and ignored.
        let e = parse(br#"{"event":"SOMETHING_NEW","event_timestamp":1}"#).unwrap();
        assert!(matches!(route(&e, "stagegate."), Route::Ignore(_)));
    }

    #[test]
    fn the_identity_is_the_events_own_and_each_field_counts() {
        let id = |b: &str| parse(b.as_bytes()).unwrap().identity();
        let base = body(
            "MODEL_VERSION_TRANSITIONED_STAGE",
            r#","to_stage":"Staging""#,
        );
        assert_eq!(
            id(&base),
            id(&base.replace("version 8 …", "version 8")),
            "the text is not identity"
        );
        assert_eq!(id(&base).len(), 64);
        for (from, to) in [
            ("c5596721253c4b429368cf6f4341b88a", "another-webhook"),
            ("TRANSITIONED_STAGE", "TRANSITIONED_TO_STAGING"),
            (r#""fraud""#, r#""fraud2""#),
            (r#""8""#, r#""9""#),
            (&NOW_MS.to_string(), &(NOW_MS + 1).to_string()),
            ("Staging", "Production"),
        ] {
            assert_ne!(id(&base), id(&base.replacen(from, to, 1)), "{from} → {to}");
        }
        // Field boundaries count: moving a character from one field to the next changes it.
        let a = Event {
            webhook_id: "ab".into(),
            event: "c".into(),
            ..parse(base.as_bytes()).unwrap()
        };
        let b = Event {
            webhook_id: "a".into(),
            event: "bc".into(),
            ..a.clone()
        };
        assert_ne!(a.identity(), b.identity());
    }
}
