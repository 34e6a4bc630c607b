use serde_json::json;

use super::*;

fn value(v: f64) -> Measurement {
    Measurement::Value(v)
}

fn is_inconclusive(m: &Measurement, says: &str) -> bool {
    matches!(m, Measurement::Inconclusive(why) if why.contains(says))
}

#[test]
fn placeholders_are_filled_in_the_quoting_of_the_language() {
    let vars = Vars {
        model: r#"fraud "eu"\x"#.into(),
        version: "7".into(),
        previous: "6".into(),
        alias: "champion".into(),
        stage: String::new(),
    };
    assert_eq!(
        vars.fill(
            r#"rate(x{model="{model}",v="{version}",p="{previous}"}[5m]) {alias}{stage}"#,
            promql_string
        ),
        r#"rate(x{model="fraud \"eu\"\\x",v="7",p="6"}[5m]) champion"#
    );
    assert_eq!(
        vars.fill("https://m/{model}/{version}?a={alias}", url_part),
        "https://m/fraud%20%22eu%22%5Cx/7?a=champion"
    );
    // Braces that are no placeholder stay, as PromQL needs them.
    assert_eq!(
        vars.fill("{job=\"{unknown}\"}", promql_string),
        "{job=\"{unknown}\"}"
    );
}

#[test]
fn an_instant_query_gives_a_value_only_for_one_finite_sample() {
    let vector = |result: serde_json::Value| json!({"status": "success", "data": {"resultType": "vector", "result": result}});
    let one = |v: &str| vector(json!([{"metric": {}, "value": [1.7e9, v]}]));
    assert_eq!(prometheus_value(&one("0.25")), value(0.25));
    assert_eq!(
        prometheus_value(
            &json!({"status": "success", "data": {"resultType": "scalar", "result": [1.7e9, "3"]}})
        ),
        value(3.0)
    );
    assert!(is_inconclusive(
        &prometheus_value(&vector(json!([]))),
        "no series"
    ));
    assert!(is_inconclusive(&prometheus_value(&one("NaN")), "NaN"));
    assert!(is_inconclusive(&prometheus_value(&one("+Inf")), "inf"));
    assert!(is_inconclusive(
        &prometheus_value(&vector(json!([{"value": [1, "1"]}, {"value": [1, "2"]}]))),
        "2 series"
    ));
    assert!(is_inconclusive(
        &prometheus_value(
            &json!({"status": "success", "data": {"resultType": "matrix", "result": []}})
        ),
        "matrix"
    ));
    assert!(is_inconclusive(
        &prometheus_value(
            &json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"})
        ),
        "parse error"
    ));
    assert!(is_inconclusive(
        &prometheus_value(&json!({"status": "success"})),
        "resultType"
    ));
}

#[test]
fn a_web_answer_gives_the_number_at_its_pointer() {
    let answer =
        json!({"p99_ms": 12.5, "as_text": " 4 ", "nan": "NaN", "list": [1, 2], "none": null});
    assert_eq!(pointed_value(&answer, "/p99_ms"), value(12.5));
    assert_eq!(pointed_value(&answer, "/as_text"), value(4.0));
    assert_eq!(pointed_value(&answer, "/list/1"), value(2.0));
    assert!(is_inconclusive(&pointed_value(&answer, "/nan"), "NaN"));
    assert!(is_inconclusive(
        &pointed_value(&answer, "/list"),
        "not a number"
    ));
    assert!(is_inconclusive(
        &pointed_value(&answer, "/none"),
        "nothing there"
    ));
    assert!(is_inconclusive(
        &pointed_value(&answer, "/missing"),
        "nothing there"
    ));
}

#[test]
fn credentials_never_print_themselves() {
    let c = Credentials::Basic {
        user: "u".into(),
        password: Secret::new("hunter2"),
    };
    assert!(!format!("{c:?}").contains("hunter2"));
    let h = c.header().expect("a header");
    assert!(h.is_sensitive());
    assert!(!format!("{h:?}").contains("dTpodW50ZXIy"));
}
