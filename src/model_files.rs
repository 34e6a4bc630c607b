//! A model's own files, as the served-model gates need them: the MLmodel signature (column or
//! tensor specs, a JSON string inside YAML) and the `serving_input_example.json` path. Pure.

use std::collections::HashMap;

use serde::Deserialize;
use yaml_rust2::parser::{Event, Parser};
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

/// Limits on an MLmodel file's YAML tree, checked before it is built. MLflow writes a few
/// hundred nodes, five levels deep. The file is the model's artifact, so whoever can log a
/// model writes it; without limits, aliases (each a full copy of its anchor's subtree: ten
/// levels of ten make 10^10 nodes) exhaust memory, and deep nesting overflows the 2 MiB stack
/// of a tokio worker when the tree is cloned or dropped (both recurse once per level).
const MAX_NODES: u64 = 1_000_000;
const MAX_DEPTH: usize = 64;

/// Counts the nodes the YAML loader would build, aliases expanded, and the deepest nesting,
/// from the parser's events alone (nothing is built). Events are pulled one at a time:
/// yaml-rust2's own `Parser::load` recurses once per level, so it cannot be the guard.
#[derive(Default)]
struct TreeSize {
    /// Expanded size of each anchored node, by anchor id.
    anchors: HashMap<usize, u64>,
    /// Open collections: (anchor id, nodes so far).
    open: Vec<(usize, u64)>,
    nodes: u64,
    deepest: usize,
}

impl TreeSize {
    fn node(&mut self, anchor: usize, size: u64) {
        if anchor > 0 {
            self.anchors.insert(anchor, size);
        }
        match self.open.last_mut() {
            Some((_, n)) => *n = n.saturating_add(size),
            None => self.nodes = self.nodes.saturating_add(size),
        }
    }
}

impl TreeSize {
    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Scalar(_, _, anchor, _) => self.node(anchor, 1),
            // The loader copies the anchor's node; an unknown anchor becomes one bad value.
            Event::Alias(id) => self.node(0, self.anchors.get(&id).copied().unwrap_or(1)),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                self.open.push((anchor, 1));
                self.deepest = self.deepest.max(self.open.len());
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, size)) = self.open.pop() {
                    self.node(anchor, size);
                }
            }
            _ => {}
        }
    }

    fn too_big(&self) -> bool {
        self.deepest > MAX_DEPTH
            || self.nodes > MAX_NODES
            || self.open.iter().any(|(_, n)| *n > MAX_NODES)
    }

    /// Reads the whole stream, or up to the first event past a limit.
    fn of(text: &str) -> Result<TreeSize, String> {
        let mut size = TreeSize::default();
        let mut parser = Parser::new_from_str(text);
        loop {
            let (ev, _) = parser
                .next_token()
                .map_err(|e| format!("MLmodel is not valid YAML: {e}"))?;
            if ev == Event::StreamEnd {
                return Ok(size);
            }
            size.on_event(ev);
            if size.too_big() {
                return Ok(size);
            }
        }
    }
}

/// Parse an MLmodel file. A file without a signature is not an error (`signature: None`).
pub fn parse_mlmodel(text: &str) -> Result<ModelFiles, String> {
    let size = TreeSize::of(text)?;
    if size.deepest > MAX_DEPTH {
        return Err(format!(
            "MLmodel nests more than {MAX_DEPTH} levels deep: not an MLmodel file"
        ));
    }
    if size.too_big() {
        return Err(format!(
            "MLmodel has more than {MAX_NODES} nodes once its YAML aliases are expanded: not an MLmodel file"
        ));
    }
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
    let signature = parse_inputs(&inputs)?;
    Ok(ModelFiles {
        signature: Some(signature),
        serving_example_path,
    })
}

/// Parse `signature.inputs`, the JSON spec list MLflow stores as a string inside the MLmodel
/// YAML. Public so the edge-cases fuzzer can start from any signature without the YAML around.
pub fn parse_inputs(inputs: &str) -> Result<Signature, String> {
    let specs: Vec<RawSpec> = serde_json::from_str(inputs)
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
    Ok(signature)
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

    /// Ten levels of ten aliases each: 10^10 nodes once expanded ("billion laughs"). The
    /// file is the model's artifact, which anyone who can log a model writes.
    #[test]
    fn aliases_that_expand_without_bound_are_refused() {
        let mut y = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            y.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        y.push_str("signature:\n  inputs: '[{\"type\": \"double\", \"name\": \"f0\"}]'\n");
        let e = parse_mlmodel(&y).unwrap_err();
        assert!(e.contains("aliases"), "{e}");
        // A few aliases, as PyYAML writes for a shared object, are fine.
        let ok = "env: &e {conda: conda.yaml}\nflavors:\n  python_function: {env: *e}\n";
        assert_eq!(parse_mlmodel(ok).unwrap().signature, None);
    }

    /// Deep nesting, parsed on a thread with tokio's 2 MiB worker stack, where the daemon
    /// parses MLmodel files: dropping or cloning a deep YAML tree recurses once per level.
    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let y = format!("{}x\n", "- ".repeat(100_000));
        let e = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || parse_mlmodel(&y))
            .unwrap()
            .join()
            .unwrap()
            .unwrap_err();
        assert!(e.contains("levels deep"), "{e}");
    }

    #[test]
    fn no_signature_is_not_an_error_but_garbage_is() {
        assert_eq!(parse_mlmodel("flavors: {}\n").unwrap().signature, None);
        assert!(parse_mlmodel("signature:\n  inputs: 'not json'\n").is_err());
        assert!(parse_mlmodel("a: [unclosed\n").is_err());
    }
}
