"""Statistics over pairs for a patching result: standard error, bootstrap CI, p- and q-values.

Conventions follow TransformerLens 4.3 (``transformer_lens.utilities.statistics``): standard
error with ``ddof=1``; percentile bootstrap with linear interpolation between order statistics;
a paired sign-flip permutation test, exact (all ``2**n`` sign patterns) for ``n <= 12`` and
``(hits + 1) / (n_permutations + 1)`` above, with ties within a relative ``100 * eps`` of the
observed mean. Random draws use numpy, so Monte Carlo values agree with TransformerLens in
distribution, not draw for draw. NumPy only.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from patchlab.core.errors import InputError
from patchlab.core.metrics import base_metric

EXACT_MAX_N = 12
_CHUNK = 256  # resamples per matrix product: memory stays at _CHUNK x cells


def _source_and_base(direction: str) -> tuple[str, str]:
    # mirrors patchlab.engine.context.source_and_base (core may not import engine)
    return ("clean", "corrupted") if direction == "denoise" else ("corrupted", "clean")


def standard_error(per_pair: np.ndarray) -> np.ndarray:
    """``std(ddof=1) / sqrt(n)`` over the first axis; NaN everywhere when ``n < 2``."""
    x = np.asarray(per_pair, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        return np.full(x.shape[1:], np.nan)
    return x.std(axis=0, ddof=1) / np.sqrt(n)


def _resample_counts(rng: np.random.Generator, count: int, n: int) -> np.ndarray:
    """How often each pair is drawn in each of ``count`` resamples with replacement: (count, n)."""
    idx = rng.integers(0, n, size=(count, n))
    counts = np.zeros((count, n))
    np.add.at(counts, (np.arange(count)[:, None], idx), 1.0)
    return counts


def bootstrap_draws(raw: np.ndarray, base: np.ndarray | None = None, source: np.ndarray | None = None,
                    *, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Bootstrap distribution of the aggregate: ``(n_resamples, *cells)``.

    Without ``base``/``source`` the aggregate is the mean of ``raw`` over pairs; with them it is
    the ratio of means ``(mean raw - mean base) / (mean source - mean base)`` that
    :func:`patchlab.core.metrics.aggregate` reports for ``logit_diff_recovered``, with the
    baselines resampled together with their pairs.
    """
    x = np.asarray(raw, dtype=np.float64)
    n = x.shape[0]
    if n < 1:
        raise InputError("A bootstrap needs at least one pair.")
    flat = x.reshape(n, -1)
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, flat.shape[1]))
    for start in range(0, n_resamples, _CHUNK):
        count = min(_CHUNK, n_resamples - start)
        w = _resample_counts(rng, count, n) / n
        with np.errstate(invalid="ignore"):
            means = w @ flat  # NaN in a cell's column keeps that cell NaN
            if base is not None and source is not None:
                mb = w @ np.asarray(base, dtype=np.float64)
                ms = w @ np.asarray(source, dtype=np.float64)
                denom = (ms - mb)[:, None]
                with np.errstate(divide="ignore"):
                    means = np.where(denom == 0, np.nan, (means - mb[:, None]) / denom)
        out[start:start + count] = means
    return out.reshape((n_resamples, *x.shape[1:]))


def bootstrap_ci(raw: np.ndarray, base: np.ndarray | None = None, source: np.ndarray | None = None,
                 *, confidence: float = 0.95, n_resamples: int = 1000, seed: int = 0,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the aggregate per cell; see :func:`bootstrap_draws`."""
    if not 0.0 < confidence < 1.0:
        raise InputError(f"The confidence must be between 0 and 1 (e.g. 0.95), got {confidence}.")
    if n_resamples < 1:
        raise InputError("n_resamples must be at least 1.")
    draws = bootstrap_draws(raw, base, source, n_resamples=n_resamples, seed=seed)
    alpha = (1.0 - confidence) / 2.0
    with np.errstate(invalid="ignore"):
        low = np.quantile(draws, alpha, axis=0)
        high = np.quantile(draws, 1.0 - alpha, axis=0)
    return low, high


def _hits(null: np.ndarray, observed: np.ndarray) -> np.ndarray:
    # two-sided, ties within a relative 100 eps of the observed mean (TransformerLens's rule)
    tol = np.abs(observed) * (100 * np.finfo(np.float64).eps)
    return (np.abs(null) >= np.abs(observed) - tol).sum(axis=0).astype(np.float64)


def sign_flip_pvalues(effects: np.ndarray, *, n_permutations: int = 1000, seed: int = 0,
                      exact_max_n: int = EXACT_MAX_N) -> np.ndarray:
    """Two-sided sign-flip permutation p-value that the mean of ``effects`` (over axis 0) is zero.

    Exact for ``n <= exact_max_n`` (all ``2**n`` sign patterns, no randomness); otherwise
    ``n_permutations`` random patterns and ``(hits + 1) / (n_permutations + 1)``. NaN cells stay NaN.
    """
    x = np.asarray(effects, dtype=np.float64)
    n = x.shape[0]
    if n < 1:
        raise InputError("A permutation test needs at least one pair.")
    if n_permutations < 1:
        raise InputError("n_permutations must be at least 1.")
    flat = x.reshape(n, -1)
    observed = flat.mean(axis=0)
    if n <= exact_max_n:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        p = _hits(signs @ flat / n, observed) / signs.shape[0]
    else:
        rng = np.random.default_rng(seed)
        hits = np.zeros(flat.shape[1])
        for start in range(0, n_permutations, _CHUNK):
            count = min(_CHUNK, n_permutations - start)
            signs = rng.integers(0, 2, size=(count, n)) * 2.0 - 1.0
            hits += _hits(signs @ flat / n, observed)
        p = (hits + 1.0) / (n_permutations + 1.0)
    p = np.where(np.isfinite(observed), p, np.nan)
    return p.reshape(x.shape[1:])


def bh_qvalues(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values over the finite cells (NaN cells stay NaN)."""
    p = np.asarray(pvalues, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    vals = p[ok]
    m = vals.size
    if m == 0:
        return q
    order = np.argsort(vals, kind="stable")
    ranked = vals[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]  # q_i = min over ranks >= i
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q


# -- on a PatchResult --------------------------------------------------------------------------
def pair_baselines(result: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-pair (base, source) values of the metric's raw quantity, from ``meta["runs"]``.

    None when the result does not carry them (hand-built results, very old run records).
    """
    runs = result.meta.get("runs") or {}
    src, base = _source_and_base(result.direction or "denoise")
    q = base_metric(result.metric or "logit_diff")
    try:
        b = np.asarray(runs[base]["per_pair"][q], dtype=np.float64)
        s = np.asarray(runs[src]["per_pair"][q], dtype=np.float64)
    except (KeyError, TypeError):
        return None
    if b.shape != (result.n_pairs,) or s.shape != (result.n_pairs,):
        return None
    return b, s


def pair_raw(result: Any) -> np.ndarray:
    """Per-pair raw patched quantity ``(n_pairs, *cells)`` behind the metric.

    ``result.per_pair_raw`` when the engine kept it; else, for ``logit_diff_recovered``, rebuilt
    from the per-pair normalised values and baselines (``raw = v * (source - base) + base``);
    other metrics are their own raw quantity.
    """
    if getattr(result, "per_pair_raw", None) is not None:
        return np.asarray(result.per_pair_raw, dtype=np.float64)
    per_pair = np.asarray(result.per_pair, dtype=np.float64)
    if result.metric != "logit_diff_recovered":
        return per_pair
    bs = pair_baselines(result)
    if bs is None:
        raise InputError("This result has no per-pair baselines (meta['runs']), so its ratio of "
                         "means cannot be resampled. Re-run the sweep with this patchlab.")
    base, source = bs
    extra = (slice(None),) + (None,) * (per_pair.ndim - 1)
    return per_pair * (source - base)[extra] + base[extra]


def result_bootstrap_ci(result: Any, confidence: float, n_resamples: int, seed: int):
    if result.metric == "logit_diff_recovered":
        bs = pair_baselines(result)
        if bs is not None:
            return bootstrap_ci(pair_raw(result), bs[0], bs[1], confidence=confidence,
                                n_resamples=n_resamples, seed=seed)
    return bootstrap_ci(result.per_pair, confidence=confidence, n_resamples=n_resamples, seed=seed)


#: Per-pair changes within this fraction of the baseline gap (at least 1 unit) count as zero.
NOISE_FLOOR = 1e-5


def result_effects(result: Any) -> np.ndarray:
    """Per-pair change from the unpatched base run, in the raw quantity: ``(n_pairs, *cells)``.

    Changes smaller than :data:`NOISE_FLOOR` times the mean baseline gap are set to exactly 0:
    an engine that recomputes a run in float32 leaves ~1e-7 of noise where a patch changes
    nothing, and a sign-flip test on noise that happens to share one sign would call it
    significant (TransformerLens's tie rule is relative to the observed mean, with no floor).
    """
    bs = pair_baselines(result)
    if bs is None:
        if result.metric != "logit_diff_recovered":
            raise InputError("This result has no per-pair baselines (meta['runs']), so the change "
                             "from the unpatched run is unknown. Re-run the sweep with this patchlab.")
        effects, scale = np.asarray(result.per_pair, dtype=np.float64), 1.0  # normalised: base run is 0
    else:
        raw = pair_raw(result)
        effects = raw - bs[0][(slice(None),) + (None,) * (raw.ndim - 1)]
        gap = float(np.mean(np.abs(bs[1] - bs[0]))) if bs[0].size else 1.0
        scale = max(1.0, gap) if np.isfinite(gap) else 1.0
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(effects) <= NOISE_FLOOR * scale, 0.0, effects)
