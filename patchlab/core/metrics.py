"""Metrics on the patched run and their normalisation (numpy only)."""

from __future__ import annotations

import numpy as np

from patchlab.core.errors import InputError

#: Raw per-run quantities the engine measures at the last position of every run.
RAW = ("logit_diff", "answer_prob", "answer_logprob", "wrong_prob")

METRICS: dict[str, str] = {
    "logit_diff_recovered": "Logit difference recovered (0 = unpatched run, 1 = source run)",
    "logit_diff": "Logit difference (answer - wrong) of the patched run",
    "answer_prob": "P(answer) of the patched run",
    "answer_logprob": "log P(answer) of the patched run",
}

DIRECTIONS: dict[str, str] = {
    "denoise": "clean activations \u2192 corrupted run",
    "noise": "corrupted activations \u2192 clean run",
}

METHODS: dict[str, str] = {
    "exact": "Exact activation patching",
    "attribution": "Attribution patching (first-order estimate)",
}


def check_metric(name: str) -> str:
    if name not in METRICS:
        raise InputError(f"Unknown metric {name!r}. Choose one of: {', '.join(METRICS)}.")
    return name


def check_direction(name: str) -> str:
    if name not in DIRECTIONS:
        raise InputError(
            f"Unknown direction {name!r}. Use 'denoise' (clean activations into the corrupted "
            "run) or 'noise' (corrupted activations into the clean run)."
        )
    return name


def check_method(name: str) -> str:
    if name not in METHODS:
        raise InputError(f"Unknown method {name!r}. Choose one of: {', '.join(METHODS)}.")
    return name


def base_metric(metric: str) -> str:
    """The raw quantity a metric is computed from."""
    return "logit_diff" if metric == "logit_diff_recovered" else metric


def normalise(patched, base, source):
    """``(patched - base) / (source - base)``: 0 = unpatched run, 1 = fully restored.

    Works elementwise on numpy arrays or floats; a zero denominator gives NaN.
    """
    patched = np.asarray(patched, dtype=np.float64)
    denom = np.asarray(source, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (patched - base) / denom
    return np.where(denom == 0, np.nan, out)


def aggregate(metric: str, per_pair_raw: np.ndarray, base: np.ndarray, source: np.ndarray):
    """Combine per-pair raw values into the reported metric.

    Parameters
    ----------
    metric : str
        One of :data:`METRICS`.
    per_pair_raw : ndarray, shape (n_pairs, *cells)
        The base quantity (``base_metric(metric)``) of each patched run.
    base, source : ndarray, shape (n_pairs,)
        The same quantity on the unpatched run and on the source run.

    Returns
    -------
    values : ndarray (*cells)
        Mean over pairs; for ``logit_diff_recovered`` the mean logit difference is normalised
        by the mean baselines (the usual notebook definition, robust to one pair with a small gap).
    per_pair : ndarray (n_pairs, *cells)
        The metric for each pair on its own.
    """
    per_pair_raw = np.asarray(per_pair_raw, dtype=np.float64)
    base = np.asarray(base, dtype=np.float64)
    source = np.asarray(source, dtype=np.float64)
    if metric == "logit_diff_recovered":
        extra = (slice(None),) + (None,) * (per_pair_raw.ndim - 1)
        per_pair = normalise(per_pair_raw, base[extra], source[extra])
        values = normalise(per_pair_raw.mean(axis=0), base.mean(), source.mean())
        return values, per_pair
    return per_pair_raw.mean(axis=0), per_pair_raw


def base_run(direction: str) -> str:
    """The run that is patched (``corrupted`` when denoising, ``clean`` when noising)."""
    return "corrupted" if check_direction(direction) == "denoise" else "clean"


def no_effect_value(metric: str, direction: str, runs: dict | None = None) -> float:
    """The value a cell has when its patch changes nothing.

    ``logit_diff_recovered`` is normalised so that the unpatched run is 0. The raw metrics
    (``logit_diff``, ``answer_prob``, ``answer_logprob``) equal the unpatched run's own value
    there, so a colour map centred on 0, or a ranking by ``|value|``, shows the base run
    rather than the effect of the patch.

    Parameters
    ----------
    metric : str
        One of :data:`METRICS`.
    direction : str
        ``denoise`` (the corrupted run is patched) or ``noise`` (the clean run is patched).
    runs : dict, optional
        ``run name -> {quantity: value}`` as in a result's ``meta["runs"]`` (mean over pairs).
        Needed for every metric but ``logit_diff_recovered``.

    Returns
    -------
    float
        The no-effect value; NaN when ``runs`` lacks the unpatched run's quantity.
    """
    check_metric(metric)
    base = base_run(direction)
    if metric == "logit_diff_recovered":
        return 0.0
    try:
        return float((runs or {})[base][base_metric(metric)])
    except (KeyError, TypeError, ValueError):
        return float("nan")
