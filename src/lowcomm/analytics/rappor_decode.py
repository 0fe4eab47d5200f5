"""RAPPOR's server side: per-(cohort, bit) tallies, and candidate frequencies by regression.

Erlingsson, Pihur, Korolova, CCS 2014, §4. The paper's steps, and what is done here:

1. t_ij = (c_ij - p* N_j) / (q* - p*), the unbiased estimate of how many users of cohort j have
   bit i set in B (`RapporOracle.bit_estimates`; exact variance `bit_variance`).
2. A design matrix X of (cohorts x bits) rows and one column per candidate v, holding v's Bloom
   bits in every cohort, and the regression t ~ X. The paper's model (counts) does not say how
   cohorts of different sizes enter; here the unknown is the normalised frequency vector f and
   row (j, i) reads  E[t_ij] = N_j sum_v B_ji(v) f_v,  which is exact in expectation when users
   fall into cohorts uniformly at random, independently of their values (given the sizes N_j,
   E[#users of cohort j holding v] = N_j f_v). Rows are divided by s_j = sqrt(N_j p*(1 - p*)) /
   (q* - p*), the standard deviation of t_ij for a bit nobody has set, so an unset bit's row has
   unit noise; empty cohorts are dropped. The weights depend on N_j only, not on the counts.
3. `least_squares` (= `RapporOracle.estimate`): weighted least squares over *all* k candidates.
   Unbiased (E[f̂ | N] = f) whenever X has full column rank, which needs at least k rows; it
   raises otherwise, naming the rank.
4. `decode`: the paper's Lasso selection, then least squares on the selected candidates with
   standard errors and p-values, then significance at the Bonferroni level alpha / k. The paper
   does not state its penalty (the authors' R code takes the end of glmnet's path with
   non-negative coefficients). Here it is the non-negative Lasso
       min_w  ½ ||y - X̃ w||² + λ sum_v w_v,   w >= 0,   X̃ = X with unit-norm columns,
   with λ = z_{1 - alpha/k} (the standard normal quantile): with no signal the score X̃_v'y of a
   candidate is about N(0, 1), so every candidate stays at 0 with probability >= 1 - alpha
   (Bonferroni over k). The objective is smooth on w >= 0 and solved by L-BFGS-B (scipy), which
   leaves inactive candidates exactly at 0. Least squares on the selected columns gives the
   estimates; their covariance is σ̂² (X_S'X_S)^+ with σ̂² the residual mean square (rows - rank
   degrees of freedom), and two-sided t-test p-values. `decode` is NOT unbiased: unselected
   candidates read 0, and the selection depends on the same noise as the fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.optimize
import scipy.sparse
import scipy.stats

if TYPE_CHECKING:
    from lowcomm.analytics.rappor import RapporOracle


@dataclass(frozen=True)
class RapporTally:
    """What the server keeps while streaming: c_ij = `counts[j, i]`, the reports of cohort j
    with bit i set, and N_j = `cohort_n[j]`, the reports of cohort j. Chunks add up."""

    counts: np.ndarray  # [cohorts, num_bits] int64
    cohort_n: np.ndarray  # [cohorts] int64

    @property
    def n(self) -> int:
        return int(self.cohort_n.sum())

    def merged(self, other: RapporTally) -> RapporTally:
        if self.counts.shape != other.counts.shape:
            raise ValueError(f"cannot merge RAPPOR tallies of shapes {self.counts.shape} and "
                             f"{other.counts.shape}")
        return RapporTally(self.counts + other.counts, self.cohort_n + other.cohort_n)


def check_tally(oracle: RapporOracle, tally: RapporTally) -> tuple[np.ndarray, np.ndarray]:
    shape = (oracle.cohorts, oracle.num_bits)
    if not isinstance(tally, RapporTally) or tally.counts.shape != shape \
            or tally.cohort_n.shape != (oracle.cohorts,):
        got = (tally.counts.shape, tally.cohort_n.shape) if isinstance(tally, RapporTally) \
            else type(tally).__name__
        raise ValueError(f"rappor: need a RapporTally of counts {shape} and cohort_n "
                         f"({oracle.cohorts},); got {got}")
    return tally.counts.astype(np.float64), tally.cohort_n.astype(np.float64)


@dataclass(frozen=True)
class RapporDecoding:
    """`decode`'s result, `[k]` arrays: `frequencies` (least squares on the `selected`
    candidates, 0 elsewhere), `std_errors` and two-sided `p_values` (nan where not selected),
    `significant` (p < alpha / k), and the Lasso penalty `lasso_lambda`."""

    frequencies: np.ndarray
    std_errors: np.ndarray
    p_values: np.ndarray
    selected: np.ndarray
    significant: np.ndarray
    alpha: float
    lasso_lambda: float
    residual_dof: int


def regression(oracle: RapporOracle, tally: RapporTally) -> tuple[scipy.sparse.csr_matrix,
                                                                   np.ndarray]:
    """(X [rows, k] sparse, y [rows]): the weighted system of step 2, rows (non-empty cohort j,
    bit i) in that order."""
    t = oracle.bit_estimates(tally)  # [c, m]; also checks the tally
    cohort_n = tally.cohort_n.astype(np.float64)
    live = np.flatnonzero(cohort_n > 0)
    if live.size == 0:
        raise ValueError("rappor: the tally holds no reports")
    m, k = oracle.num_bits, oracle.k
    p1, p0 = oracle.prob_one_if_set, oracle.prob_one_if_clear
    scale = np.sqrt(cohort_n[live] * p0 * (1 - p0)) / (p1 - p0)  # [live] s_j
    y = (t[live] / scale[:, None]).ravel()  # [live m]
    cohort = np.repeat(live, k)  # [live k]
    value = np.tile(np.arange(k), live.size)
    positions = oracle.bloom_positions(value, cohort)  # [live k, h]
    rows = np.repeat(np.arange(live.size), k)[:, None] * m + positions
    cells = np.unique(rows * k + value[:, None])  # a bit hit by two hashes counts once
    rows, cols = cells // k, cells % k
    data = (cohort_n[live] / scale)[rows // m]
    x = scipy.sparse.csr_matrix((data, (rows, cols)), shape=(live.size * m, k))
    return x, y


def gram_solve(x: scipy.sparse.csr_matrix, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(beta, (x'x)^+, rank): least squares through the normal equations, with the pseudo-inverse
    of the Gram matrix from its eigendecomposition (small: columns x columns), and the rank
    counted as `numpy.linalg.matrix_rank` counts it for that matrix."""
    gram = (x.T @ x).toarray()  # [cols, cols]
    eigenvalues, vectors = np.linalg.eigh(gram)
    keep = eigenvalues > eigenvalues.max() * gram.shape[0] * np.finfo(np.float64).eps
    inverse = (vectors[:, keep] / eigenvalues[keep]) @ vectors[:, keep].T
    return inverse @ (x.T @ y), inverse, int(keep.sum())


def least_squares(oracle: RapporOracle, tally: RapporTally) -> np.ndarray:
    """f̂ [k]: weighted least squares over all candidates; unbiased for full column rank."""
    x, y = regression(oracle, tally)
    solution, _, rank = gram_solve(x, y)
    if rank < oracle.k:
        raise ValueError(f"rappor: least squares over all k = {oracle.k} candidates needs a "
                         f"design of full column rank; it has rank {rank} ({x.shape[0]} "
                         f"rows = non-empty cohorts x {oracle.num_bits} bits); use decode() "
                         f"(Lasso selection), or more bits or cohorts")
    return solution


def nonnegative_lasso(x: scipy.sparse.csr_matrix, y: np.ndarray, lam: float) -> np.ndarray:
    """argmin_{w >= 0} ½||y - x w||² + lam sum(w), by L-BFGS-B; exact zeros off the support."""

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        residual = x @ w - y
        return 0.5 * float(residual @ residual) + lam * float(w.sum()), x.T @ residual + lam

    start = np.zeros(x.shape[1])
    result = scipy.optimize.minimize(objective, start, jac=True, method="L-BFGS-B",
                                     bounds=[(0.0, None)] * x.shape[1],
                                     options={"maxiter": 20_000, "ftol": 1e-15, "gtol": 1e-9})
    if not result.success:
        raise RuntimeError(f"rappor: the Lasso did not converge: {result.message}")
    return result.x


def decode(oracle: RapporOracle, tally: RapporTally, *, alpha: float = 0.05) -> RapporDecoding:
    """Step 4 of the module docstring."""
    if not isinstance(alpha, (int, float, np.floating)) or isinstance(alpha, bool) \
            or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    k = oracle.k
    x, y = regression(oracle, tally)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())  # [k], > 0: h bits per cohort
    lam = float(scipy.stats.norm.isf(alpha / k))
    weights = nonnegative_lasso(x @ scipy.sparse.diags(1.0 / norms), y, lam)
    selected = weights > 0
    frequencies = np.zeros(k)
    std_errors = np.full(k, math.nan)
    p_values = np.full(k, math.nan)
    dof = x.shape[0]
    if selected.any():
        design = x[:, np.flatnonzero(selected)]  # [rows, |S|]
        beta, inverse, rank = gram_solve(design, y)
        dof = x.shape[0] - rank
        if dof < 1:
            raise ValueError(f"rappor: {int(selected.sum())} selected candidates leave no "
                             f"residual degrees of freedom ({x.shape[0]} rows)")
        residual = y - design @ beta
        sigma2 = float(residual @ residual) / dof
        se = np.sqrt(sigma2 * np.diag(inverse))
        frequencies[selected] = beta
        std_errors[selected] = se
        with np.errstate(divide="ignore", invalid="ignore"):
            p_values[selected] = 2 * scipy.stats.t.sf(np.abs(beta / se), dof)
    significant = selected & (np.nan_to_num(p_values, nan=1.0) < alpha / k)
    return RapporDecoding(frequencies, std_errors, p_values, selected, significant, float(alpha),
                          lam, int(dof))
