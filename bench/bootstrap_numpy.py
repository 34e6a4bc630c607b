"""The peer of examples/bootstrap.rs: the same paired bootstrap of an accuracy difference as a
user would write it with numpy (two boolean arrays, `rng.integers` per resample, a fancy-index
mean of each). Same data as the example; numpy's generator, so the interval differs in its last
digits. Prints one JSON line.

    python bench/bootstrap_numpy.py [ROWS] [RESAMPLES]
"""
import json
import sys
import time

import numpy as np

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
resamples = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000
i = np.arange(rows)
truth = (i * 7919 % 13 < 6).astype(np.int64)
cand = np.where(i % 11 < 2, 1 - truth, truth)
champ = np.where((i + 3) % 10 < 2, 1 - truth, truth)

started = time.monotonic()
cand_ok, champ_ok = cand == truth, champ == truth
rng = np.random.default_rng(1)
diffs = np.empty(resamples)
for r in range(resamples):
    idx = rng.integers(0, rows, rows)
    diffs[r] = cand_ok[idx].mean() - champ_ok[idx].mean()
low, high = np.quantile(diffs, [0.025, 0.975])
print(json.dumps({"rows": rows, "resamples": resamples, "numpy_s": round(time.monotonic() - started, 3),
                  "low": float(low), "high": float(high)}))
