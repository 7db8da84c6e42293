"""Per-pair scores for a pairs table: tokens OK, length, P(answer) clean and corrupted, top-1.

:func:`iter_score_pairs` is a generator like the sweeps: pairs are read in blocks, each block's
valid pairs are batched by equal token length (no padding, so no attention-mask subtleties),
and one chunk of rows is yielded per batch. A pair that fails validation becomes a row with
``tokens_ok=False`` and the message, so a 10,000-pair file with one bad line still scores.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from patchlab.core.errors import Cancelled, PairError
from patchlab.core.pairs import PromptPair
from patchlab.engine.context import as_stop
from patchlab.engine.tokens import TokenizedPair, tokenize_pair

BLOCK = 256  # pairs tokenised before their batches run: rows start streaming at once


@dataclass(frozen=True)
class PairRow:
    """One pair's row in the pairs table (probabilities at the last position; NaN if not run)."""

    index: int
    n_tokens: int
    tokens_ok: bool
    error: str
    clean_answer_prob: float = float("nan")
    corrupted_answer_prob: float = float("nan")
    clean_correct: bool = False  # the answer is the model's top-1 next token on the clean prompt
    clean_logit_diff: float = float("nan")
    corrupted_logit_diff: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _n_tokens(model: Any, pair: PromptPair) -> int:
    try:
        return int(model.to_tokens(pair.clean, truncate=False).shape[-1])
    except Exception:  # noqa: BLE001 - a non-string prompt: its length is unknown
        return 0


def _score(model: Any, block: list[tuple[int, TokenizedPair]]) -> list[PairRow]:
    clean = torch.cat([tp.clean for _, tp in block])
    corrupted = torch.cat([tp.corrupted for _, tp in block])
    ans = torch.tensor([tp.answer_id for _, tp in block])
    wrong = torch.tensor([tp.wrong_id for _, tp in block])
    with torch.inference_mode():
        logits = model(torch.cat([clean, corrupted]))[:, -1]
    rows = torch.arange(len(block))
    q = {}
    for which, part in (("clean", logits[: len(block)]), ("corrupted", logits[len(block):])):
        lse = torch.logsumexp(part.double(), dim=-1)
        q[which] = ((part.double()[rows, ans] - lse).exp().cpu().numpy(),
                    (part.double()[rows, ans] - part.double()[rows, wrong]).cpu().numpy())
        if which == "clean":
            top1 = part.argmax(dim=-1).cpu().numpy()
    return [
        PairRow(index=i, n_tokens=tp.n_pos, tokens_ok=True, error="",
                clean_answer_prob=float(q["clean"][0][k]), corrupted_answer_prob=float(q["corrupted"][0][k]),
                clean_correct=bool(top1[k] == tp.answer_id),
                clean_logit_diff=float(q["clean"][1][k]), corrupted_logit_diff=float(q["corrupted"][1][k]))
        for k, (i, tp) in enumerate(block)
    ]


def iter_score_pairs(model: Any, pairs: Sequence[PromptPair], stop: Any = None, batch_size: int = 32,
                     ) -> Generator[list[PairRow], None, list[PairRow]]:
    """Score every pair on ``model``, yielding a chunk of :class:`PairRow` per batch.

    Parameters
    ----------
    model : TransformerBridge
    pairs : sequence of PromptPair
        A :class:`patchlab.core.pairset.PairList` also names each bad pair's file line.
    stop : callable or threading.Event, optional
        Checked between batches; a stopped run returns the rows scored so far.
    batch_size : int
        Pairs per forward pass (each pass runs the clean and the corrupted prompts together).

    Yields
    ------
    list of PairRow
        The rows of one batch (invalid pairs come in the chunk of their block's first batch).

    Returns
    -------
    list of PairRow
        All rows scored, ordered by ``index``.
    """
    stop_fn = as_stop(stop)
    if batch_size < 1:
        raise PairError("batch_size must be at least 1.")
    where = getattr(pairs, "where", lambda i: f"Pair {i + 1}")
    done: list[PairRow] = []
    try:
        for start in range(0, len(pairs), BLOCK):
            bad: list[PairRow] = []
            by_len: dict[int, list[tuple[int, TokenizedPair]]] = {}
            for i in range(start, min(start + BLOCK, len(pairs))):
                try:
                    tp = tokenize_pair(model, pairs[i])
                except PairError as exc:
                    bad.append(PairRow(i, _n_tokens(model, pairs[i]), False, f"{where(i)}: {exc}"))
                    continue
                by_len.setdefault(tp.n_pos, []).append((i, tp))
            for group in by_len.values():
                for b in range(0, len(group), batch_size):
                    if stop_fn():
                        raise Cancelled("Stopped.")
                    chunk = bad + _score(model, group[b:b + batch_size])
                    bad = []
                    done.extend(chunk)
                    yield chunk
            if bad:
                done.extend(bad)
                yield bad
    except Cancelled:
        pass
    return sorted(done, key=lambda r: r.index)


def score_pairs(model: Any, pairs: Sequence[PromptPair], **kwargs: Any) -> list[PairRow]:
    """All rows of :func:`iter_score_pairs` at once."""
    from patchlab.engine.sweep import run_to_end

    return run_to_end(iter_score_pairs(model, pairs, **kwargs))


def accuracy(rows: Sequence[PairRow]) -> float:
    """Share of scored pairs whose clean answer is the model's top-1 (NaN without rows)."""
    ok = [r.clean_correct for r in rows if r.tokens_ok]
    return float(np.mean(ok)) if ok else float("nan")
