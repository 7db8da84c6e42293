"""Per-run quantities at the last position: logit difference, P(answer), P(wrong)."""

from __future__ import annotations

import numpy as np
import torch

from patchlab.core.metrics import RAW


def last_quantities(last_logits: torch.Tensor, answer_id: int | torch.Tensor,
                    wrong_id: int | torch.Tensor) -> dict[str, np.ndarray]:
    """Raw quantities from ``[batch, vocab]`` last-position logits (float64 numpy, fresh).

    ``answer_id`` / ``wrong_id``: one token for every row, or a ``[batch]`` tensor of one per
    row (rows of several pairs in one batch).

    The normaliser is a float32 ``logsumexp`` (relative error ~1e-7, far below the 1e-4
    parity bar); converting the whole ``[batch, vocab]`` block to float64 first cost more
    than the sweep's unembedding on large vocabularies. The two logits themselves are read
    exactly and combined in float64.
    """
    lse = torch.logsumexp(last_logits.float(), dim=-1).double()
    rows = torch.arange(last_logits.shape[0], device=last_logits.device)
    answer, wrong = last_logits[rows, answer_id].double(), last_logits[rows, wrong_id].double()
    out = {
        "logit_diff": answer - wrong,
        "answer_logprob": answer - lse,
        "answer_prob": (answer - lse).exp(),
        "wrong_prob": (wrong - lse).exp(),
    }
    return {k: out[k].detach().cpu().numpy().copy() for k in RAW}


def top_k(last_logits: torch.Tensor, model, k: int = 10) -> list[tuple[str, float]]:
    """Top-``k`` next tokens and probabilities for one ``[vocab]`` logit vector."""
    probs = torch.softmax(last_logits.double(), dim=-1)
    values, ids = probs.topk(min(k, probs.shape[-1]))
    return [(str(model.to_string(int(i))), float(v)) for v, i in zip(values, ids)]
