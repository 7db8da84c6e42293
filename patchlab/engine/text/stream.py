"""Stream a corpus through a model in batches: tokenise, split into context windows, pad, run.

The driver :func:`iter_windows` is a generator: it yields one :class:`TextEvent` per batch
(progress, ETA) and returns the documents it read, with their token strings; the caller's
``compute`` turns each batch into per-token values. Only one batch's activations exist at a
time; the corpus itself is read line by line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from patchlab.core.errors import InputError
from patchlab.engine.context import as_stop
from patchlab.engine.sweep import run_to_end  # noqa: F401 - the one drain; text jobs import it from here
from patchlab.engine.text.corpus import Doc, as_corpus

TOKENIZE_CHUNK = 64  # documents tokenised per tokenizer call


@dataclass
class TextEvent:
    """Progress of a job over text; ``values`` (optional) is a fresh array the receiver may keep."""

    done: int
    total: int
    unit: str  # "bytes" or "docs"
    tokens: int
    docs: int
    elapsed: float
    phase: str = "run"
    values: Any = None

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def eta(self) -> float:
        """Seconds left, extrapolated from the work done so far (NaN before any)."""
        f = self.fraction
        return self.elapsed * (1 - f) / f if f > 0 else float("nan")


@dataclass
class DocTokens:
    """A tokenised document: ids (BOS first when the model prepends one) and strings."""

    doc: Doc
    ids: list[int]
    tokens: list[str]
    windows: int = 1
    slot: int = 0  # position in the job's document list
    done_at: int = 0  # corpus work done (bytes or docs) once this document was read


@dataclass
class Window:
    """A slice of one document that fits the context: ``ids`` start at document token ``start``."""

    doc: DocTokens
    start: int
    ids: list[int]
    synthetic_bos: bool = False  # a BOS added in front of a later window


@dataclass
class Batch:
    """Right-padded token ids ``[rows, pos]`` (causal attention: padding cannot change real
    positions) and the windows they come from."""

    tokens: torch.Tensor
    lengths: list[int]
    windows: list[Window] = field(default_factory=list)


def bos_id(model: Any) -> int | None:
    tok = model.tokenizer
    if getattr(model.cfg, "default_prepend_bos", True) and tok.bos_token_id is not None:
        return int(tok.bos_token_id)
    return None


class _Decoder:
    """Token id -> string, cached (decoding one id at a time is what ``to_str_tokens`` shows)."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, ids: list[int]) -> list[str]:
        out = []
        for i in ids:
            s = self.cache.get(i)
            if s is None:
                s = self.cache[i] = self.tok.decode([i])
            out.append(s)
        return out


def tokenize_docs(model: Any, docs: list[Doc], decoder: _Decoder | None = None) -> list[DocTokens]:
    """Tokenise documents (no truncation) with the model's BOS in front when it uses one."""
    tok = model.tokenizer
    decoder = decoder or _Decoder(tok)
    bos = bos_id(model)
    enc = tok([d.text for d in docs], add_special_tokens=False)["input_ids"]
    out = []
    for d, ids in zip(docs, enc):
        ids = ([bos] if bos is not None else []) + list(ids)
        out.append(DocTokens(d, ids, decoder(ids)))
    return out


def windows_of(dt: DocTokens, n_ctx: int, bos: int | None) -> list[Window]:
    """Split a document into non-overlapping windows of at most ``n_ctx`` tokens; a later window
    starts with a fresh BOS (when the model uses one), so each window is a valid input."""
    ids = dt.ids
    if len(ids) <= n_ctx:
        return [Window(dt, 0, ids)]
    if bos is None:
        return [Window(dt, s, ids[s:s + n_ctx]) for s in range(0, len(ids), n_ctx)]
    wins = [Window(dt, 0, ids[:n_ctx])]
    step = n_ctx - 1
    for s in range(n_ctx, len(ids), step):
        # window ids [bos, ids[s:s+step]]; window position k >= 1 is document token s + k - 1
        wins.append(Window(dt, s - 1, [bos] + ids[s:s + step], synthetic_bos=True))
    return wins


def iter_windows(
    model: Any,
    corpus: Any,
    compute: Callable[[Batch], np.ndarray],
    *,
    n_values: int = 1,
    batch_tokens: int = 8192,
    max_tokens: int | None = None,
    stop: Any = None,
    phase: str = "run",
    keep: bool = True,
    on_batch: Callable[[Batch, np.ndarray], None] | None = None,
) -> Generator[TextEvent, None, tuple[list[DocTokens], list[np.ndarray], dict]]:
    """Run ``compute`` over every window of the corpus, a batch at a time.

    Parameters
    ----------
    compute : callable
        ``Batch -> ndarray [rows, pos, n_values]``: the value at each window position (NaN where
        undefined, e.g. the first position for next-token quantities).
    keep : bool
        Keep per-token values and token strings per document (else ``on_batch`` consumes the
        values, e.g. a top-k heap, and documents are dropped once processed: memory stays flat
        however long the corpus).

    Returns
    -------
    (docs, values, info)
        Tokenised documents, per document an array ``[n_tokens, n_values]`` (empty when not
        kept), and ``info`` (``n_tokens``, ``split_docs``, ``complete``, ``truncated``).
    """
    stop_fn = as_stop(stop)
    corpus = as_corpus(corpus)
    n_ctx = int(model.cfg.n_ctx)
    bos = bos_id(model)
    decoder = _Decoder(model.tokenizer)
    it, done = corpus.iter_docs()
    docs: list[DocTokens] = []
    values: list[np.ndarray] = []
    pending: list[Window] = []
    n_tokens = split = 0
    t0 = time.perf_counter()
    truncated = cancelled = False

    def flush(wins: list[Window]) -> None:
        width = max(len(w.ids) for w in wins)
        pad = bos if bos is not None else 0
        arr = torch.full((len(wins), width), pad, dtype=torch.long)
        for r, w in enumerate(wins):
            arr[r, :len(w.ids)] = torch.tensor(w.ids)
        batch = Batch(arr.to(model.cfg.device), [len(w.ids) for w in wins], wins)
        out = np.asarray(compute(batch), dtype=np.float64).reshape(len(wins), width, n_values)
        if on_batch is not None:
            on_batch(batch, out)
        if keep:
            for r, w in enumerate(wins):
                k0 = 1 if w.synthetic_bos else 0
                dest = values[w.doc.slot]
                dest[w.start + k0:w.start + len(w.ids)] = out[r, k0:len(w.ids)]
        else:  # nothing per token is kept: drop the finished documents' tokens too
            for w in wins:
                w.doc.ids, w.doc.tokens = [], []

    def event() -> TextEvent:
        return TextEvent(docs[-1].done_at if docs else 0, corpus.size, corpus.size_unit, n_tokens, len(docs),
                         time.perf_counter() - t0, phase)

    exhausted = False
    while not exhausted:
        group, marks = [], []
        for d in it:
            group.append(d)
            marks.append(done[0])  # read ahead of the model: progress counts finished docs only
            if len(group) >= TOKENIZE_CHUNK:
                break
        else:
            exhausted = True
        for dt, mark in zip(tokenize_docs(model, group, decoder) if group else [], marks):
            dt.done_at = mark
            if max_tokens is not None and n_tokens + len(dt.ids) > max_tokens and docs:
                truncated = exhausted = True
                break
            wins = windows_of(dt, n_ctx, bos)
            dt.windows, dt.slot = len(wins), len(docs)
            split += len(wins) > 1
            docs.append(dt)
            values.append(np.full((len(dt.ids), n_values), np.nan) if keep else np.zeros((0, n_values)))
            n_tokens += len(dt.ids)
            pending.extend(wins)
            width = max(len(w.ids) for w in pending)
            if len(pending) * width >= batch_tokens:
                flush(pending)
                pending = []
                yield event()
                if stop_fn():
                    cancelled = exhausted = True
                    break
    if pending and not cancelled:
        flush(pending)
        yield event()
    if not docs:
        raise InputError(f"The corpus ({corpus.describe()}) holds no documents: every line is "
                         "empty. Give a file with one document per line, or some text.")
    info = {"n_tokens": n_tokens, "n_docs": len(docs), "split_docs": split, "n_ctx": n_ctx,
            "complete": not cancelled, "cancelled": cancelled, "truncated": truncated,
            "corpus": corpus.describe(), "elapsed_s": time.perf_counter() - t0}
    if split:
        info["windows_note"] = (f"{split} document(s) longer than the context ({n_ctx} tokens) were "
                                "split into windows; each later window starts again from BOS.")
    return docs, values, info


def next_token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``[rows, pos]`` log-prob of each token given the tokens before it (NaN at position 0)."""
    lp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, tokens[:, 1:, None])[..., 0]
    return torch.cat([torch.full_like(lp[:, :1], float("nan")), lp], dim=1)

