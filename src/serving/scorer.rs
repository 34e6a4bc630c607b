//! Rows in, predictions out: the face of a served model that the edge-case and dataset gates
//! use. The warm host takes rows as an Arrow table over its socket (or, for a model without a
//! column signature, the JSON a served model takes); an HTTP endpoint takes JSON. Either way
//! the answer is one JSON value per row, or the error the model's server gave.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::host::{Answer as HostAnswer, HostModel};
use super::invoke::{Answer, Endpoint, batch_cells, dataframe_split, predictions, server_error};

/// What to score: rows as a table, or a request body as `POST /invocations` takes it.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    Table(&'a RecordBatch),
    Json(&'a str),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScoreError {
    /// The model (or its server's schema enforcement) refused the rows: the server's message.
    Refused(String),
    /// No answer: a transport failure, a crash, a timeout; the message says which.
    Failed(String),
}

impl std::fmt::Display for ScoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScoreError::Refused(m) | ScoreError::Failed(m) => f.write_str(m),
        }
    }
}

#[derive(Clone)]
pub enum Scorer {
    Http(Arc<Endpoint>),
    Host(Arc<HostModel>),
}

impl Scorer {
    /// Whether rows should go as a table ([`Payload::Table`]); else as JSON.
    pub fn columnar(&self) -> bool {
        match self {
            Scorer::Http(_) => false,
            Scorer::Host(m) => m.columnar,
        }
    }

    /// Score `payload`: one prediction per row of the answer.
    pub async fn score(&self, payload: Payload<'_>) -> Result<Vec<Value>, ScoreError> {
        match self {
            Scorer::Http(e) => {
                let body = match payload {
                    Payload::Json(b) => b.to_string(),
                    Payload::Table(batch) => table_body(batch).map_err(ScoreError::Failed)?,
                };
                let a = e.invoke(body).await.map_err(ScoreError::Failed)?;
                if a.status != 200 {
                    return Err(ScoreError::Refused(server_error(&a)));
                }
                predictions(&a.body).map_err(ScoreError::Failed)
            }
            Scorer::Host(m) => {
                let answer = match payload {
                    Payload::Table(batch) if m.columnar => m.predict(batch).await,
                    Payload::Table(batch) => match table_body(batch) {
                        Ok(body) => m.invoke(&body).await,
                        Err(e) => Err(e),
                    },
                    Payload::Json(body) => m.invoke(body).await,
                };
                match answer.map_err(ScoreError::Failed)? {
                    HostAnswer::Predictions(p) => Ok(p),
                    HostAnswer::Refused(status, body) => {
                        Err(ScoreError::Refused(server_error(&Answer {
                            status,
                            body,
                            elapsed: std::time::Duration::ZERO,
                        })))
                    }
                }
            }
        }
    }
}

/// A table as a `dataframe_split` request body.
fn table_body(batch: &RecordBatch) -> Result<String, String> {
    let schema = batch.schema();
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let cols = names
        .iter()
        .map(|n| batch_cells(batch, n))
        .collect::<Result<Vec<_>, _>>()?;
    let rows: Vec<Vec<_>> = (0..batch.num_rows())
        .map(|i| cols.iter().map(|c| c[i].clone()).collect())
        .collect();
    Ok(dataframe_split(&names, &rows))
}
