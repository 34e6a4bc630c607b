//! Rows to the scoring host and predictions back, as Arrow IPC streams (pure).
//!
//! Rows go in the types a JSON request would give pandas: booleans, 64-bit integers, 64-bit
//! floats and text (anything else as its text), so the model's schema casts and enforcement
//! see the same frame whichever path the rows took. Predictions come back as one Arrow column
//! (`list`: a value or a vector per row) or a table (`records`: one record per row), and are
//! read into the same JSON values a `{"predictions": …}` answer gives, so every gate judges
//! them with the same code.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use serde_json::{Map, Value};

use crate::model_files::ColType;
use crate::serving::Cell;

/// `batch`'s columns `names`, in that order and in the request types (see the module doc).
pub fn project(batch: &RecordBatch, names: &[String]) -> Result<RecordBatch, String> {
    let mut fields = Vec::with_capacity(names.len());
    let mut columns = Vec::with_capacity(names.len());
    for name in names {
        let a = batch
            .column_by_name(name)
            .ok_or_else(|| format!("column {name:?} is not in the rows"))?;
        let to = match a.data_type() {
            DataType::Boolean => DataType::Boolean,
            t if t.is_integer() => DataType::Int64,
            t if t.is_floating() => DataType::Float64,
            _ => DataType::Utf8,
        };
        let c = if *a.data_type() == to {
            a.clone()
        } else {
            cast(a, &to).map_err(|e| format!("column {name:?} cannot be sent as {to}: {e}"))?
        };
        fields.push(Field::new(name, to, true));
        columns.push(c);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
}

/// Rows of cells (the edge-case gate's) as a batch typed by the signature's columns. `None`
/// when a cell does not fit its column's type (an example value of another type): such rows
/// have no columnar form and go as JSON, as they would to a served model.
pub fn cells_to_batch(
    names: &[String],
    types: &[ColType],
    rows: &[Vec<Cell>],
) -> Option<RecordBatch> {
    let mut fields = Vec::with_capacity(names.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(names.len());
    for (j, (name, ty)) in names.iter().zip(types).enumerate() {
        let cells = rows.iter().map(|r| r.get(j));
        let (dt, array): (DataType, ArrayRef) = match ty {
            ColType::Boolean => {
                let mut b = BooleanBuilder::new();
                for c in cells {
                    match c? {
                        Cell::Null => b.append_null(),
                        Cell::Bool(v) => b.append_value(*v),
                        Cell::Raw(Value::Bool(v)) => b.append_value(*v),
                        Cell::Raw(Value::Null) => b.append_null(),
                        _ => return None,
                    }
                }
                (DataType::Boolean, Arc::new(b.finish()))
            }
            ColType::Integer | ColType::Long => {
                let mut b = Int64Builder::new();
                for c in cells {
                    match c? {
                        Cell::Null | Cell::Raw(Value::Null) => b.append_null(),
                        Cell::Int(v) => b.append_value(*v),
                        Cell::Raw(Value::Number(n)) => b.append_value(n.as_i64()?),
                        _ => return None,
                    }
                }
                (DataType::Int64, Arc::new(b.finish()))
            }
            ColType::Float | ColType::Double => {
                let mut b = Float64Builder::new();
                for c in cells {
                    match c? {
                        Cell::Null | Cell::Raw(Value::Null) => b.append_null(),
                        Cell::Float(v) => b.append_value(*v),
                        Cell::Int(v) => b.append_value(*v as f64),
                        Cell::Raw(Value::Number(n)) => b.append_value(n.as_f64()?),
                        _ => return None,
                    }
                }
                (DataType::Float64, Arc::new(b.finish()))
            }
            ColType::String | ColType::Binary | ColType::Datetime => {
                let mut b = StringBuilder::new();
                for c in cells {
                    match c? {
                        Cell::Null | Cell::Raw(Value::Null) => b.append_null(),
                        Cell::Str(s) => b.append_value(s),
                        Cell::Raw(Value::String(s)) => b.append_value(s),
                        _ => return None,
                    }
                }
                (DataType::Utf8, Arc::new(b.finish()))
            }
            ColType::Other => return None,
        };
        fields.push(Field::new(name, dt, true));
        columns.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).ok()
}

/// `batch` as an Arrow IPC stream.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() + 1024);
    let mut w = StreamWriter::try_new(&mut out, &batch.schema()).map_err(|e| e.to_string())?;
    w.write(batch).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    drop(w);
    Ok(out)
}

/// How the host laid the predictions out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One column `predictions`: a value, or a vector (probabilities), per row.
    List,
    /// A table: one record (column name to value) per row.
    Records,
}

/// The predictions of an Arrow IPC stream, one JSON value per row.
pub fn predictions(ipc: &[u8], shape: Shape) -> Result<Vec<Value>, String> {
    let reader = StreamReader::try_new(std::io::Cursor::new(ipc), None)
        .map_err(|e| format!("the host's predictions are not Arrow IPC: {e}"))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| format!("the host's predictions are damaged: {e}"))?;
        match shape {
            Shape::List => {
                let col = batch
                    .column_by_name("predictions")
                    .ok_or("the host's predictions have no `predictions` column")?;
                for i in 0..col.len() {
                    out.push(value(col.as_ref(), i)?);
                }
            }
            Shape::Records => {
                let schema = batch.schema();
                for i in 0..batch.num_rows() {
                    let mut row = Map::new();
                    for (f, c) in schema.fields().iter().zip(batch.columns()) {
                        row.insert(f.name().clone(), value(c.as_ref(), i)?);
                    }
                    out.push(Value::Object(row));
                }
            }
        }
    }
    Ok(out)
}

/// One cell as the JSON a scoring server writes: non-finite floats as `null` (what a reader
/// of Python's `NaN` token gets), integers exact, vectors as arrays.
fn value(a: &dyn Array, i: usize) -> Result<Value, String> {
    use arrow::datatypes::*;
    if a.is_null(i) {
        return Ok(Value::Null);
    }
    let float = |f: f64| {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    };
    Ok(match a.data_type() {
        DataType::Boolean => Value::Bool(a.as_boolean().value(i)),
        DataType::Int8 => a.as_primitive::<Int8Type>().value(i).into(),
        DataType::Int16 => a.as_primitive::<Int16Type>().value(i).into(),
        DataType::Int32 => a.as_primitive::<Int32Type>().value(i).into(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i).into(),
        DataType::UInt8 => a.as_primitive::<UInt8Type>().value(i).into(),
        DataType::UInt16 => a.as_primitive::<UInt16Type>().value(i).into(),
        DataType::UInt32 => a.as_primitive::<UInt32Type>().value(i).into(),
        DataType::UInt64 => a.as_primitive::<UInt64Type>().value(i).into(),
        DataType::Float32 => float(a.as_primitive::<Float32Type>().value(i) as f64),
        DataType::Float64 => float(a.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => Value::String(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Value::String(a.as_string::<i64>().value(i).to_string()),
        DataType::FixedSizeList(_, _) => {
            let v = a.as_fixed_size_list().value(i);
            Value::Array(
                (0..v.len())
                    .map(|k| value(v.as_ref(), k))
                    .collect::<Result<_, _>>()?,
            )
        }
        other => {
            return Err(format!(
                "the host sent predictions of type {other}, which stagegate does not read"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{FixedSizeListArray, Float32Array, Float64Array, Int32Array, StringArray};
    use serde_json::json;

    fn ipc(batch: &RecordBatch) -> Vec<u8> {
        encode(batch).unwrap()
    }

    #[test]
    fn predictions_read_as_the_json_answer_would() {
        let b = RecordBatch::try_from_iter([(
            "predictions",
            Arc::new(Float64Array::from(vec![
                Some(1.5),
                None,
                Some(f64::NAN),
                Some(3.0),
            ])) as ArrayRef,
        )])
        .unwrap();
        assert_eq!(
            predictions(&ipc(&b), Shape::List).unwrap(),
            vec![json!(1.5), Value::Null, Value::Null, json!(3.0)]
        );
        let probs = FixedSizeListArray::from_iter_primitive::<arrow::datatypes::Float64Type, _, _>(
            vec![
                Some(vec![Some(0.25), Some(0.75)]),
                Some(vec![Some(1.0), Some(0.0)]),
            ],
            2,
        );
        let b = RecordBatch::try_from_iter([("predictions", Arc::new(probs) as ArrayRef)]).unwrap();
        assert_eq!(
            predictions(&ipc(&b), Shape::List).unwrap(),
            vec![json!([0.25, 0.75]), json!([1.0, 0.0])]
        );
        let b = RecordBatch::try_from_iter([
            (
                "label",
                Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
            ),
            (
                "score",
                Arc::new(Float32Array::from(vec![0.5f32, 0.25])) as ArrayRef,
            ),
            ("n", Arc::new(Int32Array::from(vec![-1, 7])) as ArrayRef),
        ])
        .unwrap();
        assert_eq!(
            predictions(&ipc(&b), Shape::Records).unwrap(),
            vec![
                json!({"label": "a", "score": 0.5, "n": -1}),
                json!({"label": "b", "score": 0.25, "n": 7})
            ]
        );
        assert!(predictions(b"not arrow", Shape::List).is_err());
    }

    #[test]
    fn rows_go_in_the_types_a_json_request_gives() {
        let b = RecordBatch::try_from_iter([
            ("i", Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef),
            (
                "f",
                Arc::new(Float32Array::from(vec![0.5f32, 1.5])) as ArrayRef,
            ),
            ("s", Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef),
        ])
        .unwrap();
        let p = project(&b, &["s".into(), "i".into(), "f".into()]).unwrap();
        let types: Vec<_> = p
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            vec![DataType::Utf8, DataType::Int64, DataType::Float64]
        );
        assert!(project(&b, &["nope".into()]).unwrap_err().contains("nope"));
    }

    #[test]
    fn cells_fit_their_columns_or_the_rows_go_as_json() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let types = [ColType::Double, ColType::Long, ColType::String];
        let rows = vec![
            vec![Cell::Float(f64::NAN), Cell::Int(3), Cell::Str("ü".into())],
            vec![Cell::Null, Cell::Raw(json!(4)), Cell::Null],
        ];
        let b = cells_to_batch(&names, &types, &rows).unwrap();
        assert_eq!((b.num_rows(), b.num_columns()), (2, 3));
        assert!(b.column(0).is_null(1) && b.column(2).is_null(1));
        // A string where the signature says double: no columnar form.
        let odd = vec![vec![Cell::Str("x".into()), Cell::Int(1), Cell::Null]];
        assert!(cells_to_batch(&names, &types, &odd).is_none());
    }
}
