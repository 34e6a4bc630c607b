"""The floor under every cold run of the full served policy (bench/host_bench.py): a fresh
Python process that loads the model as MLflow does and predicts its own input example once.
Any Python tool that judges the model pays this much before its first real prediction: the
imports (mlflow.pyfunc, pandas, pyarrow, and for MLflow 3's default sklearn format skops with
scikit-learn) and the load. Timed from outside as a whole process.

    python host_load_floor.py MODEL_URI
"""
import sys

import mlflow.pyfunc
from mlflow.models import Model

uri = sys.argv[1]
model = mlflow.pyfunc.load_model(uri)
local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
example = Model.load(local).load_input_example(local)
print(f"predicted {len(model.predict(example))} rows")
