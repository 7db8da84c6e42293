"""Per-token loss over a corpus, and two models compared token by token."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import torch

from patchlab._version import __version__
from patchlab.core.errors import InputError
from patchlab.core.text_result import DocScores, TokenScores
from patchlab.engine.loading import model_info
from patchlab.engine.text.stream import (
    Batch,
    TextEvent,
    iter_windows,
    next_token_logprobs,
    run_to_end,
)


def model_meta(model: Any) -> dict[str, Any]:
    info = model_info(model)
    return {"model": info.name, "processing": info.processing, "model_info": info.to_dict()}


def to_doc_scores(docs, values, column: int = 0) -> list[DocScores]:
    return [DocScores(d.tokens, v[:, column].copy(), d.doc.index, d.doc.line, d.windows)
            for d, v in zip(docs, values)]


def row_chunks(model: Any, rows: int, width: int, budget_mb: int = 256) -> int:
    """Rows per forward pass so that one pass's logits stay under ``budget_mb``."""
    per_row = width * int(model.cfg.d_vocab) * 4
    return max(1, min(rows, budget_mb * 2 ** 20 // max(per_row, 1)))


def logprobs(model: Any, tokens: torch.Tensor, fwd_hooks=()) -> torch.Tensor:
    """``[rows, pos]`` next-token log-probs, run in chunks of rows to bound the logits' memory."""
    out = []
    step = row_chunks(model, tokens.shape[0], tokens.shape[1])
    with torch.inference_mode():
        for s in range(0, tokens.shape[0], step):
            chunk = tokens[s:s + step]
            logits = model.run_with_hooks(chunk, fwd_hooks=list(fwd_hooks)) if fwd_hooks else model(chunk)
            out.append(next_token_logprobs(logits, chunk))
    return torch.cat(out)


def iter_token_losses(model: Any, texts: Any, *, batch_tokens: int = 8192,
                      max_tokens: int | None = None, stop: Any = None
                      ) -> Generator[TextEvent, None, TokenScores]:
    """Generator form of :func:`token_losses` (one event per batch)."""
    def compute(b: Batch) -> np.ndarray:
        return (-logprobs(model, b.tokens)).cpu().numpy()[..., None]

    docs, values, info = yield from iter_windows(model, texts, compute, batch_tokens=batch_tokens,
                                                 max_tokens=max_tokens, stop=stop, phase="loss")
    meta = {"kind": "token_losses", "value_label": "loss (nats)", **model_meta(model), **info,
            "patchlab_version": __version__}
    return TokenScores(to_doc_scores(docs, values), meta)


def token_losses(model: Any, texts: Any, **kwargs: Any) -> TokenScores:
    """Per-token loss (negative log-prob of each token given the ones before it).

    Parameters
    ----------
    model : TransformerBridge
    texts : str, list of str, path or Corpus
        A ``.txt`` file (one document per line), a ``.jsonl`` file with ``text`` fields, a
        pasted text, a list of texts, or :func:`patchlab.engine.text.corpus.toy_corpus`.
    batch_tokens, max_tokens, stop
        Tokens per forward pass, a cap on the tokens read, a stop flag (see
        :func:`iter_token_losses`).

    Returns
    -------
    TokenScores
        ``.docs[i].tokens`` and ``.values`` (NaN for the first token); documents longer than
        the context are split into windows (``meta["split_docs"]``).
    """
    return run_to_end(iter_token_losses(model, texts, **kwargs))


def check_same_tokenizer(a: Any, b: Any) -> None:
    """Raise an :class:`InputError` unless the two models tokenise text the same way."""
    ta, tb = a.tokenizer, b.tokenizer
    na, nb = model_info(a).name, model_info(b).name
    if int(a.cfg.d_vocab) != int(b.cfg.d_vocab) or ta.get_vocab() != tb.get_vocab():
        raise InputError(
            f"{na} and {nb} use different tokenizers (vocabularies of {len(ta)} and {len(tb)} "
            "tokens), so their per-token log-probs cannot be compared. Pick two models of the same "
            "family (same tokenizer), e.g. toy-attn1 and toy-attn2.")
    if bos_of(a) != bos_of(b):
        raise InputError(f"{na} and {nb} treat the BOS token differently; compare models that share "
                         "their tokenizer settings.")


def bos_of(model: Any) -> int | None:
    from patchlab.engine.text.stream import bos_id

    return bos_id(model)


def iter_compare_models(model_a: Any, model_b: Any, texts: Any, *, floor: float = -5.0,
                        batch_tokens: int = 8192, max_tokens: int | None = None, stop: Any = None
                        ) -> Generator[TextEvent, None, TokenScores]:
    """Generator form of :func:`compare_models`."""
    check_same_tokenizer(model_a, model_b)
    if not np.isfinite(floor):
        raise InputError("floor must be a finite number (e.g. -5.0).")
    n_ctx = min(int(model_a.cfg.n_ctx), int(model_b.cfg.n_ctx))

    def compute(b: Batch) -> np.ndarray:
        la = logprobs(model_a, b.tokens).cpu().numpy()
        lb = logprobs(model_b, b.tokens).cpu().numpy()
        return np.stack([np.maximum(lb, floor) - np.maximum(la, floor), la, lb], axis=-1)

    narrow = model_a if int(model_a.cfg.n_ctx) == n_ctx else model_b
    docs, values, info = yield from iter_windows(narrow, texts, compute, n_values=3,
                                                 batch_tokens=batch_tokens, max_tokens=max_tokens,
                                                 stop=stop, phase="compare")
    ma, mb = model_meta(model_a), model_meta(model_b)
    meta = {"kind": "compare_models", "floor": float(floor),
            "value_label": f"max(logp_B, {floor:g}) - max(logp_A, {floor:g})",
            "model": f"{mb['model']} vs {ma['model']}", "model_a": ma["model"], "model_b": mb["model"],
            "processing": ma["processing"], **info, "patchlab_version": __version__}
    res = TokenScores(to_doc_scores(docs, values, 0), meta)
    res.logp_a = to_doc_scores(docs, values, 1)  # type: ignore[attr-defined]
    res.logp_b = to_doc_scores(docs, values, 2)  # type: ignore[attr-defined]
    return res


def compare_models(model_a: Any, model_b: Any, texts: Any, floor: float = -5.0, **kwargs: Any) -> TokenScores:
    """Per token ``max(logp_b, floor) - max(logp_a, floor)``: where model B beats model A.

    Parameters
    ----------
    model_a, model_b : TransformerBridge
        Two models with the same tokenizer (else an :class:`InputError` says so).
    texts : corpus
        As in :func:`token_losses`.
    floor : float
        Log-probs below it count as the floor, so tokens both models find hopeless do not
        dominate (the research lists use -5).

    Returns
    -------
    TokenScores
        ``.docs[i].tokens``/``.values`` (NaN for the first token), ``.top(k)`` (where B beats A
        most, with context), ``.histogram()``; ``.logp_a``/``.logp_b`` hold each model's raw
        log-probs in the same layout.
    """
    return run_to_end(iter_compare_models(model_a, model_b, texts, floor=floor, **kwargs))
