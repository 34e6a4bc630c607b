"""Load-benchmark fixture for the dataset gate (issue 8): two logistic regressions on the same
8 make_classification features, logged in MLflow 3 form, registered as version 1 (alias
`champion`) and versions 2..1+CANDIDATES (the same logged candidate, one per daemon run, so
each run judges a version that carries no verdict yet), and a labelled Parquet holdout of ROWS
unseen rows. A logistic regression answers a 5,000-row batch in milliseconds: the gate's time
goes to stagegate's own work (reading, encoding, the bootstrap), which is what is measured.

    python load_fixture.py NAME ROWS CANDIDATES OUTDIR     -> prints {"champion": "1", "candidates": [...]}
"""
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore")
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

name, rows, candidates, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
X, y = make_classification(n_samples=4000 + rows, n_features=8, n_informative=5, flip_y=0.05, random_state=7)
cols = [f"f{i}" for i in range(8)]
df = pd.DataFrame(X.astype(np.float64), columns=cols)
mlflow.set_experiment("stagegate-load-bench")
client = MlflowClient()
try:
    client.create_registered_model(name)
except mlflow.exceptions.MlflowException:
    pass


def logged(fit_rows, c):
    with mlflow.start_run():
        clf = LogisticRegression(C=c, max_iter=500).fit(df[fit_rows], y[fit_rows])
        return mlflow.sklearn.log_model(clf, name="model", input_example=df[:5], pip_requirements=["scikit-learn", "pandas", "numpy"])


def register(info):
    return client.create_model_version(name, info.model_uri, run_id=info.run_id, model_id=info.model_id, await_creation_for=0).version


champion = register(logged(slice(0, 2000), 0.01))
client.set_registered_model_alias(name, "champion", champion)
cand = logged(slice(2000, 4000), 1.0)
versions = [register(cand) for _ in range(candidates)]
holdout = df[4000:].copy()
holdout["target"] = y[4000:]
os.makedirs(out, exist_ok=True)
holdout.to_parquet(os.path.join(out, "holdout.parquet"), index=False)
print(json.dumps({"champion": champion, "candidates": versions}))
