//! `[webhooks]`: each webhook source's signing secrets under the key the source names (its
//! `Source::SECRETS_KEY`: `secrets` for MLflow OSS, `databricks_secrets`), and the settings
//! every source shares. The keys come from the list of sources, so a new source needs nothing
//! here; any other key is refused, as in every other table.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::{Secret, duration};
use crate::webhook;

#[derive(Debug, Clone, Serialize)]
pub struct WebhooksConfig {
    /// Secrets by source key; any one of a source's may sign its deliveries, none disables it.
    #[serde(skip_serializing)]
    secrets: BTreeMap<String, Vec<Secret>>,
    #[serde(with = "duration")]
    pub tolerance: Duration,
    /// How long delivery ids are remembered for de-duplication.
    #[serde(with = "duration")]
    pub dedupe_retention: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            secrets: BTreeMap::new(),
            tolerance: Duration::from_secs(300),
            dedupe_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl WebhooksConfig {
    /// The secrets under a source's key (empty: the source is disabled).
    pub fn secrets_of(&self, key: &str) -> &[Secret] {
        self.secrets.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// Set the secrets under `key` (tests, and tools building a config in code).
    pub fn with_secrets(mut self, key: &str, secrets: Vec<Secret>) -> Self {
        self.secrets.insert(key.to_string(), secrets);
        self
    }
}

/// Every key `[webhooks]` accepts, for the "expected one of" of an unknown one: each source's
/// secrets key, then the shared settings.
fn keys() -> &'static [&'static str] {
    static KEYS: OnceLock<Vec<&'static str>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = webhook::secret_keys();
        keys.extend(["tolerance", "dedupe_retention"]);
        keys
    })
}

/// A duration value, read where figment can still name its key when it is refused.
#[derive(Deserialize)]
#[serde(transparent)]
struct Dur(#[serde(with = "duration")] Duration);

impl<'de> Deserialize<'de> for WebhooksConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Table;
        impl<'de> Visitor<'de> for Table {
            type Value = WebhooksConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the [webhooks] table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WebhooksConfig, A::Error> {
                let mut w = WebhooksConfig::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "tolerance" => w.tolerance = map.next_value::<Dur>()?.0,
                        "dedupe_retention" => w.dedupe_retention = map.next_value::<Dur>()?.0,
                        k if keys().contains(&k) => {
                            let secrets = map.next_value()?;
                            w.secrets.insert(key, secrets);
                        }
                        _ => return Err(A::Error::unknown_field(&key, keys())),
                    }
                }
                Ok(w)
            }
        }
        d.deserialize_map(Table)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::from_text;

    const POLICY: &str = "[[policies]]\nname = \"p\"\ncandidate = { stage = \"Staging\" }\npromote = { stage = \"Production\" }\n";

    fn load(webhooks: &str, env: &[(&str, &str)]) -> Result<super::WebhooksConfig, String> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        from_text(&format!("[webhooks]\n{webhooks}\n{POLICY}"), "s.toml", env)
            .map(|c| c.webhooks)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn each_sources_secrets_are_read_under_its_key() {
        let w = load(
            "secrets = [\"a\", \"b\"]\ndatabricks_secrets = [\"d\"]\ntolerance = \"1m\"",
            &[],
        )
        .unwrap();
        let exposed = |key| {
            w.secrets_of(key)
                .iter()
                .map(|s| s.expose().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(exposed("secrets"), ["a", "b"]);
        assert_eq!(exposed("databricks_secrets"), ["d"]);
        assert_eq!(w.tolerance, std::time::Duration::from_secs(60));
        let w = load("", &[("STAGEGATE_WEBHOOKS__DATABRICKS_SECRETS", "[e]")]).unwrap();
        assert_eq!(w.secrets_of("databricks_secrets")[0].expose(), "e");
        assert!(w.secrets_of("secrets").is_empty());
        assert_eq!(
            w.dedupe_retention,
            std::time::Duration::from_secs(7 * 24 * 3600)
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_their_key() {
        let e = load("secret = [\"a\"]", &[]).unwrap_err();
        assert_eq!(
            e,
            "s.toml: webhooks.secret: unknown key `secret` (expected one of: secrets, \
             databricks_secrets, tolerance, dedupe_retention)"
        );
        let e = load("tolerance = \"soon\"", &[]).unwrap_err();
        assert!(
            e.starts_with("s.toml: webhooks.tolerance: unparsable duration"),
            "{e}"
        );
        let e = load("databricks_secrets = \"d\"", &[]).unwrap_err();
        assert!(
            e.starts_with("s.toml: webhooks.databricks_secrets: invalid type"),
            "{e}"
        );
        let e = load("secrets = [\"\"]", &[]).unwrap_err();
        assert_eq!(e, "s.toml: webhooks.secrets[0]: a secret must not be empty");
    }
}
