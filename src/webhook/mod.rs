//! Webhook deliveries, whatever sent them: the seam every source plugs into. No IO.
//!
//! A source ([`Source`]) verifies a delivery's signature over the raw bytes (before any
//! parsing), checks its timestamp against the tolerance, parses the event and says where it
//! leads ([`Route`]) and what identifies it for de-duplication. The receiver
//! (`daemon::http::webhooks`) does the rest the same way for every source: size limit,
//! de-duplication, enqueueing, metrics. A source also names the `[webhooks]` key of its
//! secrets, which the config then accepts, and describes its route for the OpenAPI document.
//! A new source is one module here plus one line in [`for_each`].
//!
//! The MLflow OSS source's functions stay reachable at this module's root (`webhook::verify`,
//! `webhook::parse`, …): the fuzz target and the load generator use them by those names.

pub mod databricks;
pub mod mlflow;

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use serde_json::Value;

use crate::secret::Secret;

pub use databricks::Databricks;
pub use mlflow::{
    DELIVERY_ID, Event, Headers, Mlflow, SIGNATURE, TIMESTAMP, parse, route, sign,
    signature_header, verify,
};

/// Why a delivery was refused. Each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The source has no secret configured: `sender` names it, `key` is its config key.
    #[error("{sender} webhooks are disabled: no webhooks.{key} configured")]
    NoSecrets {
        sender: &'static str,
        key: &'static str,
    },
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed {0} header")]
    MalformedHeader(&'static str),
    #[error("signature does not match any configured secret")]
    BadSignature,
    #[error("timestamp is {0}s away from now, beyond the tolerance")]
    Stale(u64),
    #[error("body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("malformed payload: {0}")]
    Malformed(String),
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::TooLarge(_) => 413,
            Rejection::Malformed(_) => 400,
            _ => 401,
        }
    }

    /// The `outcome` label of `stagegate_webhook_deliveries_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Rejection::BadSignature
            | Rejection::MissingHeader(_)
            | Rejection::MalformedHeader(_)
            | Rejection::NoSecrets { .. } => "unauthorized",
            Rejection::Stale(_) => "stale",
            Rejection::TooLarge(_) => "too_large",
            Rejection::Malformed(_) => "malformed",
        }
    }
}

/// What the receiver should do with an event. Triggers carry model names, never decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A new version: reconcile now, and re-check a few times (MLflow OSS sends no
    /// stage-transition event, so the moment a new version becomes a candidate is not announced).
    Created { version: Option<String> },
    /// Anything else about the model (a tag, an alias, a stage move): reconcile it. A changed
    /// tag is not a request to evaluate: the reconcile sees from the version's inputs
    /// fingerprint whether a candidate's verdict is stale, and leaves versions that are not
    /// candidates alone.
    Reconcile,
    /// Not ours to act on (our own tag writes, events we don't use).
    Ignore(&'static str),
}

/// A verified, parsed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Unique per delivery within its source (retries of one delivery repeat it): MLflow's
    /// delivery id, or a hash of a Databricks event's own identity.
    pub identity: String,
    /// The event's name as the source spells it (`model_version.created`, `MODEL_VERSION_CREATED`).
    pub event: String,
    /// The registered model; empty only for events routed to [`Route::Ignore`].
    pub model: String,
    pub route: Route,
}

/// What a source needs to judge a delivery besides its bytes.
pub struct Context<'a> {
    /// The secrets configured under the source's [`Source::SECRETS_KEY`].
    pub secrets: &'a [Secret],
    /// How far a delivery's timestamp may be from now (`webhooks.tolerance`).
    pub tolerance: Duration,
    /// stagegate's own tag prefix: tag events under it are our own writes echoing back.
    pub tag_prefix: &'a str,
    pub now_unix: u64,
}

/// One sender of webhooks.
pub trait Source: Send + Sync + 'static {
    /// `mlflow`, `databricks`: the metrics label, the store's `source` column, `/status`.
    const NAME: &'static str;

    /// The `[webhooks]` key that lists the secrets that may sign this source's deliveries
    /// (none = the source is disabled).
    const SECRETS_KEY: &'static str;

    /// Verify the signature over `body` as received, then the timestamp, then parse and
    /// route. `header` looks a request header up by its lower-case name.
    fn accept(
        header: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
        cx: &Context,
    ) -> Result<Delivery, Rejection>;

    /// How the OpenAPI document describes `POST /webhooks/{NAME}`.
    fn api() -> ApiDoc;
}

/// A source's receiver as the OpenAPI document describes it; the answers, shared by every
/// source, are the document's own.
pub struct ApiDoc {
    pub summary: &'static str,
    /// What is verified and how deliveries are told apart.
    pub description: &'static str,
    /// The request headers it reads, as OpenAPI parameter objects.
    pub headers: Vec<Value>,
    /// The payload's name among the document's schemas, and its schema (what is read of it).
    pub payload: (&'static str, Value),
}

/// A header parameter of an [`ApiDoc`].
pub fn api_header(name: &str, schema: Value, description: &str) -> Value {
    serde_json::json!({"name": name, "in": "header", "required": true, "schema": schema,
                       "description": description})
}

/// Something done with every source type (mount its route, accept its secrets key, describe
/// it), through [`for_each`].
pub trait ForEach {
    fn source<S: Source>(&mut self);
}

/// Every webhook source stagegate receives, in the order `/status`, the config's messages
/// and the OpenAPI document list them. A new source is its module plus one line here.
pub fn for_each(f: &mut impl ForEach) {
    f.source::<Mlflow>();
    f.source::<Databricks>();
}

/// Each source's [`Source::SECRETS_KEY`], in [`for_each`] order.
pub fn secret_keys() -> Vec<&'static str> {
    struct Keys(Vec<&'static str>);
    impl ForEach for Keys {
        fn source<S: Source>(&mut self) {
            self.0.push(S::SECRETS_KEY);
        }
    }
    let mut keys = Keys(Vec::new());
    for_each(&mut keys);
    keys.0
}

/// HMAC-SHA256 of the concatenated `parts`, keyed with the secret's UTF-8 bytes.
pub fn hmac_sha256(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any size");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Whether any of `given` equals the MAC `expected` computes for any secret, each comparison
/// in constant time (a length mismatch is refused without looking at the bytes).
pub fn any_secret_signed(
    secrets: &[Secret],
    given: &[Vec<u8>],
    expected: impl Fn(&Secret) -> Vec<u8>,
) -> bool {
    secrets.iter().any(|secret| {
        let want = expected(secret);
        given
            .iter()
            .any(|g| bool::from(g.as_slice().ct_eq(want.as_slice())))
    })
}

/// Refuse a timestamp (unix seconds) further than `tolerance` from now, in either direction.
pub fn check_fresh(ts_unix: u64, now_unix: u64, tolerance: Duration) -> Result<(), Rejection> {
    let skew = now_unix.abs_diff(ts_unix);
    if skew > tolerance.as_secs() {
        return Err(Rejection::Stale(skew));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_is_symmetric_and_inclusive() {
        let t = Duration::from_secs(300);
        assert_eq!(check_fresh(1000, 1300, t), Ok(()));
        assert_eq!(check_fresh(1000, 700, t), Ok(()));
        assert_eq!(check_fresh(1000, 1301, t), Err(Rejection::Stale(301)));
        assert_eq!(check_fresh(1000, 699, t), Err(Rejection::Stale(301)));
    }

    #[test]
    fn only_an_equal_mac_of_a_configured_secret_matches() {
        let secrets = vec![Secret::new("a"), Secret::new("b")];
        let mac = |s: &Secret| hmac_sha256(s.expose(), &[b"body"]);
        let of_b = hmac_sha256("b", &[b"body"]);
        assert!(any_secret_signed(
            &secrets,
            std::slice::from_ref(&of_b),
            mac
        ));
        assert!(!any_secret_signed(
            &secrets[..1],
            std::slice::from_ref(&of_b),
            mac
        ));
        assert!(!any_secret_signed(&secrets, &[of_b[..16].to_vec()], mac));
        assert!(!any_secret_signed(&[], &[of_b], mac));
    }

    #[test]
    fn every_source_has_its_own_name_and_secrets_key() {
        struct Seen(Vec<(&'static str, &'static str)>);
        impl ForEach for Seen {
            fn source<S: Source>(&mut self) {
                self.0.push((S::NAME, S::SECRETS_KEY));
            }
        }
        let mut seen = Seen(Vec::new());
        for_each(&mut seen);
        assert_eq!(
            seen.0,
            [("mlflow", "secrets"), ("databricks", "databricks_secrets")]
        );
        assert_eq!(secret_keys(), ["secrets", "databricks_secrets"]);
    }

    #[test]
    fn every_rejection_has_a_status_and_an_outcome() {
        let off = Rejection::NoSecrets {
            sender: "Databricks",
            key: "databricks_secrets",
        };
        assert_eq!((off.status(), off.outcome()), (401, "unauthorized"));
        assert_eq!(
            off.to_string(),
            "Databricks webhooks are disabled: no webhooks.databricks_secrets configured"
        );
        assert_eq!(Rejection::Stale(1).outcome(), "stale");
        assert_eq!(Rejection::Malformed("x".into()).status(), 400);
        assert_eq!(Rejection::TooLarge(1).status(), 413);
    }
}
