"""Benchmark fixture: a RandomForest of 100 trees on 20 make_classification features, with the
metrics, params and tags examples/pytest-gates checks, moved to Staging; trained on a pool
large enough to leave a labelled holdout of ROWS unseen rows, written as CSV and Parquet.

    python served_fixture.py NAME ROWS OUTDIR
"""
import os
import sys
import warnings

warnings.filterwarnings("ignore")
import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402

name, rows, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
X, y = make_classification(n_samples=2000 + rows, n_features=20, random_state=42)
cols = [f"feature_{i}" for i in range(20)]
df = pd.DataFrame(X, columns=cols)
mlflow.set_experiment("stagegate-bench")
with mlflow.start_run():
    clf = RandomForestClassifier(n_estimators=100, random_state=42).fit(df[:1500], y[:1500])
    pred = clf.predict(df[1500:2000])
    mlflow.log_metric("val_accuracy", accuracy_score(y[1500:2000], pred))
    mlflow.log_metric("val_f1", f1_score(y[1500:2000], pred))
    mlflow.log_param("n_estimators", 100)
    mlflow.log_param("seed", 42)
    info = mlflow.sklearn.log_model(clf, name="model", input_example=df[1500:1505], pip_requirements=["scikit-learn", "pandas", "numpy"],
                                    skops_trusted_types=["sklearn.tree._tree.Tree"])
client = MlflowClient()
try:
    client.create_registered_model(name)
except mlflow.exceptions.MlflowException:
    pass
mv = client.create_model_version(name, info.model_uri, run_id=info.run_id, model_id=info.model_id, await_creation_for=0,
                                 tags={"accuracy": "0.9", "training_dataset_version": "v1", "feature_schema_version": "1"})
client.transition_model_version_stage(name, mv.version, "Staging")
holdout = df[2000:].copy()
holdout["target"] = y[2000:]
os.makedirs(out, exist_ok=True)
holdout.to_csv(os.path.join(out, "holdout.csv"), index=False)
holdout.to_parquet(os.path.join(out, "holdout.parquet"), index=False)
print(mv.version)
