"""Fits the rows of a CSV (y, offset, x…) with statsmodels, the reference
the Rust fitter must agree with:

    fit_statsmodels.py ROWS.csv RIDGE

Prints JSON: the unpenalised GLM(Poisson, log link, offset) — params, bse,
deviance, null_deviance, llf, aic, pearson_chi2 — and, for RIDGE > 0, the
penalised fit `fit_regularized(L1_wt=0, alpha=[0, RIDGE/n, …])`, which
maximises llf/n − Σ alpha_j/2 β_j², i.e. llf − RIDGE/2 Σ_{j≥1} β_j².
"""
import json
import sys

import numpy as np
# The GLM modules directly: statsmodels.api also imports its time-series
# and plotting parts, which do not load with pandas 3.
from statsmodels.genmod import families
from statsmodels.genmod.generalized_linear_model import GLM

data = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)
ridge = float(sys.argv[2])
y, offset, x = data[:, 0], data[:, 1], data[:, 2:]
X = np.column_stack([np.ones(len(y)), x])
model = GLM(y, X, family=families.Poisson(), offset=offset)
res = model.fit(tol=1e-14, maxiter=100)
out = {
    "params": res.params.tolist(), "bse": res.bse.tolist(), "deviance": res.deviance,
    "null_deviance": res.null_deviance, "llf": res.llf, "aic": res.aic, "pearson_chi2": res.pearson_chi2,
}
if ridge > 0:
    n = len(y)
    alpha = np.r_[0.0, np.full(x.shape[1], ridge / n)]
    reg = model.fit_regularized(method="elastic_net", alpha=alpha, L1_wt=0.0, maxiter=1000, cnvrg_tol=1e-14)
    out["ridge_params"] = np.asarray(reg.params).tolist()
print(json.dumps(out))
