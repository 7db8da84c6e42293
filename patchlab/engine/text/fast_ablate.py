"""Plain-torch forward passes for corpus ablation (GPT-2, NeoX, Llama shapes and the toy models).

Reuses the patching fast path's weights and attention (:mod:`patchlab.engine.fast`). One clean
pass keeps each layer's residual, head outputs ``z`` and MLP output; an ablated row then starts
at its own layer from that cache (earlier layers cannot change) with the ablated ``z`` or MLP
output swapped in. The clean losses are checked against the bridge before the path is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from patchlab.engine.fast.forward import attend, mlp, qkv, rope, rotary_tables

TOL = 2e-3


@dataclass
class CleanRun:
    pre: list[torch.Tensor]  # resid_pre per layer [B, T, d]
    z: list[torch.Tensor]  # [B, T, H, dh]
    mlp_out: list[torch.Tensor]  # [B, T, d] (zeros for attention-only models)
    cos: Any
    sin: Any
    loss: torch.Tensor  # [B, T], NaN at position 0


def weights(model: Any):
    """The fast path's weights for ``model`` or None (with the reason) when it does not apply."""
    from patchlab.engine.fast.backend import weights_for
    from patchlab.engine.fast.weights import Unsupported, extra_features

    try:
        w = weights_for(model)
        extra = extra_features(w)  # this module's forward pass does not implement them
        if extra:
            raise Unsupported(extra)
        return w, ""
    except Unsupported as exc:
        return None, str(exc)


def _attn_z(w, li: int, x: torch.Tensor, cos, sin) -> torch.Tensor:
    q, k, v = qkv(w, w.layers[li], x)  # [B, H or Hkv, T, dh], before rotary
    q, k = rope(q, cos, sin, w.rotary_dim), rope(k, cos, sin, w.rotary_dim)
    z, _ = attend(w, q, k, v, torch.arange(x.shape[1], device=x.device))
    return z  # [B, T, H, dh]


def _after_attn(w, li: int, x: torch.Tensor, z: torch.Tensor, mlp_clean: torch.Tensor | None):
    """Residual after block ``li`` given its input ``x`` and head outputs ``z``; also the MLP
    output. Parallel blocks' MLP reads ``x`` itself, so a cached clean MLP output is reused."""
    layer = w.layers[li]
    B, T, d = x.shape
    a = torch.addmm(layer.b_O, z.reshape(B * T, -1), layer.W_O_flat).view(B, T, d)
    if w.parallel:
        m = mlp_clean if mlp_clean is not None else mlp(w, layer, x)
        return x + a + m, m
    mid = x + a
    m = mlp(w, layer, mid)
    return mid + m, m


def _losses(w, x: torch.Tensor, tokens: torch.Tensor, rows_per_chunk: int) -> torch.Tensor:
    """Next-token loss ``[R, T]`` (NaN at position 0) from final residuals, logits in chunks."""
    R, T, d = x.shape
    out = torch.full((R, T), float("nan"), dtype=torch.float32, device=x.device)
    for s in range(0, R, rows_per_chunk):
        xs = x[s:s + rows_per_chunk, :-1]
        logits = torch.addmm(w.b_U, w.ln_final(xs.reshape(-1, d)), w.W_U).view(xs.shape[0], T - 1, -1)
        tgt = tokens[s:s + rows_per_chunk, 1:]
        lse = torch.logsumexp(logits.float(), dim=-1)
        out[s:s + rows_per_chunk, 1:] = lse - logits.gather(-1, tgt[..., None])[..., 0].float()
    return out


def clean_run(w, tokens: torch.Tensor, rows_per_chunk: int) -> CleanRun:
    B, T = tokens.shape
    x = w.W_E[tokens]
    if w.W_pos is not None:
        x = x + w.W_pos[:T]
    cos, sin = rotary_tables(w, T, x)
    pre, zs, ms = [], [], []
    for li in range(len(w.layers)):
        pre.append(x)
        z = _attn_z(w, li, x, cos, sin)
        zs.append(z)
        x, m = _after_attn(w, li, x, z, None)
        ms.append(m)
    return CleanRun(pre, zs, ms, cos, sin, _losses(w, x, tokens, rows_per_chunk))


def finish(w, li: int, x: torch.Tensor, cos, sin, tokens: torch.Tensor, rows_per_chunk: int) -> torch.Tensor:
    """Losses of rows whose residual after block ``li - 1`` is ``x``."""
    for j in range(li, len(w.layers)):
        x, _ = _after_attn(w, j, x, _attn_z(w, j, x, cos, sin), None)
    return _losses(w, x, tokens, rows_per_chunk)


def ablated_heads(w, run: CleanRun, li: int, heads: list[int], reps: list[torch.Tensor],
                  tokens: torch.Tensor, rows_per_chunk: int) -> torch.Tensor:
    """Losses ``[len(heads), B, T]``: row group ``i`` has head ``heads[i]`` of layer ``li``'s
    ``z`` replaced by ``reps[i]`` ``[B, T, dh]``."""
    B, T = tokens.shape
    n = len(heads)
    z = run.z[li].repeat(n, 1, 1, 1)
    for i, (h, r) in enumerate(zip(heads, reps)):
        z[i * B:(i + 1) * B, :, h] = r
    x = run.pre[li].repeat(n, 1, 1)
    m = run.mlp_out[li].repeat(n, 1, 1) if w.parallel else None
    x, _ = _after_attn(w, li, x, z, m)
    return finish(w, li + 1, x, run.cos, run.sin, tokens.repeat(n, 1), rows_per_chunk).view(n, B, T)


def ablated_mlp(w, run: CleanRun, li: int, rep: torch.Tensor, tokens: torch.Tensor,
                rows_per_chunk: int) -> torch.Tensor:
    """Losses ``[B, T]`` with layer ``li``'s MLP output replaced by ``rep``."""
    layer = w.layers[li]
    x = run.pre[li]
    B, T, d = x.shape
    a = torch.addmm(layer.b_O, run.z[li].reshape(B * T, -1), layer.W_O_flat).view(B, T, d)
    x = x + a + rep
    return finish(w, li + 1, x, run.cos, run.sin, tokens, rows_per_chunk)
