"""What a user could run instead of a `dataset` gate (bench/host_bench.py): MLflow's own
`mlflow.models.evaluate` of the model on the Parquet holdout, as a classifier, in a fresh
process (it logs its metrics and plots to a run of the tracking server). Timed from outside as a
whole process.

    python host_mlflow_evaluate.py MODEL_URI PARQUET LABEL
"""
import sys
import warnings

warnings.filterwarnings("ignore")
import mlflow  # noqa: E402
import pandas as pd  # noqa: E402

uri, path, label = sys.argv[1:4]
df = pd.read_parquet(path)
mlflow.set_experiment("stagegate-bench-evaluate")
with mlflow.start_run():
    result = mlflow.models.evaluate(uri, df, targets=label, model_type="classifier", evaluators=["default"])
print(f"accuracy {result.metrics['accuracy_score']:.6f} rows {len(df)}")
