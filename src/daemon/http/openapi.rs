//! `GET /openapi.json`: the OpenAPI 3 description of every route.

use axum::Json;
use serde_json::{Value, json};

fn error_responses(codes: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for c in codes {
        m.insert(c.to_string(), json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}));
    }
    Value::Object(m)
}

fn merge(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Object(mut a), Value::Object(b)) => {
            a.extend(b);
            Value::Object(a)
        }
        (a, _) => a,
    }
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"200": {"description": description, "content": {"application/json": {"schema": schema}}}})
}

pub fn spec() -> Value {
    let any = json!({"type": "object"});
    let token = json!([{"bearer": []}]);
    json!({
        "openapi": "3.0.3",
        "info": {"title": "stagegate", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Guards the MLflow Model Registry: evaluates candidates against quality gates and promotes those that pass."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "server.api_token (STAGEGATE_SERVER__API_TOKEN)"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "Evaluation": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "model": {"type": "string"}, "version": {"type": "string"},
                    "policy": {"type": "string"}, "policy_digest": {"type": "string"}, "trigger": {"type": "string"},
                    "status": {"type": "string", "enum": ["running", "done", "interrupted", "failed"]},
                    "verdict": {"type": "string", "nullable": true, "enum": ["passed", "failed", "error", null]},
                    "action": {"type": "string", "nullable": true}, "gates": {"type": "array", "items": {"type": "object"}},
                    "error": {"type": "string", "nullable": true}, "started_at": {"type": "string", "format": "date-time"},
                    "finished_at": {"type": "string", "format": "date-time", "nullable": true},
                    "duration_ms": {"type": "integer", "nullable": true}}},
                "EvaluationRequest": {"type": "object", "required": ["model"], "additionalProperties": false,
                    "properties": {"model": {"type": "string"}, "version": {"type": "string"}}},
            }
        },
        "paths": {
            "/webhooks/mlflow": {"post": {
                "summary": "MLflow OSS webhook receiver: HMAC signature, timestamp tolerance, de-duplication by delivery id; work is queued",
                "parameters": [
                    {"name": "X-MLflow-Delivery-Id", "in": "header", "required": true, "schema": {"type": "string"}},
                    {"name": "X-MLflow-Timestamp", "in": "header", "required": true, "schema": {"type": "string"}},
                    {"name": "X-MLflow-Signature", "in": "header", "required": true, "schema": {"type": "string"}}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": any}}},
                "responses": merge(json!({"202": {"description": "queued", "content": {"application/json": {"schema": any}}},
                                          "200": {"description": "duplicate or ignored", "content": {"application/json": {"schema": any}}}}),
                                   error_responses(&["400", "401", "413"]))}},
            "/healthz": {"get": {"summary": "Process alive", "responses": ok("alive", any.clone())}},
            "/readyz": {"get": {"summary": "Config loaded and MLflow reachable", "responses": merge(ok("ready", any.clone()), error_responses(&["503"]))}},
            "/status": {"get": {"summary": "Version, uptime, mode, MLflow reachability, poll, queue, totals, recent evaluations", "responses": ok("status", any.clone())}},
            "/v1/evaluations": {
                "get": {"summary": "Evaluation history, newest first",
                        "parameters": [{"name": "model", "in": "query", "schema": {"type": "string"}},
                                       {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                        "responses": ok("evaluations", json!({"type": "object", "properties": {"evaluations": {"type": "array", "items": {"$ref": "#/components/schemas/Evaluation"}}}}))},
                "post": {"summary": "Queue a (re-)evaluation of a model or one of its versions", "security": token,
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EvaluationRequest"}}}},
                         "responses": merge(json!({"202": {"description": "queued", "content": {"application/json": {"schema": any}}}}),
                                            error_responses(&["400", "401", "404", "503"]))}},
            "/v1/evaluations/{id}": {"get": {"summary": "One evaluation",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                "responses": merge(ok("evaluation", json!({"$ref": "#/components/schemas/Evaluation"})), error_responses(&["400", "404"]))}},
            "/v1/pause": {"post": {"summary": "Stop acting (evaluation goes on)", "security": token, "responses": merge(ok("paused", any.clone()), error_responses(&["401"]))}},
            "/v1/resume": {"post": {"summary": "Resume acting", "security": token, "responses": merge(ok("resumed", any.clone()), error_responses(&["401"]))}},
            "/metrics": {"get": {"summary": "Prometheus text format", "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": ok("OpenAPI 3 document", any)}},
        }
    })
}

pub async fn document() -> Json<Value> {
    Json(spec())
}
