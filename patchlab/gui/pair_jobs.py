"""Worker-side job bodies over a set of pairs: one pair's readout, or the mean over pairs.

No Qt here (they run on the worker thread). Each is a generator that yields a
:class:`PairProgress` per pair (so a stop flag is honoured between pairs) and returns what the
single-pair engine function returns, averaged over the pairs where averaging is meaningful:
probabilities, logit differences, attention patterns and decomposition arrays. Top-k token
lists are per pair and are kept only when one pair is shown.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from patchlab.core.errors import Cancelled, InputError

NUMERIC = ("answer_prob", "wrong_prob", "logit_diff", "answer_logprob")


@dataclass
class PairProgress:
    """``done`` of ``total`` pairs processed."""

    done: int
    total: int
    elapsed: float


def _stopped(stop) -> bool:
    return stop is not None and stop.is_set()


def _loop(pairs, stop, one):
    """Call ``one(pair)`` per pair, yielding progress; return the list of values."""
    t0 = time.perf_counter()
    out = []
    for i, pair in enumerate(pairs):
        if _stopped(stop):
            raise Cancelled("cancelled")
        out.append(one(pair))
        yield PairProgress(i + 1, len(pairs), time.perf_counter() - t0)
    return out


def mean_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean of readout summaries; top-k tokens only when there is one."""
    if len(runs) == 1:
        return dict(runs[0])
    out: dict[str, Any] = {k: float(np.mean([r[k] for r in runs])) for k in NUMERIC if k in runs[0]}
    out["top_k"] = []
    out["n_pairs"] = len(runs)
    return out


def readout_job(model, pairs, stop=None):
    """Clean and corrupted readouts of ``pairs`` (mean when several)."""
    from patchlab.engine.readout import run_readout

    values = yield from _loop(pairs, stop, lambda p: run_readout(model, p))
    return {run: mean_summary([v[run] for v in values]) for run in ("clean", "corrupted")}


def patched_job(model, pairs, *, target, index, direction, stop=None):
    """The patched run of one cell over ``pairs`` (mean when several)."""
    from patchlab.engine.readout import patched_readout

    values = yield from _loop(pairs, stop, lambda p: patched_readout(
        model, p, target=target, index=index, direction=direction))
    return mean_summary(values)


def attention_job(model, pairs, *, layer, head, stop=None):
    """One head's attention patterns on both prompts (mean over pairs of one length)."""
    from patchlab.engine.readout import attention_patterns

    values = yield from _loop(pairs, stop, lambda p: attention_patterns(model, p, layer, head))
    if len(values) == 1:
        return values[0]
    shapes = {np.shape(v["clean"]) for v in values}
    if len(shapes) > 1:
        raise InputError("The pairs have different token lengths, so their attention patterns "
                         "cannot be averaged: show one pair.")
    out = dict(values[0])
    for which in ("clean", "corrupted"):
        out[which] = np.mean([v[which] for v in values], axis=0)
        out[f"{which}_tokens"] = shared_tokens([v[f"{which}_tokens"] for v in values])
    return out


def decompose_job(model, pairs, stop=None):
    """Direct logit attribution of ``pairs`` (arrays averaged over pairs when several)."""
    from patchlab.engine.decompose import decompose

    values = yield from _loop(pairs, stop, lambda p: decompose(model, p))
    if len(values) == 1:
        return values[0]
    out = copy.deepcopy(values[0])
    for name in ("components", "heads", "logit_lens", "total"):
        setattr(out, name, np.mean([getattr(v, name) for v in values], axis=0))
    out.runs = {run: mean_summary([v.runs[run] for v in values]) for run in values[0].runs}
    out.meta = dict(out.meta, n_pairs=len(values))
    out.meta.pop("pair", None)
    return out


def shared_tokens(per_pair: list[list[str]]) -> list[str]:
    """Per position: the token when every pair has the same one there, else ``"#i"``."""
    n = max((len(t) for t in per_pair), default=0)
    out = []
    for i in range(n):
        toks = {t[i] if i < len(t) else None for t in per_pair}
        out.append(next(iter(toks)) if len(toks) == 1 and None not in toks else f"#{i}")
    return out


@dataclass
class ScoreChunk:
    """Rows of the pairs table scored so far: dicts with ``index, n_tokens, tokens_ok, error,
    clean_answer_prob, corrupted_answer_prob, clean_correct``."""

    rows: list[dict[str, Any]]
    done: int
    total: int


def _score_one(model, i: int, pair) -> dict[str, Any]:
    import torch

    from patchlab.core.errors import PairError
    from patchlab.engine.tokens import tokenize_pair

    row: dict[str, Any] = {"index": i, "pair": pair, "n_tokens": 0, "tokens_ok": False, "error": "",
                           "clean_answer_prob": float("nan"), "corrupted_answer_prob": float("nan"),
                           "clean_correct": None}
    try:
        tp = tokenize_pair(model, pair)
    except PairError as exc:
        row["error"] = str(exc)
        try:
            row["n_tokens"] = len(model.to_str_tokens(pair.clean))
        except Exception:  # noqa: BLE001 - the length is a courtesy; the error says what is wrong
            pass
        return row
    row["n_tokens"], row["tokens_ok"] = tp.n_pos, True
    with torch.inference_mode():
        logits = model(torch.cat([tp.clean, tp.corrupted]))[:, -1].float()
    probs = torch.softmax(logits, dim=-1)
    row["clean_answer_prob"] = float(probs[0, tp.answer_id])
    row["corrupted_answer_prob"] = float(probs[1, tp.answer_id])
    row["clean_correct"] = bool(int(logits[0].argmax()) == tp.answer_id)
    return row


def score_pairs_job(model, pairs, start: int = 0, chunk: int = 32, stop=None):
    """Score every pair for the pairs table, yielding :class:`ScoreChunk` s; return the count.

    Pairs from ``start`` on are scored. The model "gets a pair right" when the answer is its
    top-1 next token on the clean prompt.
    (A local stand-in for ``patchlab.engine.pairstats.iter_score_pairs``.)
    """
    rows: list[dict[str, Any]] = []
    for i in range(start, len(pairs)):
        pair = pairs[i]
        if _stopped(stop):
            break
        rows.append(_score_one(model, i, pair))
        if len(rows) >= chunk:
            yield ScoreChunk(rows, i + 1, len(pairs))
            rows = []
    if rows:
        yield ScoreChunk(rows, rows[-1]["index"] + 1, len(pairs))
    return len(pairs)
