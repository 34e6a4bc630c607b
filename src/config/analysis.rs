//! `[policies.analysis]`: what to watch after a promotion, and what to do when it goes wrong
//! (Argo Rollouts' AnalysisTemplate, for model versions). Each metric is a query to a provider,
//! judged against `min`/`max`; credentials are named by environment variable, never written in
//! the file.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    /// Time between two measurements.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Measurements of each metric; the analysis passes after the last.
    pub count: u32,
    /// Time from the promotion to the first measurement.
    #[serde(default, with = "duration")]
    pub initial_delay: Duration,
    /// Failed measurements of a metric tolerated.
    #[serde(default)]
    pub failure_limit: u32,
    /// Inconclusive measurements of a metric tolerated (empty result, NaN, no answer).
    #[serde(default)]
    pub inconclusive_limit: u32,
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Also watch a promotion made by hand that stagegate noticed as a bypass.
    #[serde(default)]
    pub after_bypass: bool,
    /// Bound of one query.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    pub metrics: Vec<Metric>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Restore the replaced champion, as `stagegate rollback` does.
    #[default]
    Rollback,
    /// Report only; move nothing.
    Notify,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Prometheus,
    Web,
}

/// One metric. The provider's own keys are checked against `provider` by [`Analysis::check`]
/// (one flat table reads better in TOML than a nested one per provider).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    pub name: String,
    pub provider: ProviderKind,
    /// prometheus: the server's base URL.
    #[serde(default)]
    pub address: Option<String>,
    /// prometheus: PromQL, with `{model}`, `{version}`, `{previous}`, `{alias}`, `{stage}`.
    #[serde(default)]
    pub query: Option<String>,
    /// web: the URL to GET, with the same placeholders.
    #[serde(default)]
    pub url: Option<String>,
    /// web: a JSON pointer (RFC 6901) to the number in the answer.
    #[serde(default)]
    pub pointer: Option<String>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// The environment variable holding a bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// The environment variables holding a basic-auth user and password.
    #[serde(default)]
    pub username_env: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
}

impl Analysis {
    /// The first problem, as `(key path under the analysis table, reason)`.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.interval < Duration::from_secs(1) {
            return Err(("interval".into(), "must be at least 1s".into()));
        }
        if self.count == 0 {
            return Err(("count".into(), "must be at least 1".into()));
        }
        if self.timeout.is_zero() {
            return Err(("timeout".into(), "must be more than 0s".into()));
        }
        if self.metrics.is_empty() {
            return Err((
                "metrics".into(),
                "at least one [[…analysis.metrics]] table is required".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, m) in self.metrics.iter().enumerate() {
            let at = |k: &str| format!("metrics[{i}]{k}");
            if m.name.trim().is_empty() {
                return Err((at(".name"), "must not be empty".into()));
            }
            if !names.insert(m.name.as_str()) {
                return Err((at(".name"), format!("duplicate metric name {:?}", m.name)));
            }
            m.check().map_err(|(k, r)| (at(&k), r))?;
        }
        Ok(())
    }
}

impl Metric {
    fn check(&self) -> Result<(), (String, String)> {
        match (self.min, self.max) {
            (None, None) => return Err(("".into(), "set `min`, `max` or both".into())),
            (Some(lo), Some(hi)) if lo > hi => {
                return Err((".min".into(), format!("min {lo} is above max {hi}")));
            }
            _ => {}
        }
        if [self.min, self.max]
            .iter()
            .flatten()
            .any(|v| !v.is_finite())
        {
            return Err(("".into(), "`min` and `max` must be finite numbers".into()));
        }
        type Keys<'a> = &'a [(&'a str, &'a Option<String>)];
        let (needs, refuses): (Keys, Keys) = match self.provider {
            ProviderKind::Prometheus => (
                &[("address", &self.address), ("query", &self.query)],
                &[("url", &self.url), ("pointer", &self.pointer)],
            ),
            ProviderKind::Web => (
                &[("url", &self.url), ("pointer", &self.pointer)],
                &[("address", &self.address), ("query", &self.query)],
            ),
        };
        let provider = format!("{:?}", self.provider).to_lowercase();
        for (key, v) in needs {
            if v.as_deref().is_none_or(|s| s.trim().is_empty()) {
                return Err((
                    format!(".{key}"),
                    format!("required with provider = \"{provider}\""),
                ));
            }
        }
        for (key, v) in refuses {
            if v.is_some() {
                return Err((
                    format!(".{key}"),
                    format!("not a key of provider = \"{provider}\""),
                ));
            }
        }
        let base = self
            .address
            .as_deref()
            .or(self.url.as_deref())
            .unwrap_or_default();
        let key = if self.address.is_some() {
            ".address"
        } else {
            ".url"
        };
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err((key.into(), format!("{base:?} is not an http(s) URL")));
        }
        if let Some(p) = &self.pointer
            && !(p.is_empty() || p.starts_with('/'))
        {
            return Err((
                ".pointer".into(),
                format!("{p:?} is not a JSON pointer (it starts with /)"),
            ));
        }
        match (&self.token_env, &self.username_env, &self.password_env) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err((
                ".token_env".into(),
                "a bearer token or a user and password, not both".into(),
            )),
            (None, Some(_), None) | (None, None, Some(_)) => Err((
                ".username_env".into(),
                "basic auth needs both `username_env` and `password_env`".into(),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::config::Policy;

    fn policy(analysis: Option<serde_json::Value>) -> Policy {
        let mut p = json!({
            "name": "p",
            "candidate": {"alias": "challenger"},
            "promote": {"alias": "champion"},
            "gates": [{"name": "acc", "type": "metric", "metric": "acc", "min": 0.8}],
        });
        if let Some(a) = analysis {
            p["analysis"] = a;
        }
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn an_analysis_changes_no_digest_and_is_still_serialised() {
        let a = json!({"interval": "5s", "count": 3, "metrics": [
            {"name": "e", "provider": "prometheus", "address": "http://p:9090", "query": "up", "max": 0.1}]});
        let with = policy(Some(a));
        let without = policy(None);
        // Candidates judged before an analysis was added (or changed) stay current.
        assert_eq!(with.digest(), without.digest());
        assert_eq!(
            serde_json::to_value(&with).unwrap()["analysis"]["count"],
            json!(3)
        );
        assert!(
            serde_json::to_value(&without)
                .unwrap()
                .get("analysis")
                .is_none()
        );
    }
}
