"""Top activating dataset examples of a neuron or head, from a streaming top-k heap."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Generator
from typing import Any

import numpy as np

from patchlab._version import __version__
from patchlab.core.errors import InputError
from patchlab.core.text_result import TopExample, TopExamples
from patchlab.engine.text.losses import model_meta
from patchlab.engine.text.stream import Batch, TextEvent, bos_id, iter_windows, run_to_end
from patchlab.engine.text.targets import parse_target, read_target


def iter_top_examples(model: Any, texts: Any, *, neuron: tuple[int, int] | None = None,
                      head: tuple[int, int] | None = None, k: int = 20, width: int = 10,
                      batch_tokens: int = 8192, max_tokens: int | None = None, stop: Any = None
                      ) -> Generator[TextEvent, None, TopExamples]:
    """Generator form of :func:`top_examples`."""
    if (neuron is None) == (head is None):
        raise InputError("Give exactly one of neuron=(layer, n) or head=(layer, h).")
    if k < 1:
        raise InputError("k must be at least 1.")
    unit = ("neuron", *neuron) if neuron is not None else ("head", *head)
    tgt = parse_target(model, unit)
    heap: list[tuple[float, int, TopExample]] = []
    tie = itertools.count()
    skip_bos = bos_id(model) is not None

    def compute(b: Batch) -> np.ndarray:
        return read_target(model, tgt, b.tokens).cpu().numpy()[..., None]

    def on_batch(b: Batch, out: np.ndarray) -> None:
        for r, w in enumerate(b.windows):
            vals = out[r, :len(w.ids), 0]
            k0 = 1 if (w.synthetic_bos or (skip_bos and w.start == 0)) else 0
            for p in range(k0, len(w.ids)):
                v = float(vals[p])
                if not np.isfinite(v) or (len(heap) >= k and v <= heap[0][0]):
                    continue
                doc_pos = w.start + p
                lo, hi = max(k0, p - width), min(len(w.ids), p + 4)
                ex = TopExample(v, w.doc.doc.index, doc_pos, w.doc.tokens[w.start + lo:w.start + hi],
                                vals[lo:hi].copy(), p - lo, w.doc.doc.line)
                item = (v, -next(tie), ex)  # ties keep the earlier position
                if len(heap) < k:
                    heapq.heappush(heap, item)
                else:
                    heapq.heapreplace(heap, item)

    _, _, info = yield from iter_windows(model, texts, compute, keep=False, on_batch=on_batch,
                                         batch_tokens=batch_tokens, max_tokens=max_tokens, stop=stop,
                                         phase="top_examples")
    examples = [e for _, _, e in sorted(heap, key=lambda x: (-x[0], -x[1]))]
    label = f"L{tgt.layer}N{tgt.index}" if tgt.kind == "neuron" else f"L{tgt.layer}H{tgt.index}"
    meta = {"kind": "top_examples", "unit": label, "value_label": tgt.label, "k": k,
            "bos_excluded": skip_bos, **model_meta(model), **info, "patchlab_version": __version__}
    return TopExamples(examples, meta)


def top_examples(model: Any, texts: Any, *, neuron: tuple[int, int] | None = None,
                 head: tuple[int, int] | None = None, k: int = 20, **kwargs: Any) -> TopExamples:
    """The ``k`` positions of a corpus where a neuron (MLP ``hook_post``) or a head (the norm of
    its output ``z @ W_O``) is most active, each with its context.

    Parameters
    ----------
    model : TransformerBridge
    texts : corpus
        As in :func:`patchlab.token_losses`; streamed, only the current top ``k`` are kept.
    neuron : (layer, n), optional
    head : (layer, h), optional
        Exactly one of them.
    k : int
    width : int
        Tokens of context before each example (3 after).

    Returns
    -------
    TopExamples
        ``.examples`` (largest first), each with ``value``, ``doc``, ``pos``, ``tokens``
        (context), ``values`` (the activation at each context token) and ``focus``.
    """
    return run_to_end(iter_top_examples(model, texts, neuron=neuron, head=head, k=k, **kwargs))
