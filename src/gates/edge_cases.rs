//! `edge_cases`: requests built from the model signature, family by family (`cases = [...]`,
//! see [`CaseFamily`]), then scored by the served candidate: as a table through the warm
//! host's bulk path where the model takes columns, else as the JSON a served model takes. Pass
//! = every case answered, with exactly one prediction per row. Building the cases is pure;
//! only [`judge`] does IO.
//!
//! Why the families are drawn where they are:
//! - NaN goes to every float column, required or not. MLflow's schema enforcement passes NaN
//!   through a required double/float column, so a model without an imputer meets it and
//!   raises — as it will on the first NaN in production. Sending NaN only to optional
//!   columns let such a model pass.
//! - A missing value (`null`) goes only to optional columns: that is what `required = false`
//!   in the signature promises the model accepts.
//! - Integer columns never get NaN (MLflow refuses it before the model sees it: that would
//!   judge MLflow, not the model).
//! - Each type's minimum and maximum (`dtype_limits`) is opt-in: scikit-learn's trees work in
//!   float32 and answer 400 to float64 extremes, and a default the most common tabular models
//!   fail only teaches users to switch the gate off.

use serde_json::{Value, json};

use super::{Judgement, Outcome};
use crate::config::{CaseFamily, EdgeCasesGate};
use crate::model_files::{ColType, Column, Signature, Tensor};
use crate::serving::host::cells_to_batch;
use crate::serving::{Cell, Payload, Scorer, Session, Which, dataframe_split};

/// One request of the gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub family: CaseFamily,
    pub name: String,
    pub rows: usize,
    /// The request as JSON (`dataframe_split`, or `inputs` for tensors).
    pub body: String,
    /// A column signature's rows, for the columnar path.
    pub cells: Option<Vec<Vec<Cell>>>,
}

const LONG_STRING_LEN: usize = 10_000;
const UNICODE: &str = "ünïcødé ✓ 你好 🙂 \u{202e}";

/// The selected families in sending order (the order of [`CaseFamily::ALL`]), whatever the
/// order of the list given.
fn in_order(families: &[CaseFamily]) -> impl Iterator<Item = CaseFamily> + '_ {
    CaseFamily::ALL
        .iter()
        .copied()
        .filter(move |f| families.contains(f))
}

fn default_cell(t: ColType) -> Cell {
    match t {
        ColType::Boolean => Cell::Bool(false),
        ColType::Integer | ColType::Long => Cell::Int(1),
        ColType::Float | ColType::Double => Cell::Float(0.5),
        ColType::String => Cell::Str("a".into()),
        ColType::Binary => Cell::Str(String::new()),
        ColType::Datetime => Cell::Str("2024-01-01T00:00:00".into()),
        ColType::Other => Cell::Null,
    }
}

fn column_names(cols: &[Column]) -> Vec<String> {
    cols.iter()
        .enumerate()
        .map(|(i, c)| c.name.clone().unwrap_or_else(|| i.to_string()))
        .collect()
}

/// A typical row: the serving example's first row where it names the columns, else defaults.
pub fn base_row(cols: &[Column], example: Option<&Value>) -> Vec<Cell> {
    let names = column_names(cols);
    let split = example.and_then(|e| e.get("dataframe_split"));
    let ex_cols: Vec<&str> = split
        .and_then(|s| s["columns"].as_array())
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let ex_row = split
        .and_then(|s| s["data"].get(0))
        .and_then(Value::as_array);
    cols.iter()
        .zip(&names)
        .map(|(c, n)| {
            let found = ex_cols
                .iter()
                .position(|e| e == n)
                .and_then(|i| ex_row.and_then(|r| r.get(i)));
            match found {
                Some(v) if !v.is_null() => Cell::Raw(v.clone()),
                _ => default_cell(c.ty),
            }
        })
        .collect()
}

/// The cases of the selected families for a column signature. A family with nothing to
/// vary (strings without a string column…) sends nothing.
pub fn column_cases(
    cols: &[Column],
    base: &[Cell],
    families: &[CaseFamily],
    batch_rows: usize,
) -> Vec<Case> {
    let names = column_names(cols);
    let case = |family, name: &str, rows: Vec<Vec<Cell>>| Case {
        family,
        name: name.to_string(),
        rows: rows.len(),
        body: dataframe_split(&names, &rows),
        cells: Some(rows),
    };
    // The base row with the cells `f` has a value for replaced.
    let with = |f: &dyn Fn(&Column) -> Option<Cell>| -> Vec<Vec<Cell>> {
        vec![
            cols.iter()
                .zip(base)
                .map(|(c, b)| f(c).unwrap_or_else(|| b.clone()))
                .collect(),
        ]
    };
    let numeric = |v: f64| {
        move |c: &Column| match c.ty {
            ColType::Integer | ColType::Long => Some(Cell::Int(v as i64)),
            ColType::Float | ColType::Double => Some(Cell::Float(v)),
            _ => None,
        }
    };
    let has = |t: &dyn Fn(ColType) -> bool| cols.iter().any(|c| t(c.ty));
    let mut out = Vec::new();
    for family in in_order(families) {
        let mut push = |name: &str, rows| out.push(case(family, name, rows));
        match family {
            CaseFamily::Zeros if has(&ColType::is_numeric) => push("zeros", with(&numeric(0.0))),
            CaseFamily::Large if has(&ColType::is_numeric) => {
                push("+1e6", with(&numeric(1e6)));
                push("-1e6", with(&numeric(-1e6)));
            }
            CaseFamily::Nan if has(&ColType::is_float) => push(
                "NaN in float columns",
                with(&|c| c.ty.is_float().then_some(Cell::Float(f64::NAN))),
            ),
            CaseFamily::Missing if cols.iter().any(|c| !c.required) => push(
                "missing optional values",
                with(&|c| (!c.required).then_some(Cell::Null)),
            ),
            CaseFamily::Strings if has(&|t| t == ColType::String) => {
                let strings = |s: &str| {
                    let s = s.to_string();
                    move |c: &Column| (c.ty == ColType::String).then(|| Cell::Str(s.clone()))
                };
                push("empty strings", with(&strings("")));
                push("long strings", with(&strings(&"x".repeat(LONG_STRING_LEN))));
                push("unicode strings", with(&strings(UNICODE)));
            }
            CaseFamily::Booleans if has(&|t| t == ColType::Boolean) => {
                for b in [true, false] {
                    push(
                        &format!("booleans {b}"),
                        with(&|c| (c.ty == ColType::Boolean).then_some(Cell::Bool(b))),
                    );
                }
            }
            CaseFamily::OneRow => push("1-row batch", vec![base.to_vec()]),
            CaseFamily::Batch => push(
                &format!("{batch_rows}-row batch"),
                vec![base.to_vec(); batch_rows],
            ),
            CaseFamily::DtypeLimits if has(&ColType::is_numeric) => {
                push(
                    "dtype minimum",
                    with(&|c| match c.ty {
                        ColType::Integer => Some(Cell::Int(i32::MIN as i64)),
                        ColType::Long => Some(Cell::Int(i64::MIN)),
                        ColType::Float => Some(Cell::Float(f32::MIN as f64)),
                        ColType::Double => Some(Cell::Float(f64::MIN)),
                        _ => None,
                    }),
                );
                push(
                    "dtype maximum",
                    with(&|c| match c.ty {
                        ColType::Integer => Some(Cell::Int(i32::MAX as i64)),
                        ColType::Long => Some(Cell::Int(i64::MAX)),
                        ColType::Float => Some(Cell::Float(f32::MAX as f64)),
                        ColType::Double => Some(Cell::Float(f64::MAX)),
                        _ => None,
                    }),
                );
            }
            _ => {}
        }
    }
    out
}

/// What a tensor's numpy dtype holds, as far as the cases go.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Dtype {
    Int {
        min: i128,
        max: i128,
    },
    Float {
        max: f64,
    },
    Bool,
    /// Strings, bytes, objects, datetimes: sent a typical value, never varied.
    Other,
}

fn dtype(name: &str) -> Dtype {
    let int = |min: i128, max: i128| Dtype::Int { min, max };
    match name {
        "int8" => int(i8::MIN.into(), i8::MAX.into()),
        "int16" => int(i16::MIN.into(), i16::MAX.into()),
        "int32" => int(i32::MIN.into(), i32::MAX.into()),
        "uint8" => int(0, u8::MAX.into()),
        "uint16" => int(0, u16::MAX.into()),
        "uint32" => int(0, u32::MAX.into()),
        "uint64" => int(0, u64::MAX.into()),
        "float16" => Dtype::Float { max: 65504.0 },
        "float32" => Dtype::Float {
            max: f32::MAX.into(),
        },
        "bool" => Dtype::Bool,
        n if n.starts_with("int") => int(i64::MIN.into(), i64::MAX.into()),
        n if n.starts_with("float") => Dtype::Float { max: f64::MAX },
        _ => Dtype::Other,
    }
}

impl Dtype {
    fn is_numeric(self) -> bool {
        matches!(self, Dtype::Int { .. } | Dtype::Float { .. })
    }

    /// A typical value, as a JSON token.
    fn base(self) -> String {
        match self {
            Dtype::Int { .. } => "1".into(),
            Dtype::Float { .. } => "0.5".into(),
            Dtype::Bool => "true".into(),
            Dtype::Other => "\"a\"".into(),
        }
    }

    /// `v` in a numeric dtype, clamped to its range (±1e6 does not fit an int8: that is the
    /// `dtype_limits` family's question, not `large`'s); the typical value otherwise.
    fn number(self, v: f64) -> String {
        match self {
            Dtype::Int { min, max } => (v as i128).clamp(min, max).to_string(),
            // `{:?}` keeps a decimal point and full precision (1e6 -> 1000000.0).
            Dtype::Float { max } => format!("{:?}", v.clamp(-max, max)),
            _ => self.base(),
        }
    }
}

/// The dimensions a tensor of `shape` is written with: the first variable dimension (-1) is
/// the batch and gets `rows`; any other variable one gets 1; no shape at all is a batch.
fn dims(shape: &[i64], rows: usize) -> Vec<usize> {
    if shape.is_empty() {
        return vec![rows];
    }
    let mut batch = Some(rows);
    shape
        .iter()
        .map(|d| match usize::try_from(*d) {
            Ok(d) => d,
            Err(_) => batch.take().unwrap_or(1),
        })
        .collect()
}

/// A tensor of `shape` filled with `token`, written as nested JSON arrays (see [`dims`]).
fn write_filled(shape: &[i64], rows: usize, token: &str, out: &mut String) {
    fn fill(dims: &[usize], token: &str, out: &mut String) {
        match dims.split_first() {
            None => out.push_str(token),
            Some((n, rest)) => {
                out.push('[');
                for i in 0..*n {
                    if i > 0 {
                        out.push(',');
                    }
                    fill(rest, token, out);
                }
                out.push(']');
            }
        }
    }
    fill(&dims(shape, rows), token, out);
}

/// The most values (cells or tensor elements) one request may carry, and the most dimensions
/// a tensor may have (numpy's own limit). A signature comes from the model's MLmodel file:
/// without these, a shape like `[-1, 100000, 100000]` builds a body of 10^10 values and
/// exhausts memory, and a shape of 100,000 dimensions overflows the stack while it is
/// written (one level of recursion per dimension). Found by the edge_cases fuzz target.
pub const MAX_VALUES: u64 = 10_000_000;
pub const MAX_DIMS: usize = 64;

/// Whether the cases of `families` for `sig` fit in [`MAX_VALUES`] and [`MAX_DIMS`]: checked
/// before any is built, since building is what would exhaust memory.
pub fn check_size(
    sig: &Signature,
    families: &[CaseFamily],
    batch_rows: usize,
) -> Result<(), String> {
    let rows = if families.contains(&CaseFamily::Batch) {
        batch_rows.max(1)
    } else {
        1
    };
    let values = match sig {
        Signature::Columns(cols) => (cols.len() as u64).checked_mul(rows as u64),
        Signature::Tensors(tensors) => {
            if let Some((i, t)) = tensors
                .iter()
                .enumerate()
                .find(|(_, t)| t.shape.len() > MAX_DIMS)
            {
                return Err(format!(
                    "tensor input {} has {} dimensions, more than numpy's {MAX_DIMS}",
                    t.name.clone().unwrap_or_else(|| format!("input_{i}")),
                    t.shape.len()
                ));
            }
            tensors.iter().try_fold(0u64, |sum, t| {
                let one = dims(&t.shape, rows)
                    .iter()
                    .try_fold(1u64, |p, d| p.checked_mul(*d as u64))?;
                sum.checked_add(one)
            })
        }
    };
    match values {
        Some(v) if v <= MAX_VALUES => Ok(()),
        _ => Err(format!(
            "a request of {rows} row(s) of this signature ({}) would carry {} values, more than {MAX_VALUES}{}",
            sig.describe(),
            values.map_or_else(|| "too many".to_string(), |v| v.to_string()),
            if rows > 1 { "; lower batch_rows" } else { "" }
        )),
    }
}

/// `{"inputs": …}`: one nested array, or an object of them by input name. Written by hand
/// rather than through `serde_json::Value`, which cannot hold NaN.
fn tensor_body(tensors: &[Tensor], rows: usize, token: &dyn Fn(Dtype) -> String) -> String {
    let mut out = String::from("{\"inputs\":");
    if let [t] = tensors
        && t.name.is_none()
    {
        write_filled(&t.shape, rows, &token(dtype(&t.dtype)), &mut out);
    } else {
        out.push('{');
        for (i, t) in tensors.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let name = t.name.clone().unwrap_or_else(|| format!("input_{i}"));
            out.push_str(&Value::String(name).to_string());
            out.push(':');
            write_filled(&t.shape, rows, &token(dtype(&t.dtype)), &mut out);
        }
        out.push('}');
    }
    out.push('}');
    out
}

/// The cases of the selected families for a tensor signature. Tensors have no optional
/// inputs and no string variations, so `missing` and `strings` send nothing.
pub fn tensor_cases(tensors: &[Tensor], families: &[CaseFamily], batch_rows: usize) -> Vec<Case> {
    let has = |f: &dyn Fn(Dtype) -> bool| tensors.iter().any(|t| f(dtype(&t.dtype)));
    let mut out = Vec::new();
    for family in in_order(families) {
        let mut push = |name: &str, rows: usize, token: &dyn Fn(Dtype) -> String| {
            out.push(Case {
                family,
                name: name.to_string(),
                rows,
                body: tensor_body(tensors, rows, token),
                cells: None,
            })
        };
        let numeric = has(&Dtype::is_numeric);
        match family {
            CaseFamily::Zeros if numeric => push("zeros", 1, &|d| d.number(0.0)),
            CaseFamily::Large if numeric => {
                push("+1e6", 1, &|d| d.number(1e6));
                push("-1e6", 1, &|d| d.number(-1e6));
            }
            CaseFamily::Nan if has(&|d| matches!(d, Dtype::Float { .. })) => {
                push("NaN in float tensors", 1, &|d| match d {
                    // The bare token Python's json reads; JSON proper cannot say NaN.
                    Dtype::Float { .. } => "NaN".into(),
                    _ => d.base(),
                })
            }
            CaseFamily::Booleans if has(&|d| d == Dtype::Bool) => {
                for b in [true, false] {
                    push(&format!("booleans {b}"), 1, &|d| match d {
                        Dtype::Bool => b.to_string(),
                        _ => d.base(),
                    });
                }
            }
            CaseFamily::OneRow => push("1-row batch", 1, &Dtype::base),
            CaseFamily::Batch => push(&format!("{batch_rows}-row batch"), batch_rows, &Dtype::base),
            CaseFamily::DtypeLimits if numeric => {
                push("dtype minimum", 1, &|d| match d {
                    Dtype::Int { min, .. } => min.to_string(),
                    Dtype::Float { max } => format!("{:?}", -max),
                    _ => d.base(),
                });
                push("dtype maximum", 1, &|d| match d {
                    Dtype::Int { max, .. } => max.to_string(),
                    Dtype::Float { max } => format!("{max:?}"),
                    _ => d.base(),
                });
            }
            _ => {}
        }
    }
    out
}

pub async fn judge(g: &EdgeCasesGate, s: &Session) -> Judgement {
    match run(g, s).await {
        Ok(j) => j,
        Err(e) => Judgement::error(e),
    }
}

/// The signature's column names and types, for the columnar path.
type Columns = Option<(Vec<String>, Vec<ColType>)>;

async fn run(g: &EdgeCasesGate, s: &Session) -> Result<Judgement, String> {
    let (cases, described, columns) = cases_for(g, s).await?;
    let not_applicable: Vec<&str> = in_order(&g.cases)
        .filter(|f| !cases.iter().any(|c| c.family == *f))
        .map(CaseFamily::name)
        .collect();
    if cases.is_empty() {
        // Passing on nothing sent would be a verdict without evidence.
        return Err(format!(
            "none of the case families in `cases` ({}) applies to this signature ({described}): nothing to send",
            not_applicable.join(", ")
        ));
    }
    let scorer = s.scorer(Which::Candidate).await?;
    let mut outcomes = Vec::with_capacity(cases.len());
    for case in &cases {
        outcomes.push(score_case(&scorer, case, &columns).await);
    }
    Ok(verdict(g, &cases, &outcomes, &described, &not_applicable))
}

/// The cases of the candidate's signature, its description, and its columns.
async fn cases_for(g: &EdgeCasesGate, s: &Session) -> Result<(Vec<Case>, String, Columns), String> {
    let files = s.files().await?;
    let Some(sig) = &files.signature else {
        return Err(format!(
            "v{} has no signature in its MLmodel: edge cases cannot be built (log the model with a signature or input_example)",
            s.candidate().version
        ));
    };
    check_size(sig, &g.cases, g.batch_rows)?;
    Ok(match sig {
        Signature::Columns(cols) => {
            let example = s.serving_example().await.ok().flatten();
            let base = base_row(cols, example.as_deref());
            let columns = (column_names(cols), cols.iter().map(|c| c.ty).collect());
            (
                column_cases(cols, &base, &g.cases, g.batch_rows),
                sig.describe(),
                Some(columns),
            )
        }
        Signature::Tensors(t) => (
            tensor_cases(t, &g.cases, g.batch_rows),
            sig.describe(),
            None,
        ),
    })
}

/// Score one case: `Ok` when answered with one prediction per row. A case whose cells have
/// no columnar form (an example value of another type) goes as JSON, as it would to a served
/// model.
async fn score_case(scorer: &Scorer, case: &Case, columns: &Columns) -> Result<(), String> {
    let table = match (&case.cells, columns) {
        (Some(rows), Some((names, types))) if scorer.columnar() => {
            cells_to_batch(names, types, rows)
        }
        _ => None,
    };
    let payload = match &table {
        Some(t) => Payload::Table(t),
        None => Payload::Json(&case.body),
    };
    match scorer.score(payload).await {
        Err(e) => Err(e.to_string()),
        Ok(p) if p.len() == case.rows => Ok(()),
        Ok(p) => Err(format!("{} predictions for {} rows", p.len(), case.rows)),
    }
}

/// The gate's judgement from each case's outcome.
fn verdict(
    g: &EdgeCasesGate,
    cases: &[Case],
    outcomes: &[Result<(), String>],
    described: &str,
    not_applicable: &[&str],
) -> Judgement {
    let sent: Vec<&str> = in_order(&g.cases)
        .filter(|f| cases.iter().any(|c| c.family == *f))
        .map(CaseFamily::name)
        .collect();
    let mut results = Vec::new();
    let mut failures = Vec::new();
    let mut failing = Vec::new();
    for (case, outcome) in cases.iter().zip(outcomes) {
        let mut r = json!({"case": case.name, "family": case.family.name(), "rows": case.rows});
        match outcome {
            Ok(()) => r["outcome"] = json!("pass"),
            Err(e) => {
                r["outcome"] = json!("fail");
                r["error"] = json!(e);
                failures.push(format!("{} [{}] ({e})", case.name, case.family));
                failing.push(case.name.clone());
            }
        }
        results.push(r);
    }
    // The failing names are in `observed` too: the report drops `details` first when capped.
    let observed = json!({"cases": cases.len(), "failed": failures.len(), "failing": failing});
    let threshold = json!({"failed": 0});
    let mut j = if failures.is_empty() {
        let skipped = if not_applicable.is_empty() {
            String::new()
        } else {
            format!("; not applicable: {}", not_applicable.join(", "))
        };
        let msg = format!(
            "all {} cases answered with one prediction per row ({described}; families: {}{skipped})",
            cases.len(),
            sent.join(", ")
        );
        Judgement::new(Outcome::Pass, observed, threshold, msg)
    } else {
        let msg = format!(
            "{} of {} cases failed: {}",
            failures.len(),
            cases.len(),
            failures.join("; ")
        );
        Judgement::new(Outcome::Fail, observed, threshold, msg)
    };
    j.details = Some(json!({"cases": results, "families": sent, "not_applicable": not_applicable}));
    j
}

#[cfg(test)]
#[path = "edge_cases_tests.rs"]
mod tests;
