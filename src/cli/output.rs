//! Rendering for people (aligned tables) and for machines (one JSON document), both on stdout.

use serde_json::{Value, json};

use stagegate::engine::Outcome;

/// A JSON value as a table cell: a string as it is, null as `-`, anything else as JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
                .max(header[i].len())
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n") + "\n"
}

/// The human summary of an evaluation.
pub fn evaluation_text(o: &Outcome) -> String {
    let e = &o.evaluation;
    let champion = e
        .champion
        .as_ref()
        .map(|c| format!("v{c}"))
        .unwrap_or_else(|| "none".into());
    let mut s = format!(
        "{} v{}  policy {} (digest {})  champion {}\n\n",
        e.model, e.version, e.policy, e.policy_digest, champion
    );
    let rows: Vec<Vec<String>> = e
        .gates
        .iter()
        .map(|g| {
            let result = if g.enforced {
                g.outcome.as_str().to_string()
            } else {
                format!("{} (shadow)", g.outcome.as_str())
            };
            vec![
                g.name.clone(),
                g.gate_type.to_string(),
                result,
                format!("{}ms", g.duration_ms),
                g.message.clone(),
            ]
        })
        .collect();
    s.push_str(&table(
        &["GATE", "TYPE", "RESULT", "TIME", "MESSAGE"],
        &rows,
    ));
    s.push_str(&format!(
        "\nverdict: {}\naction:  {}\n",
        e.verdict.as_str(),
        action_text(o)
    ));
    s
}

/// The action line: what was done, or why nothing could be.
pub fn action_text(o: &Outcome) -> String {
    match &o.act_error {
        Some(err) => format!("none ({err})"),
        None => o.decision.action_tag(),
    }
}

/// An observed value or threshold for people: numbers as gate messages show them, strings
/// bare, nothing as `-`, a table as `key value` pairs without its unset keys, lists as
/// compact JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => n
            .as_f64()
            .map_or_else(|| n.to_string(), stagegate::gates::num),
        Value::String(s) => s.clone(),
        Value::Object(map) => {
            let pairs: Vec<String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| match v {
                    Value::Object(_) | Value::Array(_) => format!("{k} {v}"),
                    scalar => format!("{k} {}", value_text(scalar)),
                })
                .collect();
            if pairs.is_empty() {
                "-".into()
            } else {
                pairs.join(", ")
            }
        }
        Value::Array(_) | Value::Bool(_) => v.to_string(),
    }
}

/// The `--json` document (shape documented in the README).
pub fn evaluation_json(o: &Outcome, mlflow_requests: u64) -> Value {
    let e = &o.evaluation;
    json!({
        "model": e.model,
        "version": e.version,
        "policy": e.policy,
        "policy_digest": e.policy_digest,
        "verdict": e.verdict,
        "gates": e.gates,
        "action": action_text(o),
        "champion": e.champion,
        "evaluated_at": e.evaluated_at,
        "duration_ms": e.duration_ms,
        "serving": e.serving,
        "datasets": e.datasets,
        "error": o.act_error.as_ref().map(|err| err.to_string()),
        "mlflow_requests": mlflow_requests,
    })
}

/// The `--json` document when no evaluation could be made.
pub fn error_json(model: &str, version: Option<&str>, error: &str) -> Value {
    json!({
        "model": model, "version": version, "policy": null, "verdict": "error",
        "gates": [], "action": null, "error": error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let t = table(
            &["A", "BB"],
            &[vec!["xxx".into(), "y".into()], vec!["z".into(), "w".into()]],
        );
        assert_eq!(t, "A    BB\nxxx  y\nz    w\n");
    }

    #[test]
    fn values_read_as_in_messages() {
        assert_eq!(value_text(&json!(0.9133333333333333)), "0.913333");
        assert_eq!(value_text(&json!(200)), "200");
        assert_eq!(value_text(&json!("approved")), "approved");
        assert_eq!(value_text(&Value::Null), "-");
        assert_eq!(value_text(&json!({"min": 0.85, "max": null})), "min 0.85");
        assert_eq!(
            value_text(&json!({"p99_ms": 10.0, "requests": 200})),
            "p99_ms 10, requests 200"
        );
        assert_eq!(
            value_text(&json!({"required": {"approval": ["approved"]}})),
            "required {\"approval\":[\"approved\"]}"
        );
        assert_eq!(value_text(&json!(["a", "b"])), "[\"a\",\"b\"]");
    }
}
