"""Model quality gates, written by hand: the practice stagegate replaces.

After training has registered a version and moved it to Staging, CI runs this suite; if it
passes, promote_model.py moves the version to Production. The thresholds are constants here,
as they usually are. config/examples/seed-practice.toml maps each test to a stagegate gate.
"""
import os
import time

import numpy as np
import pandas as pd
import pytest

ACCURACY_MIN = 0.85
F1_MIN = 0.82  # watched, not enforced yet: see test_validation_f1
REQUIRED_TAGS = ("accuracy", "training_dataset_version", "feature_schema_version")
RUN_METRICS = ("val_accuracy", "val_f1")
RUN_PARAMS = ("seed",)
LATENCY_P99_MS = 50.0
LATENCY_CALLS = 100


def test_validation_accuracy(run):
    accuracy = run.data.metrics.get("val_accuracy")
    assert accuracy is not None, "the training run logged no val_accuracy"
    assert accuracy >= ACCURACY_MIN, f"val_accuracy {accuracy:.3f} is below {ACCURACY_MIN}"


@pytest.mark.xfail(reason="F1 is watched, not enforced yet", strict=False)
def test_validation_f1(run):
    f1 = run.data.metrics.get("val_f1")
    assert f1 is not None and f1 >= F1_MIN, f"val_f1 {f1} is below {F1_MIN}"


def test_required_tags(version):
    missing = [t for t in REQUIRED_TAGS if not version.tags.get(t)]
    assert not missing, f"version {version.version} lacks the tags {missing}"


def test_run_is_complete(run, model_dir):
    missing = [m for m in RUN_METRICS if m not in run.data.metrics]
    missing += [p for p in RUN_PARAMS if p not in run.data.params]
    assert not missing, f"run {run.info.run_id} did not log {missing}"
    assert os.path.isfile(os.path.join(model_dir, "MLmodel")), "the version has no model files"


def test_model_predicts_its_example(model, rows):
    assert len(model.predict(rows)) == len(rows)


def filled(rows, value):
    """The rows with every numeric value replaced by `value`."""
    out = rows.copy()
    for column in out.select_dtypes("number").columns:
        out[column] = value if out[column].dtype.kind == "f" else int(value)
    return out


@pytest.mark.parametrize("case", ["zeros", "large", "negative", "one_row", "batch"])
def test_model_handles_edge_cases(model, rows, case):
    inputs = {
        "zeros": lambda: filled(rows, 0.0),
        "large": lambda: filled(rows, 1e6),
        "negative": lambda: filled(rows, -1e6),
        "one_row": lambda: rows.iloc[:1],
        "batch": lambda: pd.concat([rows] * 50, ignore_index=True),
    }[case]()
    assert len(model.predict(inputs)) == len(inputs)


def test_local_predict_latency(model, rows):
    one = rows.iloc[:1]
    model.predict(one)  # the first call pays for lazy imports
    took = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        model.predict(one)
        took.append((time.perf_counter() - start) * 1000)
    p99 = float(np.percentile(took, 99))
    assert p99 < LATENCY_P99_MS, f"p99 {p99:.1f} ms over {LATENCY_CALLS} in-process predictions"
