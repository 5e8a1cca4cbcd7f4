#!/usr/bin/python3
"""Reference figures for crew-judge from SciPy.

Run from this folder with Debian's Python and SciPy (apt-get install -y python3-scipy r-base-core):

    /usr/bin/python3 make.py && Rscript make.R

make.py draws the inputs (seeded) into inputs.txt and writes SciPy's figures to scipy.json; make.R reads
inputs.txt and writes R's figures to r.json. tests/reference.rs compares crew-judge with both. Values are
multiples of 1/1024, so that every decimal written here is read back by R (and Rust) as the very same double.
"""

import json
import math
import warnings

import numpy as np
import scipy
from scipy import stats

SEED = 18
rng = np.random.default_rng(SEED)


def q(v):
    """Round to a multiple of 1/1024 (exact in binary and in a short decimal)."""
    return [float(x) for x in np.round(np.asarray(v, dtype=float) * 1024.0) / 1024.0]


def has_ties(x, y):
    pooled = list(x) + list(y)
    return len(set(pooled)) != len(pooled)


def no_ties(draw):
    """Draw (x, y) until no value is repeated."""
    while True:
        x, y = draw()
        if not has_ties(x, y):
            return x, y


cases = []


def case(name, x, y):
    cases.append((name, list(map(float, x)), list(map(float, y))))


# Small samples without ties: R's exact test and interval (both under 50 values).
case("exact_1x1", [3.5], [1.25])
case("exact_1x1_lower", [1.0], [2.0])
for name, m, n, shift in [
    ("exact_2x3", 2, 3, 0.0),
    ("exact_3x40", 3, 40, 1.5),
    ("exact_5x7", 5, 7, 0.5),
    ("exact_8x8_shifted", 8, 8, 3.0),
    ("exact_10x12", 10, 12, 0.0),
    ("exact_20x30_shifted", 20, 30, 0.8),
    ("exact_30x5_lower", 30, 5, -2.0),
    ("exact_49x49", 49, 49, 0.3),
    ("exact_49x1", 49, 1, 0.0),
]:
    x, y = no_ties(lambda: (q(rng.normal(10 + shift, 2, m)), q(rng.normal(10, 2, n))))
    case(name, x, y)
# Latency-like, skewed, small.
x, y = no_ties(lambda: (q(rng.lognormal(4.6, 0.3, 25)), q(rng.lognormal(4.5, 0.3, 25))))
case("exact_lognormal_25x25", x, y)

# Ties: the normal approximation with the tie correction.
case("ties_integers", [float(v) for v in rng.integers(0, 10, 15)], [float(v) for v in rng.integers(0, 8, 12)])
case("ties_three_values", [float(v) for v in rng.integers(0, 3, 30)], [float(v) for v in rng.integers(0, 3, 30)])
case("ties_identical", [1.0, 2.0, 2.0, 3.0, 5.0], [1.0, 2.0, 2.0, 3.0, 5.0])
case("ties_one_side_constant", [2.0] * 20, q(rng.normal(2, 1, 20)))
case("constant_vs_constant", [5.0] * 10, [3.0] * 10)
# Sparse error counts (many zeros, a few errors only in the canary), and the vectors of the Kayenta issues.
case("sparse_zeros", [0.0] * 20 + [1.0, 3.0, 2.0], [0.0] * 23)
case("kayenta_426", [0.0, 1.0, 2.0, 1.0, 0.0, 0.0], [0.0] * 6)
case("spinnaker_6278", [100.0] * 7 + [1.0] * 3, [1.0] * 10)
case("spinnaker_6278_eight", [100.0] * 8 + [1.0] * 2, [1.0] * 10)

# Large samples: the normal approximation.
case("large_50x50", q(rng.normal(0, 1, 50)), q(rng.normal(0, 1, 50)))
case("large_60x80_shifted", q(rng.normal(0.5, 1, 60)), q(rng.normal(0, 1, 80)))
case("large_200x150_lognormal", q(rng.lognormal(3, 1, 200)), q(rng.lognormal(3, 1, 150)))
case("large_600x600_plus5pct", q(rng.lognormal(5, 0.2, 600) * 1.05), q(rng.lognormal(5, 0.2, 600)))
case("large_600x600_plus25pct", q(rng.lognormal(5, 0.2, 600) * 1.25), q(rng.lognormal(5, 0.2, 600)))
case("large_100x100_lower_negative", q(rng.normal(-3, 2, 100)), q(rng.normal(-2, 2, 100)))
case("large_coarse_ties", [float(v) for v in np.round(rng.normal(100, 5, 300))],
     [float(v) for v in np.round(rng.normal(101, 5, 250))])

# A random batch: sizes 1 to 80, shifts, and rounding that makes ties in some.
for i in range(40):
    m, n = int(rng.integers(1, 81)), int(rng.integers(1, 81))
    shift = float(rng.normal(0, 1))
    scale = float(rng.choice([1.0, 1024.0, 4.0]))  # 1: integers (ties), 4: quarters, 1024: rarely a tie
    x = [float(v) for v in np.round(rng.normal(shift, 2, m) * scale) / scale]
    y = [float(v) for v in np.round(rng.normal(0, 2, n) * scale) / scale]
    case(f"random_{i:02}", x, y)

# Two proportions: canary events/trials, baseline events/trials.
props = [
    ("sparse_canary_errors", 40, 6000, 0, 6000),
    ("few_canary_errors", 9, 10000, 0, 10000),
    ("four_errors", 4, 600, 0, 600),
    ("equal_rates", 50, 1000, 50, 1000),
    ("close_rates", 50, 1000, 45, 1000),
    ("canary_lower", 0, 500, 3, 500),
    ("almost_all", 999, 1000, 990, 1000),
    ("unequal_sizes", 30, 1200, 100, 9000),
]
for i in range(30):
    n1, n2 = int(rng.integers(50, 200000)), int(rng.integers(50, 200000))
    p2 = float(rng.uniform(0.0005, 0.05))
    p1 = p2 * float(rng.choice([1.0, 1.1, 2.0, 0.5]))
    props.append((f"random_{i:02}", int(rng.binomial(n1, p1)), n1, int(rng.binomial(n2, p2)), n2))


def fin(v):
    v = float(v)
    return v if math.isfinite(v) else None


def exact_eligible(x, y):
    return len(x) < 50 and len(y) < 50 and not has_ties(x, y)


with open("inputs.txt", "w") as f:
    for name, x, y in cases:
        f.write("mw\t%s\t%s\t%s\n" % (name, ",".join(map(repr, x)), ",".join(map(repr, y))))
    for name, x1, n1, x2, n2 in props:
        f.write("prop\t%s\t%d\t%d\t%d\t%d\n" % (name, x1, n1, x2, n2))

out = {"scipy": scipy.__version__, "seed": SEED, "mann_whitney": [], "proportions": []}
warnings.simplefilter("ignore")
for name, x, y in cases:
    entry = {"name": name, "x": x, "y": y, "ties": has_ties(x, y), "asymptotic": {}, "exact": None}
    for alt in ["two-sided", "less", "greater"]:
        r = stats.mannwhitneyu(x, y, use_continuity=True, alternative=alt, method="asymptotic")
        entry["u"] = fin(r.statistic)
        entry["asymptotic"][alt] = fin(r.pvalue)
    if exact_eligible(x, y):
        entry["exact"] = {}
        for alt in ["two-sided", "less", "greater"]:
            r = stats.mannwhitneyu(x, y, alternative=alt, method="exact")
            entry["exact"][alt] = fin(r.pvalue)
    out["mann_whitney"].append(entry)
for name, x1, n1, x2, n2 in props:
    chi2, p, _, _ = stats.chi2_contingency([[x1, n1 - x1], [x2, n2 - x2]], correction=False)
    out["proportions"].append({"name": name, "x1": x1, "n1": n1, "x2": x2, "n2": n2,
                               "statistic": fin(chi2), "p_value": fin(p)})

with open("scipy.json", "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print("scipy %s: %d rank-sum cases, %d proportion cases" % (scipy.__version__, len(cases), len(props)))
