//! Building the `edge_cases` requests from any signature (`stagegate::gates::edge_cases`):
//! the base row from the serving example, then every selected family, for column and tensor
//! signatures alike, after the size check the gate makes first. Only the building; nothing
//! is sent.
//!
//! Input: two bytes selecting case families (bit i = `CaseFamily::ALL[i]`), one byte for
//! `batch_rows` (1–100: the body grows linearly with it, up to the config's 100,000, which
//! would only slow the search), then the signature's `inputs` JSON as MLflow writes it in
//! the MLmodel file, then optionally a NUL byte and the serving input example (JSON).
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use stagegate::config::CaseFamily;
use stagegate::gates::edge_cases::{Case, base_row, check_size, column_cases, tensor_cases};
use stagegate::model_files::{Signature, parse_inputs};

fuzz_target!(|data: &[u8]| {
    let [lo, hi, rows, rest @ ..] = data else {
        return;
    };
    let bits = u16::from_le_bytes([*lo, *hi]);
    let families: Vec<CaseFamily> = CaseFamily::ALL
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, f)| *f)
        .collect();
    let batch_rows = 1 + usize::from(*rows) % 100;
    let (inputs, example) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let Ok(inputs) = std::str::from_utf8(inputs) else {
        return;
    };
    let Ok(sig) = parse_inputs(inputs) else {
        return;
    };
    // The gate refuses a signature whose requests would be too large before building any.
    if check_size(&sig, &families, batch_rows).is_err() {
        return;
    }
    let example: Option<Value> = example.and_then(|e| serde_json::from_slice(e).ok());
    let cases = match &sig {
        Signature::Columns(cols) => {
            let base = base_row(cols, example.as_ref());
            assert_eq!(
                base.len(),
                cols.len(),
                "the base row has one cell per column"
            );
            column_cases(cols, &base, &families, batch_rows)
        }
        Signature::Tensors(t) => tensor_cases(t, &families, batch_rows),
    };
    for case in &cases {
        check(case, &families, batch_rows);
    }
});

/// Oracles: each case belongs to a selected family, has as many rows as it says, and is
/// JSON — except the NaN family's bare `NaN` tokens, which only Python's json reads.
fn check(case: &Case, families: &[CaseFamily], batch_rows: usize) {
    assert!(families.contains(&case.family), "{case:?}");
    let expected_rows = if case.family == CaseFamily::Batch {
        batch_rows
    } else {
        1
    };
    assert_eq!(case.rows, expected_rows, "{}", case.name);
    if case.family != CaseFamily::Nan {
        let body: Value = serde_json::from_str(&case.body)
            .unwrap_or_else(|e| panic!("case {} is not JSON ({e}): {}", case.name, case.body));
        assert!(body.is_object(), "{}", case.name);
    }
}
