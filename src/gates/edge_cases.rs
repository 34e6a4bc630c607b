//! `edge_cases`: requests built from the model signature's types — zeros, ±1e6, each type's
//! min and max, NaN and missing values where a column is not required, empty/long/unicode
//! strings, booleans, a one-row and a large batch. Pass = every request answered 200 with
//! exactly one prediction per row.

use serde_json::{Value, json};

use super::{Judgement, Outcome};
use crate::config::EdgeCasesGate;
use crate::model_files::{ColType, Column, Signature, Tensor};
use crate::serving::{
    Cell, Session, Which, dataframe_split, prediction_count, server_error, tensor_inputs,
};

/// One request of the gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: String,
    pub rows: usize,
    pub body: String,
}

const LONG_STRING_LEN: usize = 10_000;
const UNICODE: &str = "ünïcødé ✓ 你好 🙂 \u{202e}";

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

/// The cases for a column signature.
pub fn column_cases(cols: &[Column], base: &[Cell], batch_rows: usize) -> Vec<Case> {
    let names = column_names(cols);
    let case = |name: &str, rows: Vec<Vec<Cell>>| Case {
        name: name.to_string(),
        rows: rows.len(),
        body: dataframe_split(&names, &rows),
    };
    let with = |f: &dyn Fn(&Column) -> Option<Cell>| -> Vec<Cell> {
        cols.iter()
            .zip(base)
            .map(|(c, b)| f(c).unwrap_or_else(|| b.clone()))
            .collect()
    };
    let numeric = |v: f64| {
        move |c: &Column| match c.ty {
            ColType::Integer | ColType::Long => Some(Cell::Int(v as i64)),
            ColType::Float | ColType::Double => Some(Cell::Float(v)),
            _ => None,
        }
    };
    let mut out = vec![
        case("zeros", vec![with(&numeric(0.0))]),
        case("+1e6", vec![with(&numeric(1e6))]),
        case("-1e6", vec![with(&numeric(-1e6))]),
        case(
            "type minimum",
            vec![with(&|c| match c.ty {
                ColType::Integer => Some(Cell::Int(i32::MIN as i64)),
                ColType::Long => Some(Cell::Int(i64::MIN)),
                ColType::Float => Some(Cell::Float(f32::MIN as f64)),
                ColType::Double => Some(Cell::Float(f64::MIN)),
                _ => None,
            })],
        ),
        case(
            "type maximum",
            vec![with(&|c| match c.ty {
                ColType::Integer => Some(Cell::Int(i32::MAX as i64)),
                ColType::Long => Some(Cell::Int(i64::MAX)),
                ColType::Float => Some(Cell::Float(f32::MAX as f64)),
                ColType::Double => Some(Cell::Float(f64::MAX)),
                _ => None,
            })],
        ),
    ];
    let optional: Vec<&Column> = cols.iter().filter(|c| !c.required).collect();
    if optional.iter().any(|c| c.ty.is_float()) {
        out.push(case(
            "NaN in optional columns",
            vec![with(&|c| {
                (!c.required && c.ty.is_float()).then_some(Cell::Float(f64::NAN))
            })],
        ));
    }
    if !optional.is_empty() {
        out.push(case(
            "missing optional values",
            vec![with(&|c| (!c.required).then_some(Cell::Null))],
        ));
    }
    if cols.iter().any(|c| c.ty == ColType::String) {
        let strings =
            |s: String| move |c: &Column| (c.ty == ColType::String).then(|| Cell::Str(s.clone()));
        out.push(case("empty strings", vec![with(&strings(String::new()))]));
        out.push(case(
            "long strings",
            vec![with(&strings("x".repeat(LONG_STRING_LEN)))],
        ));
        out.push(case(
            "unicode strings",
            vec![with(&strings(UNICODE.to_string()))],
        ));
    }
    if cols.iter().any(|c| c.ty == ColType::Boolean) {
        out.push(case(
            "booleans true",
            vec![with(&|c| {
                (c.ty == ColType::Boolean).then_some(Cell::Bool(true))
            })],
        ));
        out.push(case(
            "booleans false",
            vec![with(&|c| {
                (c.ty == ColType::Boolean).then_some(Cell::Bool(false))
            })],
        ));
    }
    out.push(case("1-row batch", vec![base.to_vec()]));
    out.push(case(
        &format!("{batch_rows}-row batch"),
        vec![base.to_vec(); batch_rows],
    ));
    out
}

fn is_int(dtype: &str) -> bool {
    dtype.starts_with("int") || dtype.starts_with("uint")
}

/// A tensor of `shape` (the batch dimension, -1, set to `rows`) filled with `v`.
fn filled(shape: &[i64], rows: usize, v: &Value) -> Value {
    fn fill(dims: &[usize], v: &Value) -> Value {
        match dims.split_first() {
            None => v.clone(),
            Some((n, rest)) => Value::Array((0..*n).map(|_| fill(rest, v)).collect()),
        }
    }
    let dims: Vec<usize> = if shape.is_empty() {
        vec![rows]
    } else {
        shape
            .iter()
            .map(|d| if *d < 0 { rows } else { *d as usize })
            .collect()
    };
    fill(&dims, v)
}

/// The cases for a tensor signature (NaN and missing values do not apply to tensors).
pub fn tensor_cases(tensors: &[Tensor], batch_rows: usize) -> Vec<Case> {
    let value = |t: &Tensor, f: f64, i: i64| if is_int(&t.dtype) { json!(i) } else { json!(f) };
    let int_range = |t: &Tensor| -> (i64, i64) {
        match t.dtype.as_str() {
            "int8" => (i8::MIN as i64, i8::MAX as i64),
            "int16" => (i16::MIN as i64, i16::MAX as i64),
            "int32" => (i32::MIN as i64, i32::MAX as i64),
            "uint8" => (0, u8::MAX as i64),
            "uint16" => (0, u16::MAX as i64),
            "uint32" => (0, u32::MAX as i64),
            _ => (i64::MIN, i64::MAX),
        }
    };
    let fmax = |t: &Tensor| {
        if t.dtype == "float32" {
            f32::MAX as f64
        } else {
            f64::MAX
        }
    };
    let make = |name: &str, rows: usize, v: &dyn Fn(&Tensor) -> Value| {
        let named: Vec<(Option<String>, Value)> = tensors
            .iter()
            .map(|t| (t.name.clone(), filled(&t.shape, rows, &v(t))))
            .collect();
        Case {
            name: name.to_string(),
            rows,
            body: tensor_inputs(&named),
        }
    };
    vec![
        make("zeros", 1, &|t| value(t, 0.0, 0)),
        make("+1e6", 1, &|t| value(t, 1e6, 1_000_000)),
        make("-1e6", 1, &|t| {
            value(
                t,
                -1e6,
                if t.dtype.starts_with('u') {
                    0
                } else {
                    -1_000_000
                },
            )
        }),
        make("type minimum", 1, &|t| value(t, -fmax(t), int_range(t).0)),
        make("type maximum", 1, &|t| value(t, fmax(t), int_range(t).1)),
        make("1-row batch", 1, &|t| value(t, 0.5, 1)),
        make(&format!("{batch_rows}-row batch"), batch_rows, &|t| {
            value(t, 0.5, 1)
        }),
    ]
}

pub async fn judge(g: &EdgeCasesGate, s: &Session) -> Judgement {
    let files = match s.files().await {
        Ok(f) => f,
        Err(e) => return Judgement::error(e),
    };
    let cases = match &files.signature {
        None => {
            return Judgement::error(format!(
                "v{} has no signature in its MLmodel: edge cases cannot be built (log the model with a signature or input_example)",
                s.candidate().version
            ));
        }
        Some(Signature::Columns(cols)) => {
            let example = s.serving_example().await.ok().flatten();
            column_cases(cols, &base_row(cols, example.as_deref()), g.batch_rows)
        }
        Some(Signature::Tensors(t)) => tensor_cases(t, g.batch_rows),
    };
    let endpoint = match s.endpoint(Which::Candidate).await {
        Ok(e) => e,
        Err(e) => return Judgement::error(e),
    };
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for case in &cases {
        let verdict = match endpoint.invoke(case.body.clone()).await {
            Err(e) => Err(e),
            Ok(a) if a.status != 200 => Err(server_error(&a)),
            Ok(a) => match prediction_count(&a.body) {
                Ok(n) if n == case.rows => Ok(()),
                Ok(n) => Err(format!("{n} predictions for {} rows", case.rows)),
                Err(e) => Err(e),
            },
        };
        results.push(json!({"case": case.name, "rows": case.rows, "ok": verdict.is_ok(), "error": verdict.as_ref().err()}));
        if let Err(e) = verdict {
            failures.push(format!("{} ({e})", case.name));
        }
    }
    let observed = json!({"cases": cases.len(), "failed": failures.len()});
    let threshold = json!({"failed": 0});
    let mut j = if failures.is_empty() {
        Judgement::new(
            Outcome::Pass,
            observed,
            threshold,
            format!(
                "all {} cases answered with one prediction per row ({})",
                cases.len(),
                files
                    .signature
                    .as_ref()
                    .map(|s| s.describe())
                    .unwrap_or_default()
            ),
        )
    } else {
        Judgement::new(
            Outcome::Fail,
            observed,
            threshold,
            format!(
                "{} of {} cases failed: {}",
                failures.len(),
                cases.len(),
                failures.join("; ")
            ),
        )
    };
    j.details = Some(json!({"cases": results}));
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: ColType, required: bool) -> Column {
        Column {
            name: Some(name.into()),
            ty,
            required,
        }
    }

    #[test]
    fn cases_follow_the_column_types() {
        let cols = vec![
            col("x", ColType::Double, true),
            col("y", ColType::Double, false),
            col("s", ColType::String, true),
            col("n", ColType::Long, true),
        ];
        let base = base_row(&cols, None);
        let cases = column_cases(&cols, &base, 1000);
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "zeros",
                "+1e6",
                "-1e6",
                "type minimum",
                "type maximum",
                "NaN in optional columns",
                "missing optional values",
                "empty strings",
                "long strings",
                "unicode strings",
                "1-row batch",
                "1000-row batch"
            ]
        );
        let nan = &cases[5].body;
        assert!(
            nan.contains("[0.5,NaN,\"a\",1]"),
            "only the optional float column gets NaN: {nan}"
        );
        assert!(
            cases[3].body.contains("-9223372036854775808"),
            "long minimum: {}",
            cases[3].body
        );
        assert_eq!(cases[11].rows, 1000);
        assert_eq!(cases[11].body.matches("[0.5,0.5,\"a\",1]").count(), 1000);
    }

    #[test]
    fn required_columns_get_no_nan_or_missing_cases() {
        let cols = vec![
            col("x", ColType::Double, true),
            col("b", ColType::Boolean, true),
        ];
        let names: Vec<String> = column_cases(&cols, &base_row(&cols, None), 5)
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.contains("NaN") || n.contains("missing"))
        );
        assert!(names.contains(&"booleans true".to_string()));
    }

    #[test]
    fn the_base_row_comes_from_the_serving_example() {
        let cols = vec![
            col("a", ColType::Double, true),
            col("b", ColType::Double, true),
        ];
        let ex = json!({"dataframe_split": {"columns": ["b", "a"], "data": [[2.5, 1.5]]}});
        assert_eq!(
            base_row(&cols, Some(&ex)),
            vec![Cell::Raw(json!(1.5)), Cell::Raw(json!(2.5))]
        );
    }

    #[test]
    fn tensor_cases_fill_the_batch_dimension() {
        let t = vec![Tensor {
            name: None,
            dtype: "float64".into(),
            shape: vec![-1, 3],
        }];
        let cases = tensor_cases(&t, 4);
        assert_eq!(cases[0].body, r#"{"inputs":[[0.0,0.0,0.0]]}"#);
        assert_eq!(cases.last().unwrap().rows, 4);
        let ints = vec![Tensor {
            name: Some("ids".into()),
            dtype: "int32".into(),
            shape: vec![-1],
        }];
        assert!(tensor_cases(&ints, 2)[4].body.contains("2147483647"));
    }
}
