#!/usr/bin/env python3
"""Reference figures for crew-experiments from GrowthBook's gbstats and SciPy.

Run from this folder with gbstats from PyPI on the path (it brings its SciPy, NumPy and pydantic):

    pip install --target /tmp/gbdeps gbstats==0.8.0
    PYTHONPATH=/tmp/gbdeps python3 make.py

It draws (seeded) pairs of (users, conversions) for a control and a variant and writes reference.json:
gbstats' SequentialTwoSidedTTest (relative lift, tuning 5000) and TwoSidedTTest (Welch, relative) figures for
each pair, and SciPy's chi-square goodness-of-fit (`scipy.stats.chisquare`) for user counts against weights.
tests/reference.rs compares. gbstats computes a p-value as 1 - cdf, which is 0 below about 1e-16; the test
compares p-values to 1e-9 absolute, everything else to 1e-9 relative.
"""

import json

import numpy as np
from scipy import stats
from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import ProportionStatistic

rng = np.random.default_rng(19)
comparisons = []
for i in range(200):
    na = int(rng.integers(20, 200_000))
    nb = int(rng.integers(20, 200_000))
    pa = float(rng.uniform(0.02, 0.6))
    pb = pa * float(rng.uniform(0.8, 1.25))
    ca = int(rng.binomial(na, pa))
    cb = int(rng.binomial(nb, min(pb, 0.95)))
    alpha = [0.05, 0.1, 0.01][i % 3]
    a = ProportionStatistic(n=na, sum=ca)
    b = ProportionStatistic(n=nb, sum=cb)
    seq = SequentialTwoSidedTTest(a, b, SequentialConfig(alpha=alpha)).compute_result()
    fix = TwoSidedTTest(a, b, FrequentistConfig(alpha=alpha)).compute_result()
    comparisons.append(
        {
            "control": [na, ca],
            "variant": [nb, cb],
            "alpha": alpha,
            "sequential": {"lift": seq.expected, "low": seq.ci[0], "high": seq.ci[1], "p_value": seq.p_value},
            "fixed": {"lift": fix.expected, "low": fix.ci[0], "high": fix.ci[1], "p_value": fix.p_value},
        }
    )

srms = []
for i in range(100):
    k = int(rng.integers(2, 5))
    weights = [float(w) for w in rng.integers(1, 100, size=k)]
    total = int(rng.integers(16, 500_000))
    p = np.array(weights) / sum(weights)
    if i % 2:
        p = p * rng.uniform(0.97, 1.03, size=k)
        p = p / p.sum()
    users = [int(u) for u in rng.multinomial(total, p)]
    expected = np.array(weights) / sum(weights) * sum(users)
    r = stats.chisquare(users, expected)
    srms.append({"users": users, "weights": weights, "chi_square": float(r.statistic), "p_value": float(r.pvalue)})

with open("reference.json", "w") as f:
    json.dump({"comparisons": comparisons, "srm": srms}, f, indent=1)
    f.write("\n")
