//! `dataset`: score a labelled CSV or Parquet file through the served candidate, in batches
//! (through the warm host's bulk path, Arrow batches of up to `serving.bulk_rows` rows; over
//! HTTP, `batch_size`-row JSON requests).
//! Thresholds on accuracy/precision/recall/f1 (binary and macro), roc_auc and log_loss (with
//! probabilities), rmse/mae/r2; the largest gap across `slices`; and `vs_champion`, a paired
//! bootstrap of candidate minus champion on the same rows.

mod footer;
mod judge;
mod predictions;
pub mod read;
pub mod score;

use serde_json::{Value, json};

use super::Judgement;
use crate::config::DatasetGate;
use crate::location::Location;
use crate::mlflow::{Client, Dataset, ModelVersion};
use crate::model_files::Signature;
use crate::objects::{Blocking, Opened, logged_identity, sha256_file};
use crate::serving::host::project;
use crate::serving::{Payload, Scorer, Session, Which, batch_cells, dataframe_split};
use judge::{Collected, judge_scores};

pub async fn judge(g: &DatasetGate, s: &Session) -> Judgement {
    match run(g, s).await {
        Ok(j) => j,
        Err(e) => Judgement::error(e),
    }
}

/// The feature columns to send: the signature's (all required ones must be in the file), or,
/// without a signature, every column but the label and the slice column.
pub fn feature_columns(
    sig: Option<&Signature>,
    columns: &[String],
    label: &str,
    slice: Option<&str>,
) -> Result<Vec<String>, String> {
    match sig {
        Some(Signature::Tensors(_)) => {
            Err("the dataset gate needs a column signature; this model takes tensors".into())
        }
        Some(Signature::Columns(cols)) => {
            let mut out = Vec::new();
            let mut missing = Vec::new();
            for c in cols {
                let name = c.name.clone().ok_or(
                    "the model signature has unnamed columns; a dataset cannot be matched to them",
                )?;
                if columns.contains(&name) {
                    out.push(name);
                } else if c.required {
                    missing.push(name);
                }
            }
            if missing.is_empty() {
                Ok(out)
            } else {
                Err(format!(
                    "the dataset lacks columns the model signature requires: {} (dataset columns: {})",
                    missing.join(", "),
                    columns.join(", ")
                ))
            }
        }
        None => Ok(columns
            .iter()
            .filter(|c| c.as_str() != label && Some(c.as_str()) != slice)
            .cloned()
            .collect()),
    }
}

/// Score one batch; its predictions, one per row.
async fn predict(
    scorer: &Scorer,
    body: &Body,
    first_row: usize,
    rows: usize,
    who: &str,
) -> Result<Vec<Value>, String> {
    let payload = match body {
        Body::Table(t) => Payload::Table(t),
        Body::Json(j) => Payload::Json(j),
    };
    let p = scorer.score(payload).await.map_err(|e| {
        format!(
            "{who} could not score rows {first_row}-{}: {e}",
            first_row + rows
        )
    })?;
    if p.len() != rows {
        return Err(format!(
            "{who} returned {} predictions for {rows} rows",
            p.len()
        ));
    }
    Ok(p)
}

/// Where the gate's dataset is: its `path`, or the dataset the candidate's run logged with
/// the gate's `context`, with MLflow's digest of it (part of what the verdict is judged from).
async fn source(g: &DatasetGate, s: &Session) -> Result<(Location, Option<String>), String> {
    if let Some(p) = &g.path {
        return Ok((p.clone(), None));
    }
    let context = g.context.as_deref().unwrap_or_default();
    let ds = logged_dataset(s.client(), s.candidate(), context).await?;
    Ok((ds.location()?, Some(ds.digest)))
}

/// The dataset `v`'s run logged with `context`.
pub async fn logged_dataset(
    client: &Client,
    v: &ModelVersion,
    context: &str,
) -> Result<Dataset, String> {
    let run_id = v.run_id.as_deref().ok_or_else(|| {
        format!(
            "v{} has no run, so no dataset logged with context {context:?}",
            v.version
        )
    })?;
    let run = client
        .run(run_id)
        .await
        .map_err(|e| format!("reading run {run_id}: {e}"))?;
    run.input_with_context(context).cloned().ok_or_else(|| {
        format!(
            "run {run_id} of v{} logged no dataset with context {context:?} \
             (mlflow.log_input(dataset, context={context:?}))",
            v.version
        )
    })
}

async fn run(g: &DatasetGate, s: &Session) -> Result<Judgement, String> {
    let (location, digest) = source(g, s).await?;
    let input = Opened::open(&location, &s.env().workdir, s.client(), s.env().inputs)
        .await
        .map_err(|e| format!("dataset {e}"))?;
    let cand = s.scorer(Which::Candidate).await?;
    let rows_per_batch = if cand.columnar() {
        s.rows_per_request(g.batch_size)
    } else {
        g.batch_size
    };
    // Hashing, reading and decoding the file block (a large file for seconds): all of it runs
    // on blocking threads, never on the async workers that serve webhooks; the hash beside
    // the scoring, since both only read the file. An object's identity is its version or
    // ETag, and every read of it is pinned to that.
    let (identity, mut reader) = match &input {
        Opened::Local(path) => {
            // One open: the bytes hashed are the bytes read, even if the file is replaced
            // meanwhile.
            let file = std::fs::File::open(path)
                .map_err(|e| format!("dataset {}: {e}", path.display()))?;
            let (hashed, shown) = (file.try_clone(), path.display().to_string());
            let sha = tokio::task::spawn_blocking(move || {
                hashed
                    .and_then(|f| sha256_file(&f))
                    .map_err(|e| format!("dataset {shown}: {e}"))
            });
            let p = path.clone();
            let reader =
                blocking(move || read::Reader::open_file(file, &p, rows_per_batch)).await?;
            (Identity::Pending(sha), reader)
        }
        Opened::Remote(obj) => {
            let (b, loc) = (Blocking::new(obj.clone()), location.clone());
            let reader =
                blocking(move || read::Reader::open_object(b, &loc, rows_per_batch)).await?;
            (Identity::Known(obj.identity().to_string()), reader)
        }
    };
    let shown = location.to_string();
    let (features, slice_col) = columns_to_send(g, s, &reader.columns(), &shown).await?;
    let mut needed = features.clone();
    needed.push(g.label.clone());
    needed.extend(slice_col.clone());
    reader.select(&needed)?;
    let champ = match (&g.vs_champion, s.champion()) {
        (Some(_), Some(ch)) => Some(
            s.scorer(Which::Champion)
                .await
                .map_err(|e| format!("serving the champion v{}: {e}", ch.version))?,
        ),
        _ => None,
    };
    // Both models get the same rows in the same form: a table only if both take one.
    let columnar = cand.columnar() && champ.as_ref().is_none_or(Scorer::columnar);
    let batches = encode_batches(reader, features, g.label.clone(), slice_col, columnar);
    let data = collect(batches, &cand, champ.as_ref()).await?;
    if data.labels.is_empty() {
        return Err(format!("dataset {shown} has no rows"));
    }
    let rows = data.labels.len();
    let (identity, sha) = match identity {
        Identity::Pending(sha) => {
            let sha = sha
                .await
                .map_err(|e| format!("dataset worker ended abnormally: {e}"))??;
            (format!("sha256:{sha}"), Some(sha))
        }
        Identity::Known(id) => (id, None),
    };
    let mut record = json!({"path": shown, "identity": identity, "rows": rows});
    if let Some(sha) = sha {
        record["sha256"] = json!(sha);
    }
    if let (Some(context), Some(digest)) = (&g.context, digest) {
        record["identity"] = json!(logged_identity(&identity, &digest));
        record["context"] = json!(context);
        record["mlflow_digest"] = json!(digest);
    }
    // Scoring includes the paired bootstrap (up to 100,000 resamples): CPU-bound.
    let (gate, champion) = (g.clone(), s.champion().map(|c| c.version.clone()));
    let mut j = blocking(move || judge_scores(&gate, &data, champion.as_deref())).await?;
    j.observed["dataset"] = record.clone();
    j.details = Some(json!({"dataset": record}));
    Ok(j)
}

/// The feature columns to send and the slice column, checked against the dataset's columns.
async fn columns_to_send(
    g: &DatasetGate,
    s: &Session,
    columns: &[String],
    shown: &str,
) -> Result<(Vec<String>, Option<String>), String> {
    if !columns.contains(&g.label) {
        return Err(format!(
            "label column {:?} is not in dataset {shown} (columns: {})",
            g.label,
            columns.join(", ")
        ));
    }
    let slice_col = g.slices.as_ref().map(|sl| sl.column.clone());
    if let Some(c) = slice_col.as_ref().filter(|c| !columns.contains(c)) {
        return Err(format!("slice column {c:?} is not in dataset {shown}"));
    }
    let files = s.files().await?;
    let features = feature_columns(
        files.signature.as_ref(),
        columns,
        &g.label,
        slice_col.as_deref(),
    )?;
    Ok((features, slice_col))
}

/// Score every batch with the candidate (and the champion: two processes, so the same rows
/// at once), keeping labels and slice groups in step.
async fn collect(
    mut batches: tokio::sync::mpsc::Receiver<Result<Encoded, String>>,
    cand: &Scorer,
    champ: Option<&Scorer>,
) -> Result<Collected, String> {
    let mut data = Collected {
        labels: vec![],
        slices: vec![],
        candidate: vec![],
        champion: champ.map(|_| vec![]),
    };
    while let Some(batch) = batches.recv().await {
        let b = batch?;
        let first = data.labels.len();
        let (c, ch) = tokio::join!(
            predict(cand, &b.body, first, b.rows, "the candidate"),
            async {
                match champ {
                    Some(e) => Some(predict(e, &b.body, first, b.rows, "the champion").await),
                    None => None,
                }
            }
        );
        data.candidate.extend(c?);
        if let (Some(ch), Some(out)) = (ch, data.champion.as_mut()) {
            out.extend(ch?);
        }
        data.labels.extend(b.labels);
        data.slices.extend(b.slices);
    }
    Ok(data)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("dataset worker ended abnormally: {e}"))?
}

/// What the dataset was when it was read: a local file's SHA-256, computed beside the
/// scoring, or an object's version or ETag.
enum Identity {
    Pending(tokio::task::JoinHandle<Result<String, String>>),
    Known(String),
}

/// The rows of one batch as the scorer takes them.
enum Body {
    Table(arrow::record_batch::RecordBatch),
    Json(String),
}

/// One batch, decoded and encoded for the scorer.
struct Encoded {
    body: Body,
    rows: usize,
    labels: Vec<Option<String>>,
    slices: Vec<Option<String>>,
}

/// Read and encode batches on a blocking thread, at most two ahead of the model requests.
/// The thread stops at the first error, or as soon as the gate stops listening.
fn encode_batches(
    mut reader: read::Reader,
    features: Vec<String>,
    label: String,
    slice: Option<String>,
    columnar: bool,
) -> tokio::sync::mpsc::Receiver<Result<Encoded, String>> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        while let Some(batch) = reader.next_batch() {
            let encoded =
                batch.and_then(|b| encode(&b, &features, &label, slice.as_deref(), columnar));
            let failed = encoded.is_err();
            if tx.blocking_send(encoded).is_err() || failed {
                return;
            }
        }
    });
    rx
}

fn encode(
    batch: &arrow::record_batch::RecordBatch,
    features: &[String],
    label: &str,
    slice: Option<&str>,
    columnar: bool,
) -> Result<Encoded, String> {
    let n = batch.num_rows();
    let body = if columnar {
        Body::Table(project(batch, features)?)
    } else {
        let cols: Vec<Vec<_>> = features
            .iter()
            .map(|f| batch_cells(batch, f))
            .collect::<Result<_, _>>()?;
        let rows: Vec<Vec<_>> = (0..n)
            .map(|i| cols.iter().map(|c| c[i].clone()).collect())
            .collect();
        Body::Json(dataframe_split(features, &rows))
    };
    Ok(Encoded {
        body,
        rows: n,
        labels: read::text_column(batch, label)?,
        slices: match slice {
            Some(c) => read::text_column(batch, c)?,
            None => vec![],
        },
    })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
