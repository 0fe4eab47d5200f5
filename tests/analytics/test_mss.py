"""MSS (ModularSubsetSelection, ldp.md §1.8): the exact variance against the enumerated report law
and against the MSE over trials, unbiasedness, exact e^ε ratios, the encoder law, the LSMR decode
against a dense solve, the paper-style weighted decode, the conditioning check, bits, bad input."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
from tests.analytics.oracle_trials import assert_unbiased, run_trials, skewed_values

from lowcomm.analytics import aggregate, mss, mss_bits, report_bits, single_report, ss
from lowcomm.analytics.mss import MAX_K, default_moduli
from lowcomm.analytics.subset import ideal_bits
from lowcomm.core import Payload, deserialize, numpy_rng, serialize

K = 256
TRIALS = 10
N_USERS = 20_000


@functools.cache  # shared by the MSE, bias and decoder tests
def _trials(epsilon: float):
    oracle = mss(epsilon, K)
    f_true, estimates = run_trials(oracle, n_users=N_USERS, trials=TRIALS,
                                   purpose=f"analytics-test-mss-{epsilon}")
    return oracle, f_true, estimates


@pytest.mark.parametrize("epsilon", [1.0, 3.0])
def test_mse_matches_the_exact_variance(epsilon):
    oracle, f_true, estimates = _trials(epsilon)
    variance = oracle.variance(N_USERS, f_true)  # [k], differs between items
    mse = np.mean((estimates - f_true) ** 2)
    assert abs(mse / np.mean(variance) - 1) < 4 * math.sqrt(2 / (K * TRIALS)), mse / variance.mean()
    normalised = np.mean((estimates - f_true) ** 2 / variance)
    assert abs(normalised - 1) < 4 * math.sqrt(2 / (K * TRIALS)), normalised


@pytest.mark.parametrize("epsilon", [1.0, 3.0])
def test_default_estimate_is_unbiased(epsilon):
    oracle, f_true, estimates = _trials(epsilon)
    assert_unbiased(oracle, f_true, estimates, n_users=N_USERS, label=epsilon)


def _report_law(oracle, v: int):
    """[(probability, support [k] bool, (j, Z))] of every report of a holder of v, from the
    definition: j uniform, then SS over [0, m_j) on v mod m_j (ω_j, p_j)."""
    ell, items = len(oracle.moduli), np.arange(oracle.k)
    out = []
    for j, (m, w, p) in enumerate(zip(oracle.moduli, oracle.subset_sizes, oracle.block_p,
                                      strict=True)):
        own = v % m
        for z in itertools.combinations(range(m), w):
            prob = (p / math.comb(m - 1, w - 1) if own in z
                    else (1 - p) / math.comb(m - 1, w)) / ell
            out.append((prob, np.isin(items % m, z), (j, z)))
    return out


SMALL = [(1.0, 10, None), (0.3, 10, None), (2.0, 12, (11, 10, 9, 7))]  # ε = 0.3: ω up to 4


@pytest.mark.parametrize(("epsilon", "k", "moduli"), SMALL)
def test_variance_and_mean_equal_the_enumerated_report_law(epsilon, k, moduli):
    """E[S] = n M f and Var[f̂] = diag(M⁻¹ Cov(S) M⁻¹)/n², Cov(S) summed over every report."""
    oracle = mss(epsilon, k, moduli=moduli)
    n = 1000
    f = numpy_rng(0, purpose="analytics-test-mss-f").dirichlet(np.ones(k))
    m_matrix = oracle.support_matrix()
    cov = np.zeros((k, k))
    for v in range(k):
        law = _report_law(oracle, v)
        probs = np.array([p for p, _, _ in law])
        supports = np.array([s for _, s, _ in law], dtype=np.float64)  # [reports, k]
        assert probs.sum() == pytest.approx(1.0)
        mean = probs @ supports
        np.testing.assert_allclose(mean, m_matrix[:, v], rtol=1e-12)  # column v of M
        cov += n * f[v] * (supports.T @ (probs[:, None] * supports) - np.outer(mean, mean))
    inverse = np.linalg.inv(m_matrix)
    exact = np.diag(inverse @ cov @ inverse) / n**2
    np.testing.assert_allclose(oracle.variance(n, f), exact, rtol=1e-9)
    assert oracle.p_star == pytest.approx(np.mean(oracle.block_p))


@pytest.mark.parametrize(("epsilon", "k", "moduli"), [*SMALL, (4.0, 8, (7, 6, 5))])
def test_enumerated_report_ratio_is_exactly_e_to_the_epsilon(epsilon, k, moduli):
    oracle = mss(epsilon, k, moduli=moduli)
    logs = np.log(np.array([[p for p, _, _ in _report_law(oracle, v)] for v in range(k)]))
    ratio = float((logs.max(axis=0) - logs.min(axis=0)).max())
    assert ratio <= epsilon + 1e-12 and ratio == pytest.approx(epsilon)


def test_the_encoder_samples_the_enumerated_distribution():
    oracle, samples = mss(1.0, 10), 30_000  # moduli (9, 8, 7, 5), ω = 2, 2, 2, 1
    rng = numpy_rng(4, purpose="analytics-test-encoder-mss")
    for v in (0, 3, 9):
        law = _report_law(oracle, v)
        index = {key: i for i, (_, _, key) in enumerate(law)}
        exact = np.array([p for p, _, _ in law])
        r = oracle.encode(np.full(samples, v), rng)
        keys = [(int(row[0]), tuple(int(x) for x in row[1 : 1 + oracle.subset_sizes[row[0]]]))
                for row in r["mss/report"]]
        seen = np.bincount([index[key] for key in keys], minlength=len(law)) / samples
        assert np.all(np.abs(seen - exact) <= 5 * np.sqrt(exact * (1 - exact) / samples)), v


def test_support_counts_and_the_lsmr_decode_match_plain_references():
    k, n = 40, 400
    oracle = mss(1.5, k)
    values = numpy_rng(8, purpose="analytics-test-values").integers(0, k, size=n)
    reports = oracle.encode(values, numpy_rng(8, purpose="analytics-test-mss-loop"))
    loop = np.zeros(k, dtype=np.int64)
    for j, *row in reports["mss/report"].tolist():
        m, w = oracle.moduli[j], oracle.subset_sizes[j]
        assert row[w:] == [max(oracle.moduli)] * (len(row) - w)  # the padding
        for x in range(k):
            loop[x] += (x % m) in set(row[:w])
    counts = oracle.support_counts(reports)
    np.testing.assert_array_equal(counts, loop)
    streamed = aggregate(oracle, (deserialize(serialize(single_report(reports, i)))
                                  for i in range(n)))
    np.testing.assert_array_equal(streamed.counts, loop)
    dense = np.linalg.solve(oracle.support_matrix(), counts / n)
    np.testing.assert_allclose(oracle.estimate(counts, n), dense, atol=1e-9)


def test_the_paper_style_weighted_decode_has_the_same_mse():
    """The paper decodes per-block debiased residue histograms s_j = (c_j/n_j − q_j)/(p_j − q_j)
    by least squares with weights n_j (p_j − q_j)² / (q_j (1 − q_j)); on the same reports it
    is as accurate as the [k]-count decode (module docstring)."""
    oracle = mss(1.0, K)
    values = skewed_values(K, N_USERS, seed=1)
    f_true = np.bincount(values, minlength=K) / N_USERS
    residues = oracle.residues()
    same = [r[:, None] == r[None, :] for r in residues]  # A_jᵀ A_j, [k, k] each
    ours, paper = [], []
    for trial in range(4):
        r = oracle.encode(values, numpy_rng(7, round=trial, purpose="analytics-test-mss-gls"))
        normal, rhs = np.zeros((K, K)), np.zeros(K)
        for j, (m, w, p, q) in enumerate(zip(oracle.moduli, oracle.subset_sizes,
                                             oracle.block_p, oracle.block_q, strict=True)):
            rows = r["mss/report"][r["mss/report"][:, 0] == j, 1 : 1 + w].astype(np.int64)
            debiased = (np.bincount(rows.ravel(), minlength=m) / rows.shape[0] - q) / (p - q)
            weight = rows.shape[0] * (p - q) ** 2 / (q * (1 - q))
            normal += weight * same[j]
            rhs += weight * debiased[residues[j]]  # A_jᵀ s_j
        paper.append(np.mean((np.linalg.solve(normal, rhs) - f_true) ** 2))
        ours.append(np.mean((oracle.estimate(oracle.support_counts(r), N_USERS) - f_true) ** 2))
    assert abs(np.mean(paper) / np.mean(ours) - 1) < 0.03, (np.mean(paper), np.mean(ours))


def test_default_moduli_are_coprime_well_conditioned_and_below_k():
    assert default_moduli(10) == (9, 8, 7, 5) and default_moduli(2) == (2,)
    assert default_moduli(1024) == (1023, 920, 817, 709, 613)
    for k in (2, 3, 5, 7, 8, 16, 28, 64, 100, 256):
        oracle = mss(1.0, k)
        assert oracle.kappa <= 2 and math.prod(oracle.moduli) >= k
        assert all(math.gcd(a, b) == 1 for a, b in itertools.combinations(oracle.moduli, 2))
        assert k < 8 or max(oracle.moduli) < k


def test_ill_conditioned_moduli_are_refused_naming_kappa():
    primes = [29, 31, 37, 41, 43, 47, 53, 59, 61, 67]  # about k/ℓ each: CRT holds, cond₂ ~ 10⁸
    with pytest.raises(ValueError, match=r"ill-conditioned for k = 256: κ = 7\.\d+e\+04 \(the "
                                         r"decode's variance over SS's; cond₂\(AᵀWA\) = "
                                         r"1\.\d+e\+08\) > max_kappa = 2"):
        mss(1.0, 256, moduli=primes)
    with pytest.raises(ValueError, match=r"κ = 1\.1 .* > max_kappa = 1\.05"):
        mss(1.0, 256, max_kappa=1.05)  # the default moduli have κ ≈ 1.10
    loose = mss(1.0, 256, moduli=primes, max_kappa=1e6)
    assert loose.condition > 1e8 and loose.kappa > 7e4
    with pytest.raises(ValueError, match=r"moduli \(3, 2\) cannot tell the k = 6 items apart"):
        mss(1.0, 6, moduli=(3, 2))  # Π = 6 covers k, but 3 + 2 - 1 = 4 residue rows < 6 items
    with pytest.raises(ValueError, match=r"product of the moduli \(3, 5\) is 15 < k = 16"):
        mss(1.0, 16, moduli=(3, 5))
    with pytest.raises(ValueError, match="pairwise coprime; 6 and 9 share the factor 3"):
        mss(1.0, 16, moduli=(6, 9, 11))


@pytest.mark.parametrize("moduli", [None, (600, 577, 557, 533, 511, 491, 467)])
def test_kappa_is_the_variance_over_ss_at_k_1024(moduli):
    """κ (from the eigenvalues of AᵀWA) against the exact variance ratio at the uniform f; the
    seven moduli near k/2 send about half of SS's subset-index bits at κ ≈ 1.29."""
    oracle = mss(1.0, 1024, moduli=moduli)
    f = np.full(1024, 1 / 1024)
    exact = oracle.variance(1, f).mean() / ss(1.0, 1024).variance(1, f).mean()
    assert oracle.kappa == pytest.approx(exact, rel=0.01)
    assert oracle.kappa == pytest.approx(1.10 if moduli is None else 1.29, abs=0.01)


@pytest.mark.parametrize("moduli", [(), (1, 3), (3, 17), (2.0, 3), (True, 3), "35", [5, -7]])
def test_bad_moduli_are_named(moduli):
    with pytest.raises(ValueError, match=r"moduli must be a non-empty sequence of integers in "
                                         r"\[2, 16\] \(k = 16\); got"):
        mss(1.0, 16, moduli=moduli)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=rf"k must be at most {MAX_K}; got {MAX_K + 1}"):
        mss(1.0, MAX_K + 1)
    with pytest.raises(ValueError, match=r"max_kappa must be a number >= 1; got 0\.5"):
        mss(1.0, 16, max_kappa=0.5)
    oracle = mss(1.0, 16)
    with pytest.raises(ValueError, match=r"variance needs the \[k\] = \[16\] frequency vector"):
        oracle.variance(100, 0.1)
    with pytest.raises(ValueError, match=r"counts must have shape \(16,\)"):
        oracle.estimate(np.zeros(15), 5)
    with pytest.raises(ValueError, match="n must be a positive integer; got 0"):
        oracle.estimate(np.zeros(16), 0)


def test_measured_bits_and_the_three_analytic_counts():
    """k = 1024, ε = 1: the abstract's formula gives 13 bits (ldp.md §1.10), a subset index
    about 684 on average (SS: 855), the ids as sent 2199 on average; the payload row holds the
    block and ω_max = 275 ids, each in a uint16."""
    oracle = mss(1.0, 1024)
    assert oracle.subset_sizes == (275, 247, 220, 191, 165)
    bits = mss_bits(oracle)
    assert bits.abstract == (13,) * 5  # ⌈log2 5⌉ + ⌈log2 m_j⌉ = 3 + 10
    assert bits.subset_index == tuple(3 + ideal_bits(m, w) for m, w in
                                      zip(oracle.moduli, oracle.subset_sizes, strict=True))
    assert bits.mean(bits.subset_index) == pytest.approx(684.4) and ideal_bits(1024, 275) == 855
    assert bits.ids == tuple(3 + 10 * w for w in oracle.subset_sizes)
    assert oracle.analytic_bits == max(bits.ids) == 2753
    values = numpy_rng(10, purpose="analytics-test-values").integers(0, 1024, size=6)
    reports = oracle.encode(values, numpy_rng(10, purpose="analytics-test-mss-bits"))
    for i in range(6):
        measured = report_bits(oracle, reports, index=i)
        assert measured.data_bits == (1 + 275) * 16  # every block: padded to ω_max ids
        assert measured.wire_bits == 8 * len(serialize(single_report(reports, i)))


def test_malformed_reports_name_the_value():
    oracle = mss(1.0, 10)  # moduli (9, 8, 7, 5), ω = (2, 2, 2, 1), sentinel 9, uint8

    def counts(*rows):
        return oracle.support_counts(Payload({"mss/report": np.array(rows, dtype=np.uint8)}))

    np.testing.assert_array_equal(counts([3, 4, 9]), np.arange(10) % 5 == 4)  # valid
    with pytest.raises(ValueError, match=r"block index in \[0, 4\); report 1 has \[4, 0, 1\]"):
        counts([0, 1, 2], [4, 0, 1])
    with pytest.raises(ValueError, match=r"report in \[0, 10\); got 10 \(report 0"):
        counts([0, 1, 10])
    says = r"strictly increasing residues below m_j, then 9 in the other slots\]"
    with pytest.raises(ValueError, match=says + r".*report 0 has \[3, 0, 1\]"):
        counts([3, 0, 1])  # block 3 (m = 5, ω = 1): slot 2 must hold the sentinel
    with pytest.raises(ValueError, match=says + r".*report 0 has \[1, 2, 8\]"):
        counts([1, 2, 8])  # m = 8: residue 8 is out of the block's range
    with pytest.raises(ValueError, match=says + r".*report 0 has \[0, 4, 4\]"):
        counts([0, 4, 4])  # repeated residue
    with pytest.raises(ValueError, match=r"report as uint8 \[n, 3\]; got uint8 \[2, 4\]"):
        oracle.support_counts(Payload({"mss/report": np.zeros((2, 4), dtype=np.uint8)}))
    with pytest.raises(ValueError, match=r"report as uint8 \[n, 3\]; got int64"):
        oracle.support_counts(Payload({"mss/report": np.zeros((2, 3), dtype=np.int64)}))
