//! Post-promotion analysis against a real Prometheus (Debian's package) scraping an exporter
//! whose values each test sets: what a query gives, and every way it gives no value.

use std::time::Duration;

use serde_json::json;
use stagegate::analysis::provider::{Credentials, Measurement, Query, Vars, measure};
use stagegate::secret::Secret;

use crate::common::block;
use crate::common::prometheus::{Exporter, Prometheus};

fn vars(model: &str, version: &str) -> Vars {
    Vars {
        model: model.into(),
        version: version.into(),
        previous: "1".into(),
        alias: "champion".into(),
        stage: String::new(),
    }
}

fn ask(q: &Query, v: &Vars, c: &Credentials) -> Measurement {
    block(measure(
        &reqwest::Client::new(),
        q,
        v,
        c,
        Duration::from_secs(5),
    ))
}

fn inconclusive(m: Measurement, says: &str) {
    match m {
        Measurement::Inconclusive(why) => {
            assert!(why.contains(says), "{why:?} should say {says:?}")
        }
        other => panic!("{other:?} should be inconclusive ({says})"),
    }
}

#[test]
fn prometheus_queries_give_one_value_or_say_why_not() {
    let exporter = Exporter::start();
    exporter.set(
        "model_error_rate",
        &[
            (r#"model="fraud",version="2""#, 0.004),
            (r#"model="fraud",version="1""#, 0.02),
            (r#"model="churn",version="5""#, f64::NAN),
        ],
    );
    let mut prom = Prometheus::start(&exporter);
    prom.wait_for(r#"model_error_rate{model="fraud",version="2"}"#, 0.004);
    let query = |q: &str| Query::Prometheus {
        address: prom.address(),
        query: q.into(),
    };
    let none = Credentials::None;

    // The template names the promoted version, and the one it replaced.
    let current = query(r#"model_error_rate{model="{model}",version="{version}"}"#);
    assert_eq!(
        ask(&current, &vars("fraud", "2"), &none),
        Measurement::Value(0.004)
    );
    let previous = query(r#"model_error_rate{model="{model}",version="{previous}"}"#);
    assert_eq!(
        ask(&previous, &vars("fraud", "2"), &none),
        Measurement::Value(0.02)
    );
    // An aggregation is one value; a bare selector over several series is not.
    let total = query(r#"sum(model_error_rate{model="{model}"})"#);
    match ask(&total, &vars("fraud", "2"), &none) {
        Measurement::Value(v) => assert!((v - 0.024).abs() < 1e-12, "{v}"),
        other => panic!("{other:?}"),
    }
    inconclusive(
        ask(
            &query(r#"model_error_rate{model="{model}"}"#),
            &vars("fraud", "2"),
            &none,
        ),
        "2 series",
    );
    // No series for a model that serves nothing yet; NaN; a scalar; a range vector; bad PromQL.
    inconclusive(ask(&current, &vars("fraud", "9"), &none), "no series");
    inconclusive(ask(&current, &vars("churn", "5"), &none), "NaN");
    assert_eq!(
        ask(&query("scalar(vector(2.5))"), &vars("m", "1"), &none),
        Measurement::Value(2.5)
    );
    inconclusive(
        ask(&query("model_error_rate[1m]"), &vars("m", "1"), &none),
        "matrix",
    );
    inconclusive(
        ask(&query("sum(model_error_rate"), &vars("m", "1"), &none),
        "parse error",
    );
    // A model name with a quote stays inside its string literal: no series, not a bad query.
    inconclusive(
        ask(
            &current,
            &vars(r#"fraud's"} or vector(1) or {x=""#, "2"),
            &none,
        ),
        "no series",
    );

    // Prometheus down: inconclusive, never a value.
    prom.stop();
    inconclusive(ask(&current, &vars("fraud", "2"), &none), "127.0.0.1");
}

#[test]
fn web_endpoints_give_the_number_at_the_pointer_with_credentials_from_the_caller() {
    let exporter = Exporter::start();
    exporter.set_json(
        json!({"models": {"fraud": {"p99_ms": 41.5, "errors": "NaN"}}}),
        Some("s3cret"),
    );
    let q = |pointer: &str| Query::Web {
        url: format!(
            "{}?model={{model}}&version={{version}}",
            exporter.json_url()
        ),
        pointer: pointer.into(),
    };
    let token = Credentials::Bearer(Secret::new("s3cret"));
    assert_eq!(
        ask(&q("/models/fraud/p99_ms"), &vars("fraud", "2"), &token),
        Measurement::Value(41.5)
    );
    inconclusive(
        ask(&q("/models/fraud/errors"), &vars("fraud", "2"), &token),
        "NaN",
    );
    inconclusive(
        ask(&q("/models/churn/p99_ms"), &vars("fraud", "2"), &token),
        "nothing there",
    );
    // Without the token: the endpoint's refusal, inconclusive, and the token is never shown.
    let refused = ask(
        &q("/models/fraud/p99_ms"),
        &vars("fraud", "2"),
        &Credentials::None,
    );
    inconclusive(refused, "401");
    let wrong = Credentials::Bearer(Secret::new("guess"));
    match ask(&q("/models/fraud/p99_ms"), &vars("fraud", "2"), &wrong) {
        Measurement::Inconclusive(why) => assert!(!why.contains("guess"), "{why}"),
        other => panic!("{other:?}"),
    }
}
