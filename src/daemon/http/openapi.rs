//! `GET /openapi.json`: the OpenAPI 3 description of every route. Response schemas list every
//! field a handler always writes as `required`, so a conformance run (bench/api.sh,
//! schemathesis) notices a field that goes missing, and every status a handler can answer
//! is listed with its JSON body.

use axum::Json;
use serde_json::{Value, json};

use super::api::MAX_LIMIT;
use super::webhooks::MAX_BODY;
use crate::webhook::{self, ForEach, Source};

/// An object schema whose `required` fields are all of `props`' keys but `optional`.
fn object(props: Value, optional: &[&str]) -> Value {
    let required: Vec<&String> = props
        .as_object()
        .map(|m| {
            m.keys()
                .filter(|k| !optional.contains(&k.as_str()))
                .collect()
        })
        .unwrap_or_default();
    json!({"type": "object", "required": required, "properties": props})
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn nullable(kind: &str) -> Value {
    json!({"type": kind, "nullable": true})
}

/// One JSON response.
fn response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// `responses` of an operation: its own, plus `errors` as `Error` bodies.
fn responses(own: &[(&str, Value)], errors: &[(&str, &str)]) -> Value {
    let mut m = serde_json::Map::new();
    for (code, r) in own {
        m.insert(code.to_string(), r.clone());
    }
    for (code, why) in errors {
        m.insert(code.to_string(), response(why, schema_ref("Error")));
    }
    Value::Object(m)
}

fn schemas() -> Value {
    let gate = object(
        json!({"name": {"type": "string"}, "type": {"type": "string"},
               "outcome": {"type": "string", "enum": ["pass", "fail", "error"]},
               "enforced": {"type": "boolean"}, "observed": {}, "threshold": {},
               "message": {"type": "string"}, "duration_ms": {"type": "integer", "minimum": 0},
               "attempts": {"type": "integer", "minimum": 0}, "details": {},
               "inconclusive": {"type": "boolean"}}),
        &["details", "inconclusive"],
    );
    let evaluation = object(
        json!({"id": {"type": "integer", "format": "int64"}, "model": {"type": "string"},
               "version": {"type": "string"}, "policy": {"type": "string"},
               "policy_digest": {"type": "string"}, "trigger": {"type": "string"},
               "status": {"type": "string", "enum": ["running", "done", "interrupted", "failed"]},
               "verdict": {"type": "string", "nullable": true, "enum": ["passed", "failed", "error", null]},
               "action": nullable("string"), "gates": {"type": "array", "items": schema_ref("GateResult")},
               "error": nullable("string"), "started_at": {"type": "string", "format": "date-time"},
               "finished_at": {"type": "string", "format": "date-time", "nullable": true},
               "duration_ms": {"type": "integer", "nullable": true}}),
        &[],
    );
    let policy = object(
        json!({"name": {"type": "string"}, "models": {"type": "array", "items": {"type": "string"}},
               "mode": {"type": "string", "enum": ["enforce", "dry-run"]}, "digest": {"type": "string"},
               "candidate": {"type": "string"}, "promote": {"type": "string"},
               "gates": {"type": "array", "items": object(json!({"name": {"type": "string"},
                         "type": {"type": "string"}, "enforce": {"type": "boolean"}}), &[])}}),
        &[],
    );
    let count = json!({"type": "integer", "minimum": 0});
    let status = object(
        json!({
            "version": {"type": "string"}, "uptime_s": count, "mode": {"type": "string", "enum": ["running", "paused"]},
            "config": {"type": "string"},
            "mlflow": object(json!({"tracking_uri": {"type": "string"}, "reachable": {"type": "boolean"},
                                    "last_error": nullable("string")}), &[]),
            "poll": object(json!({"schedule": {"type": "string"}, "completed": count,
                                  "last_started": nullable("string"), "last_duration_ms": nullable("integer"),
                                  "last_models": nullable("integer"), "last_enqueued": nullable("integer"),
                                  "last_waiting": nullable("integer"), "last_error": nullable("string"),
                                  "next": nullable("string")}), &[]),
            "queue": object(json!({"depth": count, "in_flight": count, "delayed": count, "workers": count}), &[]),
            "webhooks": object(json!({"enabled": {"type": "boolean", "description": "the MLflow source"},
                                      "secrets": count,
                                      "sources": {"type": "object", "description": "each source by name (mlflow, databricks)",
                                                  "additionalProperties": object(json!({"enabled": {"type": "boolean"}, "secrets": count}), &[])}}), &[]),
            "totals": object(json!({"evaluations": count, "passed": count, "failed": count, "error": count,
                                    "promotions": count}), &[]),
            "policies": {"type": "array", "items": schema_ref("Policy")},
            "recent": {"type": "array", "items": schema_ref("Evaluation")},
            "changes": object(json!({"audit": count, "registry": count}), &[]),
        }),
        &[],
    );
    let measurement = object(
        json!({"at": {"type": "string", "format": "date-time"},
               "outcome": {"type": "string", "enum": ["pass", "fail", "inconclusive"]},
               "value": {"type": "number"},
               "note": {"type": "string", "description": "the broken threshold, or why there is no value"}}),
        &[],
    );
    let analysis = object(
        json!({"id": {"type": "integer", "format": "int64"}, "model": {"type": "string"},
               "version": {"type": "string", "description": "the promoted version watched"},
               "previous": nullable("string"), "target": {"type": "string", "description": "alias:<name> or stage:<name>"},
               "policy": {"type": "string"},
               "status": {"type": "string", "enum": ["running", "passed", "failed", "inconclusive", "ended"]},
               "reason": nullable("string"), "step": {"type": "integer", "description": "rounds measured"},
               "measurements": {"type": "object", "description": "per metric, its measurements in order",
                                "additionalProperties": {"type": "array", "items": measurement}},
               "started_at": {"type": "string", "format": "date-time"},
               "due_at": {"type": "integer", "format": "int64", "description": "the next round, unix ms"},
               "finished_at": {"type": "string", "format": "date-time", "nullable": true},
               "settled_at": {"type": "string", "format": "date-time", "nullable": true,
                              "description": "when what the outcome asks for (tag, audit, rollback) was done"}}),
        &[],
    );
    json!({
        "Analysis": analysis,
        "AnalysisEnd": {"type": "object", "required": ["outcome"], "additionalProperties": false,
            "properties": {"outcome": {"type": "string", "enum": ["passed", "failed"]},
                           "reason": {"type": "string", "nullable": true}}},
        "Error": object(json!({"error": {"type": "string"}}), &[]),
        "GateResult": gate,
        "Evaluation": evaluation,
        "Policy": policy,
        "Status": status,
        "EvaluationRequest": {"type": "object", "required": ["model"], "additionalProperties": false,
            "properties": {"model": {"type": "string", "minLength": 1, "pattern": "^[^/:]+$",
                                     "description": "a registered model name (MLflow refuses `/` and `:` in names)"},
                           "version": {"type": "string", "nullable": true, "pattern": "^[0-9]+$",
                                       "description": "omitted or null: reconcile the model"}}},
    })
}

/// Add `POST /webhooks/{name}` of every webhook source to `spec`, as the source describes
/// itself, with the schema of its payload.
fn add_webhooks(spec: &mut Value) {
    struct Add<'a>(&'a mut Value);
    impl ForEach for Add<'_> {
        fn source<S: Source>(&mut self) {
            let doc = S::api();
            let (payload, schema) = doc.payload;
            let post = json!({
                "summary": doc.summary,
                "description": format!("{} Bodies over {MAX_BODY} bytes are refused.", doc.description),
                "parameters": doc.headers,
                "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref(payload)}}},
                "responses": delivery_responses()});
            self.0["paths"][format!("/webhooks/{}", S::NAME)] = json!({ "post": post });
            self.0["components"]["schemas"][payload] = schema;
        }
    }
    webhook::for_each(&mut Add(spec));
}

/// The answers of every webhook receiver.
fn delivery_responses() -> Value {
    responses(
        &[
            (
                "202",
                response(
                    "queued",
                    object(
                        json!({"status": {"type": "string", "enum": ["queued"]},
                                                      "model": {"type": "string"}, "event": {"type": "string"}}),
                        &[],
                    ),
                ),
            ),
            (
                "200",
                response(
                    "a repeated delivery, or an event stagegate does not act on (the reason says which)",
                    object(
                        json!({"status": {"type": "string", "enum": ["duplicate", "ignored"]},
                                         "delivery_id": {"type": "string"}, "reason": {"type": "string"},
                                         "event": {"type": "string"}}),
                        &["delivery_id", "reason", "event"],
                    ),
                ),
            ),
        ],
        &[
            ("400", "malformed payload"),
            (
                "401",
                "missing or bad signature, stale timestamp, or no secrets configured",
            ),
            ("413", "body too large"),
        ],
    )
}

fn evaluations() -> Value {
    let token = json!([{"bearer": []}]);
    json!({
        "get": {"summary": "Evaluation history, newest first",
                "parameters": [{"name": "model", "in": "query", "schema": {"type": "string"}},
                               {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50}}],
                "responses": responses(
                    &[("200", response("evaluations", object(json!({"evaluations": {"type": "array", "items": schema_ref("Evaluation")}}), &[])))],
                    &[("400", "bad query"), ("500", "the store failed")])},
        "post": {"summary": "Queue a (re-)evaluation of a version, or a reconcile of a model",
                 "description": "With `version`: that version is evaluated (again), candidate or not. Without: the model is reconciled.",
                 "security": token,
                 "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("EvaluationRequest")}}},
                 "responses": responses(
                     &[("202", response("queued", object(json!({"status": {"type": "string", "enum": ["queued"]},
                                                                  "model": {"type": "string"}, "version": nullable("string")}), &[])))],
                     &[("400", "malformed request, or MLflow refused the name"), ("401", "missing or wrong token"),
                       ("404", "no policy matches the model, or no such model or version"), ("413", "body too large"),
                       ("500", "the store failed"), ("502", "MLflow answered with an unexpected error"),
                       ("503", "MLflow unreachable")])},
    })
}

/// One non-JSON response.
fn text(description: &str, media: &str) -> Value {
    json!({"description": description, "content": {media: {"schema": {"type": "string"}}}})
}

/// The status page (HTML, for a person) and its two assets. Documented so the document
/// lists every route; their errors are pages too, not `Error` bodies.
fn pages() -> Vec<(&'static str, Value)> {
    let html = "text/html";
    let page = |summary: &str, params: Value, errors: &[(&str, &str)]| {
        let mut r = serde_json::Map::new();
        r.insert("200".into(), text("the page", html));
        for (code, why) in errors {
            r.insert(code.to_string(), text(why, html));
        }
        json!({"get": {"summary": summary, "parameters": params, "responses": r}})
    };
    let name = json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}});
    let before = json!({"name": "before", "in": "query", "schema": {"type": "integer", "format": "int64"},
                        "description": "history page: evaluations with ids below this one"});
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    vec![
        (
            "/",
            page(
                "Status page: models, champions, candidates, recent evaluations",
                json!([]),
                &[("500", "the store failed")],
            ),
        ),
        (
            "/models/{name}",
            page(
                "Model page: threshold charts across versions, history, audit log",
                json!([name, before]),
                &[
                    ("400", "?before= is not an id"),
                    ("404", "no such model"),
                    ("500", "the store failed"),
                ],
            ),
        ),
        (
            "/evaluations/{id}",
            page(
                "Evaluation page: gates, serving, datasets, slices, champion interval",
                json!([id]),
                &[("404", "no such evaluation"), ("500", "the store failed")],
            ),
        ),
        (
            "/assets/status.css",
            json!({"get": {"summary": "The status page's stylesheet", "responses": {"200": text("CSS", "text/css")}}}),
        ),
        (
            "/assets/status.js",
            json!({"get": {"summary": "The status page's live-update script", "responses": {"200": text("JavaScript", "text/javascript")}}}),
        ),
    ]
}

pub fn spec() -> Value {
    let token = json!([{"bearer": []}]);
    let id = json!({"name": "id", "in": "path", "required": true,
                    "schema": {"type": "integer", "format": "int64", "minimum": 1, "maximum": i64::MAX}});
    let mut spec = json!({
        "openapi": "3.0.3",
        "info": {"title": "stagegate", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Guards the MLflow Model Registry: evaluates candidates against quality gates and promotes those that pass. \
                                 Every API error is JSON `{\"error\": \"…\"}`, including 404 for an unknown route and 405 (with `Allow`) for a wrong method; the status page (`/`, `/models/…`, `/evaluations/…`) answers HTML, its errors included."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "server.api_token (STAGEGATE_SERVER__API_TOKEN)"}},
            "schemas": schemas(),
        },
        "paths": {
            "/healthz": {"get": {"summary": "Process alive",
                "responses": responses(&[("200", response("alive", object(json!({"status": {"type": "string", "enum": ["ok"]}}), &[])))], &[])}},
            "/readyz": {"get": {"summary": "Config loaded and MLflow reachable",
                "responses": responses(
                    &[("200", response("ready", object(json!({"status": {"type": "string", "enum": ["ready"]}}), &[]))),
                      ("503", response("MLflow not reachable", object(json!({"status": {"type": "string", "enum": ["unavailable"]},
                                                                            "error": {"type": "string"}}), &[])))],
                    &[])}},
            "/status": {"get": {"summary": "Version, uptime, mode, MLflow reachability, poll, queue, totals, policies, recent evaluations",
                "responses": responses(&[("200", response("status", schema_ref("Status")))], &[])}},
            "/v1/evaluations": evaluations(),
            "/v1/evaluations/{id}": {"get": {"summary": "One evaluation", "parameters": [id],
                "responses": responses(&[("200", response("evaluation", schema_ref("Evaluation")))],
                                       &[("400", "the id is not a number"), ("404", "no such evaluation"), ("500", "the store failed")])}},
            "/v1/analyses": {"get": {"summary": "Post-promotion analyses, newest first",
                "parameters": [{"name": "model", "in": "query", "schema": {"type": "string"}},
                               {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50}}],
                "responses": responses(
                    &[("200", response("analyses", object(json!({"analyses": {"type": "array", "items": schema_ref("Analysis")}}), &[])))],
                    &[("400", "bad query"), ("500", "the store failed")])}},
            "/v1/analyses/{id}": {
                "get": {"summary": "One analysis, with every measurement", "parameters": [id],
                    "responses": responses(&[("200", response("analysis", schema_ref("Analysis")))],
                                           &[("400", "the id is not a number"), ("404", "no such analysis"), ("500", "the store failed")])},
                "post": {"summary": "End a running analysis by hand as passed or failed",
                    "description": "`failed` is handled as a failed measurement would be: under `on_failure = \"rollback\"` the replaced champion is restored.",
                    "parameters": [id], "security": token,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("AnalysisEnd")}}},
                    "responses": responses(
                        &[("200", response("ended", object(json!({"id": {"type": "integer"}, "model": {"type": "string"},
                            "version": {"type": "string"}, "status": {"type": "string"}, "reason": {"type": "string"}}), &[])))],
                        &[("400", "malformed request"), ("401", "missing or wrong token"), ("404", "no such analysis"),
                          ("409", "the analysis has already ended"), ("500", "the store failed")])}},
            "/v1/pause": {"post": {"summary": "Stop acting (evaluation goes on)", "security": token,
                "responses": responses(&[("200", response("paused", object(json!({"paused": {"type": "boolean", "enum": [true]}}), &[])))],
                                       &[("401", "missing or wrong token")])}},
            "/v1/resume": {"post": {"summary": "Resume acting; work held back while paused is queued", "security": token,
                "responses": responses(&[("200", response("resumed", object(json!({"paused": {"type": "boolean", "enum": [false]}}), &[])))],
                                       &[("401", "missing or wrong token")])}},
            "/metrics": {"get": {"summary": "Prometheus text format",
                "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document",
                "responses": responses(&[("200", response("OpenAPI 3 document", object(json!({"openapi": {"type": "string"},
                    "info": {"type": "object"}, "paths": {"type": "object"}}), &[])))], &[])}},
        }
    });
    add_webhooks(&mut spec);
    for (path, item) in pages() {
        spec["paths"][path] = item;
    }
    spec
}

pub async fn document() -> Json<Value> {
    Json(spec())
}
