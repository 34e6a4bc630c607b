//! The MLflow REST client: the only module that speaks MLflow's protocol (URLs, JSON shapes,
//! auth, retries); everything else asks it in typed methods.
//!
//! [`client`] is the transport (auth, TLS, retries); this file maps each REST endpoint stagegate
//! uses to one typed method.

mod artifacts;
mod client;
mod error;
pub mod types;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use client::Root;
pub use client::{Auth, Client, RequestObserver, Settings, WriteGuard};
pub use error::MlflowError;
pub use types::{
    AliasRef, Dataset, LoggedModel, Metric, ModelVersion, RegisteredModel, Run, Webhook, latest,
};

/// Largest page `registered-models/search` serves.
const MODELS_PAGE: &str = "1000";
const VERSIONS_PAGE: &str = "1000";

#[derive(Deserialize)]
struct VersionEnvelope {
    model_version: ModelVersion,
}

#[derive(Deserialize)]
struct VersionsPage {
    #[serde(default)]
    model_versions: Vec<ModelVersion>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct ModelsPage {
    #[serde(default)]
    registered_models: Vec<RegisteredModel>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct WebhooksPage {
    #[serde(default)]
    webhooks: Vec<Webhook>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// One page of a paginated MLflow listing: its items and the token of the next page.
trait Page: serde::de::DeserializeOwned {
    type Item;
    fn into_parts(self) -> (Vec<Self::Item>, Option<String>);
}

impl Page for VersionsPage {
    type Item = ModelVersion;
    fn into_parts(self) -> (Vec<ModelVersion>, Option<String>) {
        (self.model_versions, self.next_page_token)
    }
}

impl Page for ModelsPage {
    type Item = RegisteredModel;
    fn into_parts(self) -> (Vec<RegisteredModel>, Option<String>) {
        (self.registered_models, self.next_page_token)
    }
}

impl Page for WebhooksPage {
    type Item = Webhook;
    fn into_parts(self) -> (Vec<Webhook>, Option<String>) {
        (self.webhooks, self.next_page_token)
    }
}

impl Client {
    // ---- reads -------------------------------------------------------------------------

    /// The registered model: its aliases and the newest version of each stage, with tags.
    pub async fn registered_model(&self, name: &str) -> Result<RegisteredModel, MlflowError> {
        #[derive(Deserialize)]
        struct Env {
            registered_model: RegisteredModel,
        }
        let e: Env = self
            .call(
                Method::GET,
                Root::Api,
                "registered-models/get",
                &[("name", name)],
                None,
            )
            .await?;
        Ok(e.registered_model)
    }

    pub async fn model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<ModelVersion, MlflowError> {
        let e: VersionEnvelope = self
            .call(
                Method::GET,
                Root::Api,
                "model-versions/get",
                &[("name", name), ("version", version)],
                None,
            )
            .await?;
        Ok(e.model_version)
    }

    /// Every version of a model, with tags (no aliases: search does not return them).
    pub async fn all_versions(&self, name: &str) -> Result<Vec<ModelVersion>, MlflowError> {
        self.search_versions(&format!("name={}", quote(name))).await
    }

    /// Versions across all models whose tag `key` equals `value`.
    pub async fn versions_with_tag(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<ModelVersion>, MlflowError> {
        self.search_versions(&format!("tags.`{key}` = {}", quote(value)))
            .await
    }

    /// `model-versions/search`, every page, in a stable order (the default order moves when a
    /// stage changes, which would skip or repeat versions across pages).
    async fn search_versions(&self, filter: &str) -> Result<Vec<ModelVersion>, MlflowError> {
        let q = [
            ("filter", filter),
            ("max_results", VERSIONS_PAGE),
            ("order_by", "name ASC"),
            ("order_by", "version_number ASC"),
        ];
        self.all_pages::<VersionsPage>("model-versions/search", &q)
            .await
    }

    /// All registered models (1000 a page), each with aliases and per-stage latest versions.
    pub async fn all_registered_models(&self) -> Result<Vec<RegisteredModel>, MlflowError> {
        self.all_pages::<ModelsPage>("registered-models/search", &[("max_results", MODELS_PAGE)])
            .await
    }

    /// The registered models whose names start with one of `prefixes` (every model for
    /// `None`), by name, each once. One search a prefix, side by side, with `name LIKE
    /// 'prefix%'`: a server may take `_` and `%` in it as wildcards, ignore case (SQLite) or
    /// match anywhere in the name (Databricks), all of which only return more, which the
    /// caller's globs then sort out.
    pub async fn registered_models(
        &self,
        prefixes: Option<&[String]>,
    ) -> Result<Vec<RegisteredModel>, MlflowError> {
        let Some(prefixes) = prefixes else {
            return self.all_registered_models().await;
        };
        let searches = prefixes.iter().map(|p| async move {
            let filter = format!("name LIKE {}", quote(&format!("{p}%")));
            let q = [("filter", filter.as_str()), ("max_results", MODELS_PAGE)];
            self.all_pages::<ModelsPage>("registered-models/search", &q)
                .await
        });
        let mut models: Vec<RegisteredModel> = match futures::future::try_join_all(searches).await {
            Ok(pages) => pages.into_iter().flatten().collect(),
            // A registry that refuses the filter (it is an old or a different server) is
            // listed whole: slower, never blind.
            Err(MlflowError::Api {
                status: 400,
                message,
                ..
            }) => {
                tracing::warn!(%message, "the registry refused a name filter; listing every model");
                return self.all_registered_models().await;
            }
            Err(e) => return Err(e),
        };
        models.sort_by(|a, b| a.name.cmp(&b.name));
        models.dedup_by(|a, b| a.name == b.name);
        Ok(models)
    }

    /// Every item of a paginated listing, following `next_page_token`.
    async fn all_pages<P: Page>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<P::Item>, MlflowError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = query.to_vec();
            if let Some(t) = &token {
                q.push(("page_token", t));
            }
            let (items, next) = self
                .call::<P>(Method::GET, Root::Api, path, &q, None)
                .await?
                .into_parts();
            out.extend(items);
            match next.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    pub async fn run(&self, run_id: &str) -> Result<Run, MlflowError> {
        #[derive(Deserialize)]
        struct Env {
            run: Run,
        }
        let e: Env = self
            .call(
                Method::GET,
                Root::Api,
                "runs/get",
                &[("run_id", run_id)],
                None,
            )
            .await?;
        Ok(e.run)
    }

    /// An MLflow 3 logged model (for metrics linked to the model rather than the run).
    pub async fn logged_model(&self, model_id: &str) -> Result<LoggedModel, MlflowError> {
        #[derive(Deserialize)]
        struct Env {
            model: LoggedModel,
        }
        let path = format!("logged-models/{model_id}");
        let e: Env = self.call(Method::GET, Root::Api, &path, &[], None).await?;
        Ok(e.model)
    }

    /// A file of a version's model (`MLmodel`, `serving_input_example.json`, …) for both
    /// MLflow 2 (`runs:/`) and MLflow 3 (`models:/m-…`) sources. `None` when it does not exist.
    ///
    /// `model-versions/get-artifact` serves `models:/m-…` sources, but for a `runs:/` source on a
    /// server with proxied artifacts (`mlflow-artifacts:/`) it fails with a 500 (MLflow 3.17),
    /// so run sources are read through the run's own `get-artifact`.
    pub async fn version_artifact(
        &self,
        v: &ModelVersion,
        path: &str,
    ) -> Result<Option<Vec<u8>>, MlflowError> {
        let result = match run_source(&v.source) {
            Some((run_id, dir)) => {
                let full = if dir.is_empty() {
                    path.to_string()
                } else {
                    format!("{dir}/{path}")
                };
                let q = [("run_id", run_id), ("path", full.as_str())];
                self.call_raw(Method::GET, Root::Server, "get-artifact", &q, None)
                    .await
            }
            None => {
                let q = [
                    ("name", v.name.as_str()),
                    ("version", v.version.as_str()),
                    ("path", path),
                ];
                self.call_raw(
                    Method::GET,
                    Root::Server,
                    "model-versions/get-artifact",
                    &q,
                    None,
                )
                .await
            }
        };
        match result {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.is_not_found() => Ok(None),
            // A server that leaves its artifact store to its clients (`--no-serve-artifacts`)
            // may have no access to it: read the file from the store ourselves.
            Err(e @ MlflowError::Api { status: 500, .. }) => self.direct_artifact(v, path, e).await,
            Err(e) => Err(e),
        }
    }

    /// A cheap authenticated read: proves the server is up and our credentials work.
    pub async fn ping(&self) -> Result<(), MlflowError> {
        let _: Value = self
            .call(
                Method::GET,
                Root::Api,
                "registered-models/search",
                &[("max_results", "1")],
                None,
            )
            .await?;
        Ok(())
    }

    // ---- writes (all idempotent, so a retried request is harmless) ----------------------

    pub async fn set_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<(), MlflowError> {
        let body = json!({"name": name, "version": version, "key": key, "value": value});
        let _: Value = self
            .call(
                Method::POST,
                Root::Api,
                "model-versions/set-tag",
                &[],
                Some(&body),
            )
            .await?;
        Ok(())
    }

    /// Deleting a tag that is not there is not an error.
    pub async fn delete_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
    ) -> Result<(), MlflowError> {
        let body = json!({"name": name, "version": version, "key": key});
        match self
            .call::<Value>(
                Method::DELETE,
                Root::Api,
                "model-versions/delete-tag",
                &[],
                Some(&body),
            )
            .await
        {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    /// Move a version to `stage`; with `archive_existing`, MLflow archives the versions already
    /// in that stage in the same database transaction.
    pub async fn transition_stage(
        &self,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing: bool,
    ) -> Result<ModelVersion, MlflowError> {
        let body = json!({
            "name": name, "version": version, "stage": stage,
            "archive_existing_versions": archive_existing,
        });
        let e: VersionEnvelope = self
            .call(
                Method::POST,
                Root::Api,
                "model-versions/transition-stage",
                &[],
                Some(&body),
            )
            .await?;
        Ok(e.model_version)
    }

    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), MlflowError> {
        let body = json!({"name": name, "alias": alias, "version": version});
        let _: Value = self
            .call(
                Method::POST,
                Root::Api,
                "registered-models/alias",
                &[],
                Some(&body),
            )
            .await?;
        Ok(())
    }

    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<(), MlflowError> {
        let body = json!({"name": name, "alias": alias});
        let _: Value = self
            .call(
                Method::DELETE,
                Root::Api,
                "registered-models/alias",
                &[],
                Some(&body),
            )
            .await?;
        Ok(())
    }

    // ---- webhooks (MLflow >= 3.3, SQL backend) ------------------------------------------

    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, MlflowError> {
        self.all_pages::<WebhooksPage>("webhooks", &[("max_results", "1000")])
            .await
            .map_err(no_webhooks_api)
    }

    /// Whether the server offers the webhooks API: a one-item list succeeds (`true`), or the
    /// route does not exist (`false`: MLflow before 3.3). Any other failure (no admin right,
    /// a file-store backend, the server down) is returned as it is: it says nothing either way.
    pub async fn has_webhooks_api(&self) -> Result<bool, MlflowError> {
        let probe: Result<Value, _> = self
            .call(
                Method::GET,
                Root::Api,
                "webhooks",
                &[("max_results", "1")],
                None,
            )
            .await;
        match probe.map_err(no_webhooks_api) {
            Ok(_) => Ok(true),
            Err(MlflowError::NoWebhooksApi { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn create_webhook(&self, body: &Value) -> Result<Webhook, MlflowError> {
        #[derive(Deserialize)]
        struct Env {
            webhook: Webhook,
        }
        let e: Env = self
            .call(Method::POST, Root::Api, "webhooks", &[], Some(body))
            .await
            .map_err(no_webhooks_api)?;
        Ok(e.webhook)
    }

    pub async fn delete_webhook(&self, id: &str) -> Result<(), MlflowError> {
        let path = format!("webhooks/{id}");
        let _: Value = self
            .call(Method::DELETE, Root::Api, &path, &[], None)
            .await?;
        Ok(())
    }

    pub async fn update_webhook(&self, id: &str, body: &Value) -> Result<Webhook, MlflowError> {
        #[derive(Deserialize)]
        struct Env {
            webhook: Webhook,
        }
        let path = format!("webhooks/{id}");
        let e: Env = self
            .call(Method::PATCH, Root::Api, &path, &[], Some(body))
            .await?;
        Ok(e.webhook)
    }
}

/// `runs:/<run_id>/<path>` → `(run_id, path)`.
pub(super) fn run_source(source: &str) -> Option<(&str, &str)> {
    let rest = source.strip_prefix("runs:/")?;
    let rest = rest.trim_start_matches('/');
    let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
    (!run_id.is_empty()).then_some((run_id, path.trim_matches('/')))
}

/// Quote a string literal for an MLflow search filter.
fn quote(s: &str) -> String {
    if s.contains('\'') {
        format!("\"{}\"", s.replace('"', "\\\""))
    } else {
        format!("'{s}'")
    }
}

/// A 404 that is not MLflow's own JSON error (its codes are never the bare reason phrase)
/// means the route does not exist: a server from before webhooks.
fn no_webhooks_api(e: MlflowError) -> MlflowError {
    match e {
        MlflowError::Api {
            endpoint,
            status: 404,
            error_code,
            ..
        } if error_code == "NOT_FOUND" => MlflowError::NoWebhooksApi { endpoint },
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_sources_split_into_run_and_path() {
        assert_eq!(run_source("runs:/abc/model"), Some(("abc", "model")));
        assert_eq!(
            run_source("runs:/abc/sub/model/"),
            Some(("abc", "sub/model"))
        );
        assert_eq!(run_source("runs:/abc"), Some(("abc", "")));
        assert_eq!(run_source("models:/m-1"), None);
    }

    #[test]
    fn filter_quoting() {
        assert_eq!(quote("m"), "'m'");
        assert_eq!(quote("it's"), "\"it's\"");
    }

    #[test]
    fn a_server_without_the_webhooks_api_is_named_as_such() {
        let html = MlflowError::Api {
            endpoint: "webhooks".into(),
            status: 404,
            error_code: "NOT_FOUND".into(),
            message: "404 Not Found".into(),
        };
        let e = no_webhooks_api(html);
        let text = e.to_string();
        assert!(matches!(e, MlflowError::NoWebhooksApi { .. }), "{text}");
        assert!(
            text.contains("MLflow 3.3") && text.contains("poll"),
            "{text}"
        );
        // MLflow's own 404 (an unknown webhook id) stays what it is.
        let own = MlflowError::Api {
            endpoint: "webhooks/abc".into(),
            status: 404,
            error_code: "RESOURCE_DOES_NOT_EXIST".into(),
            message: "Webhook abc not found".into(),
        };
        assert!(matches!(no_webhooks_api(own), MlflowError::Api { .. }));
    }
}
