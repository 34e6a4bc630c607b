"""Benchmark fixture: a classifier on 20 make_classification features, with the metrics, params
and tags examples/pytest-gates checks, registered (and moved to Staging unless `--stage ""`);
trained on a pool large enough to leave a labelled holdout of ROWS unseen rows, written as
CSV and/or Parquet (columns feature_0..feature_19 and target).

    python served_fixture.py NAME ROWS OUTDIR [--kind forest|logistic] [--formats csv,parquet]
                             [--versions N] [--stage Staging]

`forest`: a RandomForest of 100 trees (the default); `logistic`: a LogisticRegression.
`--versions N` registers N versions of NAME from the one logged model (the daemon benchmark's
candidates). The last line printed is the versions, separated by spaces.
"""
import argparse
import os
import warnings

warnings.filterwarnings("ignore")
import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("name")
ap.add_argument("rows", type=int)
ap.add_argument("out")
ap.add_argument("--kind", choices=["forest", "logistic"], default="forest")
ap.add_argument("--formats", default="csv,parquet")
ap.add_argument("--versions", type=int, default=1)
ap.add_argument("--stage", default="Staging")
a = ap.parse_args()

X, y = make_classification(n_samples=2000 + a.rows, n_features=20, random_state=42)
cols = [f"feature_{i}" for i in range(20)]
df = pd.DataFrame(X, columns=cols)
mlflow.set_experiment("stagegate-bench")
with mlflow.start_run():
    if a.kind == "forest":
        clf = RandomForestClassifier(n_estimators=100, random_state=42)
        mlflow.log_param("n_estimators", 100)
    else:
        clf = LogisticRegression(max_iter=1000)
    clf.fit(df[:1500], y[:1500])
    pred = clf.predict(df[1500:2000])
    mlflow.log_metric("val_accuracy", accuracy_score(y[1500:2000], pred))
    mlflow.log_metric("val_f1", f1_score(y[1500:2000], pred))
    mlflow.log_param("seed", 42)
    info = mlflow.sklearn.log_model(clf, name="model", input_example=df[1500:1505], pip_requirements=["scikit-learn", "pandas", "numpy"],
                                    skops_trusted_types=["sklearn.tree._tree.Tree"])
client = MlflowClient()
try:
    client.create_registered_model(a.name)
except mlflow.exceptions.MlflowException:
    pass
versions = []
for _ in range(a.versions):
    mv = client.create_model_version(a.name, info.model_uri, run_id=info.run_id, model_id=info.model_id, await_creation_for=0,
                                     tags={"accuracy": "0.9", "training_dataset_version": "v1", "feature_schema_version": "1"})
    if a.stage:
        client.transition_model_version_stage(a.name, mv.version, a.stage)
    versions.append(mv.version)
holdout = df[2000:].copy()
holdout["target"] = y[2000:]
os.makedirs(a.out, exist_ok=True)
formats = a.formats.split(",")
if "csv" in formats:
    holdout.to_csv(os.path.join(a.out, "holdout.csv"), index=False)
if "parquet" in formats:
    holdout.to_parquet(os.path.join(a.out, "holdout.parquet"), index=False)
print(" ".join(versions))
