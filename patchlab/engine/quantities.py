"""Per-run quantities at the last position: logit difference, P(answer), P(wrong)."""

from __future__ import annotations

import numpy as np
import torch

from patchlab.core.metrics import RAW


def last_quantities(last_logits: torch.Tensor, answer_id: int, wrong_id: int) -> dict[str, np.ndarray]:
    """Raw quantities from ``[batch, vocab]`` last-position logits (float64 numpy, fresh)."""
    logits = last_logits.double()
    logprobs = torch.log_softmax(logits, dim=-1)
    out = {
        "logit_diff": logits[:, answer_id] - logits[:, wrong_id],
        "answer_logprob": logprobs[:, answer_id],
        "answer_prob": logprobs[:, answer_id].exp(),
        "wrong_prob": logprobs[:, wrong_id].exp(),
    }
    return {k: out[k].detach().cpu().numpy().copy() for k in RAW}


def top_k(last_logits: torch.Tensor, model, k: int = 10) -> list[tuple[str, float]]:
    """Top-``k`` next tokens and probabilities for one ``[vocab]`` logit vector."""
    probs = torch.softmax(last_logits.double(), dim=-1)
    values, ids = probs.topk(min(k, probs.shape[-1]))
    return [(str(model.to_string(int(i))), float(v)) for v, i in zip(values, ids)]
