//! Unit tests of the edge-case builders: which cases each family sends, for columns and
//! tensors, and the exact request bodies.

use super::*;
use CaseFamily::*;

fn col(name: &str, ty: ColType, required: bool) -> Column {
    Column {
        name: Some(name.into()),
        ty,
        required,
    }
}

fn tensor(name: Option<&str>, dtype: &str, shape: &[i64]) -> Tensor {
    Tensor {
        name: name.map(str::to_string),
        dtype: dtype.into(),
        shape: shape.to_vec(),
    }
}

fn names(cases: &[Case]) -> Vec<&str> {
    cases.iter().map(|c| c.name.as_str()).collect()
}

fn named<'a>(cases: &'a [Case], name: &str) -> &'a Case {
    cases.iter().find(|c| c.name == name).unwrap()
}

#[test]
fn the_default_set_follows_the_column_types_without_dtype_limits() {
    let cols = vec![
        col("x", ColType::Double, true),
        col("y", ColType::Float, false),
        col("s", ColType::String, true),
        col("n", ColType::Long, true),
        col("b", ColType::Boolean, true),
    ];
    let cases = column_cases(
        &cols,
        &base_row(&cols, None),
        &CaseFamily::default_set(),
        1000,
    );
    assert_eq!(
        names(&cases),
        vec![
            "zeros",
            "+1e6",
            "-1e6",
            "NaN in float columns",
            "missing optional values",
            "empty strings",
            "long strings",
            "unicode strings",
            "booleans true",
            "booleans false",
            "1-row batch",
            "1000-row batch"
        ]
    );
    // NaN in the required float column too; never in the integer one.
    let nan = &named(&cases, "NaN in float columns").body;
    assert!(nan.contains(r#"[NaN,NaN,"a",1,false]"#), "{nan}");
    // null only where the signature says a value may be missing.
    let missing = &named(&cases, "missing optional values").body;
    assert!(missing.contains(r#"[0.5,null,"a",1,false]"#), "{missing}");
    assert!(
        named(&cases, "+1e6")
            .body
            .contains(r#"[1000000.0,1000000.0,"a",1000000,false]"#)
    );
    let batch = named(&cases, "1000-row batch");
    assert_eq!((batch.rows, batch.family), (1000, Batch));
    assert_eq!(batch.body.matches(r#"[0.5,0.5,"a",1,false]"#).count(), 1000);
    assert!(cases.iter().all(|c| c.family != DtypeLimits));
}

#[test]
fn a_required_float_column_alone_still_gets_nan_but_no_missing_value() {
    let cols = vec![col("x", ColType::Double, true)];
    let cases = column_cases(&cols, &base_row(&cols, None), &[Nan, Missing], 5);
    assert_eq!(names(&cases), vec!["NaN in float columns"]);
    assert!(cases[0].body.ends_with("[[NaN]]}}"), "{}", cases[0].body);
}

#[test]
fn dtype_limits_only_when_chosen() {
    let cols = vec![
        col("i", ColType::Integer, true),
        col("l", ColType::Long, true),
        col("f", ColType::Float, true),
        col("d", ColType::Double, true),
    ];
    let base = base_row(&cols, None);
    let cases = column_cases(&cols, &base, &[DtypeLimits], 5);
    assert_eq!(names(&cases), vec!["dtype minimum", "dtype maximum"]);
    assert!(cases[0].body.contains(
        "[-2147483648,-9223372036854775808,-3.4028234663852886e38,-1.7976931348623157e308]"
    ));
    assert!(
        cases[1].body.contains(
            "[2147483647,9223372036854775807,3.4028234663852886e38,1.7976931348623157e308]"
        )
    );
    assert!(
        column_cases(&cols, &base, &CaseFamily::default_set(), 5)
            .iter()
            .all(|c| !c.name.starts_with("dtype"))
    );
}

#[test]
fn families_with_nothing_to_vary_send_nothing_and_order_is_fixed() {
    let ints = vec![col("n", ColType::Integer, true)];
    let base = base_row(&ints, None);
    assert!(column_cases(&ints, &base, &[Nan, Missing, Strings, Booleans], 5).is_empty());
    let strs = vec![col("s", ColType::String, true)];
    let base = base_row(&strs, None);
    assert!(column_cases(&strs, &base, &[Zeros, Large, DtypeLimits], 5).is_empty());
    // Sent in the families' order, whatever the order asked.
    assert_eq!(
        names(&column_cases(&strs, &base, &[Batch, Strings, OneRow], 3)),
        vec![
            "empty strings",
            "long strings",
            "unicode strings",
            "1-row batch",
            "3-row batch"
        ]
    );
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
fn float_tensors_get_nan_by_default_and_limits_only_when_chosen() {
    let t = vec![tensor(None, "float64", &[-1, 3])];
    let cases = tensor_cases(&t, &CaseFamily::default_set(), 4);
    assert_eq!(
        names(&cases),
        vec![
            "zeros",
            "+1e6",
            "-1e6",
            "NaN in float tensors",
            "1-row batch",
            "4-row batch"
        ]
    );
    assert_eq!(cases[0].body, r#"{"inputs":[[0.0,0.0,0.0]]}"#);
    assert_eq!(cases[3].body, r#"{"inputs":[[NaN,NaN,NaN]]}"#);
    let batch = cases.last().unwrap();
    assert_eq!(batch.rows, 4);
    assert_eq!(
        batch.body,
        format!("{{\"inputs\":[{}]}}", ["[0.5,0.5,0.5]"; 4].join(","))
    );
    let limits = tensor_cases(&t, &[DtypeLimits], 4);
    assert_eq!(names(&limits), vec!["dtype minimum", "dtype maximum"]);
    assert_eq!(
        limits[1].body,
        r#"{"inputs":[[1.7976931348623157e308,1.7976931348623157e308,1.7976931348623157e308]]}"#
    );
}

#[test]
fn named_tensors_of_several_dtypes() {
    let t = vec![
        tensor(Some("ids"), "int32", &[-1]),
        tensor(Some("px"), "uint8", &[-1, 2]),
        tensor(Some("w"), "float32", &[-1]),
        tensor(None, "bool", &[-1]),
    ];
    let all: Vec<CaseFamily> = CaseFamily::ALL.to_vec();
    let cases = tensor_cases(&t, &all, 2);
    let body = |n: &str| named(&cases, n).body.as_str();
    // NaN only in the float tensor; ±1e6 clamped to what each dtype holds.
    assert_eq!(
        body("NaN in float tensors"),
        r#"{"inputs":{"ids":[1],"px":[[1,1]],"w":[NaN],"input_3":[true]}}"#
    );
    assert_eq!(
        body("+1e6"),
        r#"{"inputs":{"ids":[1000000],"px":[[255,255]],"w":[1000000.0],"input_3":[true]}}"#
    );
    assert!(body("-1e6").contains(r#""px":[[0,0]]"#));
    assert_eq!(
        body("dtype maximum"),
        r#"{"inputs":{"ids":[2147483647],"px":[[255,255]],"w":[3.4028234663852886e38],"input_3":[true]}}"#
    );
    assert!(body("booleans false").contains(r#""input_3":[false]"#));
    assert!(
        !names(&cases)
            .iter()
            .any(|n| n.contains("strings") || n.contains("missing"))
    );
    // Integer tensors alone: no NaN case.
    let ints = vec![tensor(None, "int64", &[-1])];
    assert!(tensor_cases(&ints, &[Nan, Booleans], 2).is_empty());
}

#[test]
fn only_the_first_variable_dimension_is_the_batch() {
    let t = vec![tensor(None, "float32", &[-1, -1, 2])];
    let case = &tensor_cases(&t, &[Batch], 3)[0];
    assert_eq!(
        case.body,
        r#"{"inputs":[[[0.5,0.5]],[[0.5,0.5]],[[0.5,0.5]]]}"#
    );
}

/// Shapes from the MLmodel file that would build a request of 10^10 values, or nest 100,000
/// arrays deep, are refused before anything is built (found by the edge_cases fuzz target:
/// `[-1, 100000, 100000]` ran it out of memory).
#[test]
fn oversized_requests_are_refused_before_they_are_built() {
    let huge = Signature::Tensors(vec![tensor(None, "float32", &[-1, 100_000, 100_000])]);
    let e = check_size(&huge, &[OneRow], 1).unwrap_err();
    assert!(e.contains("10000000000 values"), "{e}");
    let overflow = Signature::Tensors(vec![tensor(None, "int8", &[i64::MAX, i64::MAX, 4])]);
    assert!(
        check_size(&overflow, &[Zeros], 1)
            .unwrap_err()
            .contains("too many")
    );
    let deep = Signature::Tensors(vec![tensor(Some("x"), "int8", &[1; 100_000])]);
    assert!(
        check_size(&deep, &[Zeros], 1)
            .unwrap_err()
            .contains("tensor input x has 100000 dimensions")
    );
    // The batch is counted only when it is sent.
    let wide = Signature::Tensors(vec![tensor(None, "float32", &[-1, 1000])]);
    assert!(check_size(&wide, &[OneRow, Batch], 10_000).is_ok());
    assert!(
        check_size(&wide, &[OneRow, Batch], 10_001)
            .unwrap_err()
            .contains("lower batch_rows")
    );
    assert!(check_size(&wide, &[OneRow], 100_000).is_ok());
    let cols = Signature::Columns(
        (0..101)
            .map(|i| col(&format!("c{i}"), ColType::Double, true))
            .collect(),
    );
    assert!(check_size(&cols, &[Batch], 100_000).is_err());
    assert!(check_size(&cols, &[Batch], 99_000).is_ok());
}
