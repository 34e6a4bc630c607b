//! A model's own files, as the served-model gates need them: the MLmodel signature (column or
//! tensor specs, a JSON string inside YAML) and the `serving_input_example.json` path. Pure.

use serde::Deserialize;
use yaml_rust2::{Yaml, YamlLoader};

/// What the MLmodel file tells us.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelFiles {
    pub signature: Option<Signature>,
    /// Where the serving input example is, relative to the model root.
    pub serving_example_path: Option<String>,
}

/// The `signature.inputs` of a model.
#[derive(Debug, Clone, PartialEq)]
pub enum Signature {
    Columns(Vec<Column>),
    Tensors(Vec<Tensor>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Unnamed columns are addressed by position.
    pub name: Option<String>,
    pub ty: ColType,
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Boolean,
    Integer,
    Long,
    Float,
    Double,
    String,
    Binary,
    Datetime,
    /// Arrays, objects, maps: sent as given in examples, never generated.
    Other,
}

impl ColType {
    fn parse(s: &str) -> ColType {
        match s {
            "boolean" => ColType::Boolean,
            "integer" => ColType::Integer,
            "long" => ColType::Long,
            "float" => ColType::Float,
            "double" => ColType::Double,
            "string" => ColType::String,
            "binary" => ColType::Binary,
            "datetime" => ColType::Datetime,
            _ => ColType::Other,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, ColType::Float | ColType::Double)
    }

    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            ColType::Integer | ColType::Long | ColType::Float | ColType::Double
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: Option<String>,
    /// numpy dtype, e.g. `float64`, `int32`.
    pub dtype: String,
    /// `-1` marks a variable dimension (the batch).
    pub shape: Vec<i64>,
}

impl Signature {
    pub fn describe(&self) -> String {
        match self {
            Signature::Columns(c) => format!("{} columns", c.len()),
            Signature::Tensors(t) => format!("{} tensor input(s)", t.len()),
        }
    }
}

#[derive(Deserialize)]
struct RawSpec {
    #[serde(rename = "type")]
    ty: String,
    name: Option<String>,
    #[serde(default = "yes")]
    required: bool,
    #[serde(rename = "tensor-spec")]
    tensor_spec: Option<RawTensor>,
}

#[derive(Deserialize)]
struct RawTensor {
    dtype: String,
    #[serde(default)]
    shape: Vec<i64>,
}

fn yes() -> bool {
    true
}

/// Parse an MLmodel file. A file without a signature is not an error (`signature: None`).
pub fn parse_mlmodel(text: &str) -> Result<ModelFiles, String> {
    let docs =
        YamlLoader::load_from_str(text).map_err(|e| format!("MLmodel is not valid YAML: {e}"))?;
    let doc = docs.first().cloned().unwrap_or(Yaml::Null);
    let serving_example_path = doc["saved_input_example_info"]["serving_input_path"]
        .as_str()
        .map(str::to_string);
    let inputs = match &doc["signature"]["inputs"] {
        Yaml::String(s) => s.clone(),
        Yaml::BadValue | Yaml::Null => {
            return Ok(ModelFiles {
                signature: None,
                serving_example_path,
            });
        }
        other => {
            return Err(format!(
                "MLmodel signature.inputs is not a JSON string: {other:?}"
            ));
        }
    };
    let specs: Vec<RawSpec> = serde_json::from_str(&inputs)
        .map_err(|e| format!("MLmodel signature.inputs is not a spec list: {e}"))?;
    let signature = if specs.iter().any(|s| s.ty == "tensor") {
        Signature::Tensors(
            specs
                .into_iter()
                .map(|s| {
                    let t = s
                        .tensor_spec
                        .ok_or("a tensor input lacks its tensor-spec")?;
                    Ok(Tensor {
                        name: s.name,
                        dtype: t.dtype,
                        shape: t.shape,
                    })
                })
                .collect::<Result<_, String>>()?,
        )
    } else {
        Signature::Columns(
            specs
                .into_iter()
                .map(|s| Column {
                    name: s.name,
                    ty: ColType::parse(&s.ty),
                    required: s.required,
                })
                .collect(),
        )
    };
    Ok(ModelFiles {
        signature: Some(signature),
        serving_example_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MLMODEL: &str = r#"
artifact_path: mlflow-artifacts:/1/models/m-1/artifacts
flavors:
  python_function:
    loader_module: mlflow.sklearn
saved_input_example_info:
  artifact_path: input_example.json
  serving_input_path: serving_input_example.json
  type: dataframe
signature:
  inputs: '[{"type": "double", "name": "f0", "required": true}, {"type": "string",
    "name": "segment", "required": false}, {"type": "long", "name": "n", "required":
    true}]'
  outputs: '[{"type": "long", "required": true}]'
  params: null
"#;

    #[test]
    fn column_signature_with_folded_yaml_string() {
        let f = parse_mlmodel(MLMODEL).unwrap();
        assert_eq!(
            f.serving_example_path.as_deref(),
            Some("serving_input_example.json")
        );
        let Some(Signature::Columns(cols)) = f.signature else {
            panic!("columns expected")
        };
        assert_eq!(cols.len(), 3);
        assert_eq!(
            (cols[1].name.as_deref(), cols[1].ty, cols[1].required),
            (Some("segment"), ColType::String, false)
        );
        assert_eq!(cols[2].ty, ColType::Long);
    }

    #[test]
    fn tensor_signature() {
        let y = "signature:\n  inputs: '[{\"type\": \"tensor\", \"tensor-spec\": {\"dtype\": \"float64\", \"shape\": [-1, 4]}}]'\n";
        let f = parse_mlmodel(y).unwrap();
        assert_eq!(
            f.signature,
            Some(Signature::Tensors(vec![Tensor {
                name: None,
                dtype: "float64".into(),
                shape: vec![-1, 4]
            }]))
        );
    }

    #[test]
    fn no_signature_is_not_an_error_but_garbage_is() {
        assert_eq!(parse_mlmodel("flavors: {}\n").unwrap().signature, None);
        assert!(parse_mlmodel("signature:\n  inputs: 'not json'\n").is_err());
        assert!(parse_mlmodel("a: [unclosed\n").is_err());
    }
}
