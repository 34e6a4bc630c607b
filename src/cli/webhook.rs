//! `stagegate webhook register --url URL`: create or update (idempotently, by name) the MLflow
//! webhook that tells the daemon about registry events, signed with the first secret.

use super::stdout::outln;
use std::path::Path;

use serde_json::json;
use stagegate::webhook::{Mlflow, Source};

/// The registry events a reconcile can care about (there is no stage-transition event).
const EVENTS: [(&str, &str); 5] = [
    ("MODEL_VERSION", "CREATED"),
    ("MODEL_VERSION_TAG", "SET"),
    ("MODEL_VERSION_TAG", "DELETED"),
    ("MODEL_VERSION_ALIAS", "CREATED"),
    ("MODEL_VERSION_ALIAS", "DELETED"),
];

pub async fn register(config: Option<&Path>, url: &str, name: &str) -> anyhow::Result<u8> {
    let loaded = super::load_config(config)?;
    let Some(secret) = loaded
        .config
        .webhooks
        .secrets_of(Mlflow::SECRETS_KEY)
        .first()
    else {
        anyhow::bail!(
            "{}: webhooks.secrets is empty: add a secret (the first one signs deliveries)",
            loaded.path.display()
        );
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        anyhow::bail!(
            "--url {url:?} is not an http(s) URL (e.g. http://stagegate:8080/webhooks/mlflow)"
        );
    }
    let client = super::client(&loaded)?;
    let events: Vec<_> = EVENTS
        .iter()
        .map(|(entity, action)| json!({"entity": entity, "action": action}))
        .collect();
    let body = json!({
        "name": name, "url": url, "events": events, "secret": secret.expose(), "status": "ACTIVE",
        "description": "stagegate: registry events for model promotion gating",
    });
    let existing = client
        .list_webhooks()
        .await?
        .into_iter()
        .find(|w| w.name == name);
    let (verb, hook) = match existing {
        Some(w) => (
            "updated",
            client.update_webhook(&w.webhook_id, &body).await?,
        ),
        None => ("created", client.create_webhook(&body).await?),
    };
    outln!(
        "{verb} MLflow webhook {:?} ({}) -> {}",
        hook.name,
        hook.webhook_id,
        hook.url
    )?;
    outln!(
        "events: {}",
        EVENTS
            .iter()
            .map(|(e, a)| format!("{}.{}", e.to_lowercase(), a.to_lowercase()))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    outln!(
        "\nThe MLflow server must run with (MLflow >= 3.3, SQL backend):\n\
         \x20 MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=<a fixed Fernet key>   # or stored secrets are lost at restart / differ across workers\n\
         \x20 MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https                    # if the URL is plain http\n\
         \x20 MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true                        # if the URL is loopback or a private address\n\
         \x20 --allowed-hosts <stagegate's host>                           # if stagegate reaches MLflow by a DNS name\n\
         MLflow caches its webhook list for 60 s (MLFLOW_WEBHOOK_CACHE_TTL): events can take that long to start.\n\
         Webhooks are hints (3 quick retries, then lost); the reconcile poll is the guarantee."
    )?;
    Ok(0)
}
