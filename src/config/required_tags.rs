//! `required` of the `tags` gate: tag keys that must be present, or a table of tag keys and
//! the values each accepts (a person's `approval = "approved"`). Read by hand so that a bad
//! value names its tag and the reason.

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `required = ["owner", …]` (presence) or `required = { approval = "approved", risk = ["low",
/// "medium"] }` (a string = that exact value, a list = any of these values).
///
/// Serialised as written, a list or a table, so a presence-only policy keeps its digest; the
/// accepted values are sorted and de-duplicated, so only a change of meaning changes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RequiredTags {
    Present(Vec<String>),
    Values(BTreeMap<String, Vec<String>>),
}

impl RequiredTags {
    /// Each required key with its accepted values (`None` = any non-empty value), in order.
    pub fn entries(&self) -> Vec<(&str, Option<&[String]>)> {
        match self {
            RequiredTags::Present(keys) => keys.iter().map(|k| (k.as_str(), None)).collect(),
            RequiredTags::Values(map) => map
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_slice())))
                .collect(),
        }
    }
}

impl<'de> Deserialize<'de> for RequiredTags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected = "a list of tag keys, or a table of tag key = value or [values]";
        match Value::deserialize(d)? {
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(k) => Ok(k),
                    other => Err(D::Error::custom(format!(
                        "tag keys must be strings, found {other}"
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(RequiredTags::Present),
            Value::Object(table) => table
                .into_iter()
                .map(|(key, v)| accepted_values(&key, v).map(|vals| (key, vals)))
                .collect::<Result<_, String>>()
                .map(RequiredTags::Values)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "expected {expected}, found {other}"
            ))),
        }
    }
}

/// The values a `required` table accepts for `key`: one string, or a non-empty list of them.
fn accepted_values(key: &str, v: Value) -> Result<Vec<String>, String> {
    let bad = |why: String| Err(format!("tag `{key}`: {why}"));
    let mut values = match v {
        Value::String(s) => vec![s],
        Value::Array(items) if items.is_empty() => {
            return bad("list at least one accepted value".into());
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => out.push(s),
                    other => return bad(format!("accepted values must be strings, found {other}")),
                }
            }
            out
        }
        other => {
            return bad(format!(
                "expected a value (string) or a list of values, found {other}"
            ));
        }
    };
    if values.iter().any(|s| s.trim().is_empty()) {
        return bad(
            "an accepted value must not be empty (a list of keys requires presence)".into(),
        );
    }
    values.sort();
    values.dedup();
    Ok(values)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::{GateKind, Policy};

    fn tags_policy(required: Value) -> Result<Policy, String> {
        serde_json::from_value(json!({
            "name": "p",
            "candidate": {"stage": "Staging"},
            "promote": {"stage": "Production"},
            "gates": [{"name": "sign-off", "type": "tags", "required": required}],
        }))
        .map_err(|e| e.to_string())
    }

    fn required(p: &Policy) -> RequiredTags {
        match &p.gates[0].kind {
            GateKind::Tags(t) => t.required.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn required_tags_take_a_list_or_a_table_of_values() {
        let list = tags_policy(json!(["owner"])).unwrap();
        assert_eq!(required(&list).entries(), [("owner", None)]);
        // A presence-only gate serialises as before: its policy digest did not change.
        assert_eq!(
            serde_json::to_value(&list.gates[0]).unwrap()["required"],
            json!(["owner"])
        );
        let table =
            tags_policy(json!({"approval": "approved", "risk": ["medium", "low", "low"]})).unwrap();
        let low_medium = ["low".to_string(), "medium".to_string()];
        assert_eq!(
            required(&table).entries(),
            [
                ("approval", Some(&["approved".to_string()][..])),
                ("risk", Some(&low_medium[..]))
            ]
        );
    }

    #[test]
    fn the_digest_follows_the_required_values() {
        let digest = |r: Value| tags_policy(r).unwrap().digest();
        let base = digest(json!({"approval": "approved"}));
        assert_ne!(base, digest(json!({"approval": "signed"})));
        assert_ne!(base, digest(json!(["approval"])));
        assert_ne!(base, digest(json!({"approval": ["approved", "waived"]})));
        // Order and repeats of accepted values do not change the meaning, nor the digest.
        assert_eq!(
            digest(json!({"risk": ["low", "medium"]})),
            digest(json!({"risk": ["medium", "low", "medium"]}))
        );
    }

    #[test]
    fn bad_required_values_name_the_key_and_reason() {
        let cases = [
            (
                json!({"risk": []}),
                "tag `risk`: list at least one accepted value",
            ),
            (
                json!({"risk": ["low", 3]}),
                "tag `risk`: accepted values must be strings, found 3",
            ),
            (
                json!({"approval": true}),
                "tag `approval`: expected a value (string) or a list of values, found true",
            ),
            (
                json!({"approval": " "}),
                "tag `approval`: an accepted value must not be empty",
            ),
            (json!(["owner", 1]), "tag keys must be strings, found 1"),
            (json!("owner"), "expected a list of tag keys, or a table"),
        ];
        for (input, want) in cases {
            let e = tags_policy(input.clone()).unwrap_err();
            assert!(
                e.contains("gate `sign-off`") && e.contains("`required`") && e.contains(want),
                "{input}: {e}"
            );
        }
    }
}
