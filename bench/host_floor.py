"""The floor of the 1,000,000-row dataset benchmark (bench/host_bench.py): the least a fresh
Python process does to judge a model on a Parquet holdout — load the pyfunc, read the file,
predict once, compute accuracy. Timed from outside as a whole process.

    python host_floor.py MODEL_URI PARQUET LABEL
"""
import sys

import mlflow.pyfunc
import pandas as pd

uri, path, label = sys.argv[1:4]
model = mlflow.pyfunc.load_model(uri)
df = pd.read_parquet(path)
pred = model.predict(df.drop(columns=[label]))
print(f"accuracy {(pred == df[label].to_numpy()).mean():.6f} rows {len(df)}")
