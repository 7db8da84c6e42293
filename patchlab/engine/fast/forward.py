"""Plain-torch forward pass pieces: a cached base run and continuations from any layer.

Shapes: residuals ``[batch, n, d_model]`` over positions ``s .. T-1``; per-head tensors
``[batch, head, n, d_head]``; patterns ``[batch, head, query, key]``.

A :class:`BaseRun` holds the unpatched runs of several pairs of one token length (leading
``pair`` dimension); each patched batch row says which pair it belongs to (``prow [B]``), so
cells of several pairs share one forward pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from patchlab.core.errors import Cancelled
from patchlab.engine.fast.weights import FastWeights, Layer

_LOCAL = threading.local()


@contextmanager
def stopping(stop: Callable[[], bool]):
    """Let :func:`checkpoint` (called between blocks) honour ``stop`` in this thread."""
    old = getattr(_LOCAL, "stop", None)
    _LOCAL.stop = stop
    try:
        yield
    finally:
        _LOCAL.stop = old


def checkpoint() -> None:
    """Raise :class:`Cancelled` when the current sweep's stop flag is set (inside a forward pass)."""
    stop = getattr(_LOCAL, "stop", None)
    if stop is not None and stop():
        raise Cancelled("Stopped.")


def rows(t: torch.Tensor, prow: torch.Tensor) -> torch.Tensor:
    """Per-pair tensor ``t [P, ...]`` read for each batch row (a broadcast view when P is 1)."""
    return t.expand(prow.shape[0], *t.shape[1:]) if t.shape[0] == 1 else t[prow]


@dataclass
class BaseRun:
    """Every intermediate of the unpatched runs of ``P`` prompts of one length."""

    pre: list[torch.Tensor]  # resid_pre per layer, [P, T, d]
    mid: list[torch.Tensor]  # resid_mid (sequential blocks; equals pre + attn)
    post: list[torch.Tensor]
    attn: list[torch.Tensor]  # attn_out, [P, T, d]
    mlp: list[torch.Tensor]
    q: list[torch.Tensor]  # before rotary, [P, H, T, dh]
    k: list[torch.Tensor]  # before rotary, [P, Hkv, T, dh]
    v: list[torch.Tensor]
    q_rot: list[torch.Tensor]
    k_rot: list[torch.Tensor]
    z: list[torch.Tensor]  # [P, T, H, dh]
    pattern: list[torch.Tensor]  # [P, H, T, T]
    cos: torch.Tensor | None  # [T, rotary_dim]
    sin: torch.Tensor | None
    last_logits: torch.Tensor | None  # [P, vocab] (None: a run stopped before the last layer)
    # Gemma 3: (cos, sin) per rotary layer type; layers with a rope_type read theirs (see tables())
    rope_tables: dict | None = None
    # Gemma: attention output before the post-attention norm (``attn`` holds the hook's value,
    # after it); the head-delta entries add changed heads' W_O terms to this one
    attn_raw: list[torch.Tensor] | None = None

    def tables(self, layer: Layer) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The rotary ``(cos, sin)`` tables ``[T, rotary_dim]`` that ``layer`` uses."""
        if layer.rope_type is not None and self.rope_tables is not None:
            return self.rope_tables[layer.rope_type]
        return self.cos, self.sin

    @property
    def n_pos(self) -> int:
        return int(self.pre[0].shape[1])

    @property
    def n_pairs(self) -> int:
        return int(self.pre[0].shape[0])

    @property
    def nbytes(self) -> int:
        lists = (self.pre, self.mid, self.post, self.attn, self.mlp, self.q, self.k, self.v, self.q_rot,
                 self.k_rot, self.z, self.pattern)
        lists += (self.attn_raw or [],)
        return sum(t.numel() * t.element_size() for lst in lists for t in lst)


def rope(x: torch.Tensor, cos: torch.Tensor | None, sin: torch.Tensor | None, rot: int) -> torch.Tensor:
    """Rotate the first ``rot`` dims of ``x [..., n, dh]`` (HF ``rotate_half`` convention)."""
    if cos is None:
        return x
    xr, xp = x[..., :rot], x[..., rot:]
    half = rot // 2
    rotated = torch.cat((-xr[..., half:], xr[..., :half]), dim=-1)
    out = xr * cos + rotated * sin
    return torch.cat((out, xp), dim=-1) if xp.shape[-1] else out


def qk_normed(layer: Layer, x: torch.Tensor, which: str) -> torch.Tensor:
    """Apply the layer's per-head query (``which="q"``) or key norm, if it has one (Qwen3)."""
    norm = layer.q_norm if which == "q" else layer.k_norm
    return x if norm is None else norm(x)


def qkv(w: FastWeights, layer: Layer, x: torch.Tensor):
    """Pre-rotary q ``[B,H,n,dh]``, k and v ``[B,Hkv,n,dh]`` from residual ``x [B,n,d]``."""
    xn = layer.ln1(x)
    q, k, v = layer.project_qkv(xn.reshape(-1, xn.shape[-1]))
    B, n = x.shape[0], x.shape[1]
    return tuple(t.view(B, n, -1, w.d_head).transpose(1, 2) for t in (q, k, v))


def attend(w: FastWeights, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, qpos: torch.Tensor,
           li: int | None = None):
    """Causal attention of layer ``li``'s queries at absolute positions ``qpos`` on keys ``0 .. Tk-1``.

    ``q [B,H,n,dh]`` (rotated), ``k, v [B or 1, Hkv, Tk, dh]``, ``qpos [n]`` or ``[B, n]``.
    Returns ``z [B,n,H,dh]`` and ``pattern [B,H,n,Tk]``.
    """
    B, H, n, dh = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    rep = H // Hkv
    # grouped-query attention without materialising repeated keys: fold the group into queries
    qg = q.reshape(B, Hkv, rep * n, dh)
    scores = torch.matmul(qg, k.transpose(-1, -2)).view(B, H, n, Tk) * w.scale
    if w.attn_softcap is not None:  # Gemma 2, before the mask as in HF
        scores = torch.tanh(scores / w.attn_softcap) * w.attn_softcap
    keys = torch.arange(Tk, device=q.device)
    qp = qpos.view(1, 1, n, 1) if qpos.dim() == 1 else qpos.view(B, 1, n, 1)
    scores = scores.masked_fill(keys.view(1, 1, 1, Tk) > qp, float("-inf"))
    # per-layer windows need ``li`` (callers without it run on models where extra_features() is None)
    window = (w.layers[li].window if li is not None else None) or w.window
    if window is not None:  # sliding window (Mistral, Gemma's local layers): the last `window` keys, self included
        scores = scores.masked_fill(keys.view(1, 1, 1, Tk) <= qp - window, float("-inf"))
    # softmax in float32 and back, as HF's attention does in half precision
    pattern = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    z = torch.matmul(pattern.view(B, Hkv, rep * n, Tk), v).view(B, H, n, dh)
    return z.transpose(1, 2), pattern


def add_attn(layer: Layer, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Residual ``x`` plus attention output ``a`` (through the post-attention norm, Gemma)."""
    return x + (a if layer.post_attn is None else layer.post_attn(a))


def attn_out(w: FastWeights, layer: Layer, z: torch.Tensor) -> torch.Tensor:
    """``z [B,n,H,dh]`` -> attention output ``[B,n,d]``."""
    B, n = z.shape[0], z.shape[1]
    out = torch.addmm(layer.b_O, z.reshape(B * n, -1), layer.W_O_flat)
    return out.view(B, n, -1)


def mlp(w: FastWeights, layer: Layer, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
    """MLP output for residual ``x [..., d]`` (applies ln2 itself), plus ``residual`` if given.

    Biases and the residual ride in ``addmm``'s input: separate adds over ``[tokens, d_mlp]``
    tensors cost about a tenth of the sweep at 64 tokens.
    """
    if w.attn_only:
        return torch.zeros_like(x) if residual is None else residual
    shape = x.shape
    xn = layer.ln2(x).reshape(-1, shape[-1])
    pre = xn @ layer.W_in if layer.b_in is None else torch.addmm(layer.b_in, xn, layer.W_in)
    if layer.W_gate is not None:
        hidden = w.act(xn @ layer.W_gate).mul_(pre)
    else:
        hidden = w.act(pre)
    if layer.ln_mlp is not None:
        hidden = layer.ln_mlp(hidden)
    if layer.post_mlp is not None:  # Gemma: the MLP output is normalised before it joins the residual
        out = hidden @ layer.W_out if layer.b_out is None else torch.addmm(layer.b_out, hidden, layer.W_out)
        out = out.view(shape)
        return out if residual is None else residual + layer.post_mlp(out)
    if residual is None:
        out = hidden @ layer.W_out if layer.b_out is None else torch.addmm(layer.b_out, hidden, layer.W_out)
    else:
        add = residual.reshape(-1, shape[-1])
        if layer.b_out is not None:
            add = add + layer.b_out
        out = torch.addmm(add, hidden, layer.W_out)
    return out.view(shape)


def unembed(w: FastWeights, x: torch.Tensor) -> torch.Tensor:
    """Logits ``[B, vocab]`` from last-position residuals ``x [B, d]``."""
    logits = torch.addmm(w.b_U, w.ln_final(x), w.W_U)
    if w.logit_softcap is not None:
        logits = torch.tanh(logits / w.logit_softcap) * w.logit_softcap
    return logits


def rotary_tables(w: FastWeights, n_pos: int, like: torch.Tensor, rope_type: str | None = None):
    if w.rotary is None:
        return None, None
    pos_ids = torch.arange(n_pos, device=like.device).unsqueeze(0)
    extra = () if rope_type is None else (rope_type,)
    cos, sin = w.rotary(like[:, :n_pos], pos_ids, *extra)
    return cos[0, :, : w.rotary_dim].to(like.dtype), sin[0, :, : w.rotary_dim].to(like.dtype)


def base_runs(w: FastWeights, tokens: torch.Tensor, upto: int | None = None) -> BaseRun:
    """Unpatched forward passes of ``tokens [P, T]`` keeping every intermediate.

    ``upto``: stop after that many layers (``last_logits`` is then None), for callers that
    only read early layers' activations.
    """
    T = int(tokens.shape[-1])
    x = w.W_E[tokens]
    if w.embed_scale is not None:  # HF casts the scale to the model's dtype first
        x = x * torch.tensor(w.embed_scale, dtype=x.dtype)
    if w.W_pos is not None:
        x = x + w.W_pos[:T]
    types = sorted({ly.rope_type for ly in w.layers if ly.rope_type is not None})
    rope_tables = {t: rotary_tables(w, T, x, t) for t in types} or None
    cos, sin = rope_tables[types[0]] if rope_tables else rotary_tables(w, T, x)
    qpos = torch.arange(T, device=x.device)
    keep: dict[str, list[torch.Tensor]] = {k: [] for k in (
        "pre", "mid", "post", "attn", "mlp", "q", "k", "v", "q_rot", "k_rot", "z", "pattern")}
    raw: list[torch.Tensor] = []
    for li, layer in enumerate(w.layers[:upto]):
        checkpoint()
        keep["pre"].append(x)
        q, k, v = qkv(w, layer, x)
        lcos, lsin = rope_tables[layer.rope_type] if layer.rope_type is not None and rope_tables else (cos, sin)
        qr = rope(qk_normed(layer, q, "q"), lcos, lsin, w.rotary_dim)
        kr = rope(qk_normed(layer, k, "k"), lcos, lsin, w.rotary_dim)
        z, pattern = attend(w, qr, kr, v, qpos, li)
        a = attn_out(w, layer, z)
        if w.parallel:
            m = mlp(w, layer, x)
            mid = x + a
            x = x + a + m
        else:
            if layer.post_attn is not None:  # the hooks see the attention and MLP outputs after their norms
                raw.append(a)
                a = layer.post_attn(a)
            mid = x + a
            m = mlp(w, layer, mid)
            if layer.post_mlp is not None:
                m = layer.post_mlp(m)
            x = mid + m
        for name, val in (("mid", mid), ("post", x), ("attn", a), ("mlp", m), ("q", q), ("k", k),
                          ("v", v), ("q_rot", qr), ("k_rot", kr), ("z", z), ("pattern", pattern)):
            keep[name].append(val)
    logits = unembed(w, x[:, -1]) if upto is None or upto >= len(w.layers) else None
    return BaseRun(**keep, cos=cos, sin=sin, last_logits=logits, rope_tables=rope_tables,
                   attn_raw=raw if raw else None)


def block(w: FastWeights, li: int, x: torch.Tensor, s: int, base: BaseRun,
          valid: torch.Tensor | None, last_only: bool, prow: torch.Tensor | None = None) -> torch.Tensor:
    """Block ``li`` on residuals ``x [B, n, d]`` at positions ``s..T-1``.

    Keys/values of positions before a row's own start come from the base run of the row's
    pair (``prow [B]``; None: every row is pair 0). ``valid [B, n]``
    marks the positions each row recomputes (None: all); position-wise work runs on those
    tokens only, packed flat, so rows with different starts share one large matmul.
    ``last_only`` returns only the last position (the final block).
    """
    checkpoint()
    layer = w.layers[li]
    B, n, d = x.shape
    H, Hkv, dh = w.n_heads, w.n_kv, w.d_head
    if prow is None:
        prow = x.new_zeros(B, dtype=torch.long)
    kb, vb = base.k_rot[li], base.v[li]  # [P, Hkv, T, dh]
    xv = x.reshape(B * n, d) if valid is None else x[valid]
    xn = layer.ln1(xv)
    if last_only:
        # only the last query matters in the final block (every row recomputes the last position)
        last = torch.arange(1, B + 1, device=x.device) * n - 1 if valid is None else valid.sum(1).cumsum(0) - 1
        qf = layer.project(xn[last], "q").view(-1, H, dh)
        kf, vf = (layer.project(xn, c).view(-1, Hkv, dh) for c in "kv")
    else:
        qf, kf, vf = (t.view(-1, h, dh) for t, h in zip(layer.project_qkv(xn), (H, Hkv, Hkv)))
    grid = torch.arange(s, s + n, device=x.device).expand(B, n)
    pos_f = grid.reshape(-1) if valid is None else grid[valid]
    cos_f = sin_f = None
    bcos, bsin = base.tables(layer)
    if bcos is not None:
        cos_f, sin_f = bcos[pos_f].unsqueeze(1), bsin[pos_f].unsqueeze(1)
    kf = rope(qk_normed(layer, kf, "k"), cos_f, sin_f, w.rotary_dim)
    qf = qk_normed(layer, qf, "q")
    if valid is None:
        k, v = kf.reshape(B, n, Hkv, dh), vf.reshape(B, n, Hkv, dh)
    else:
        # positions a row does not recompute keep its pair's base keys and values
        k = kb[:, :, s:].transpose(1, 2)[prow]  # (indexing copies)
        v = vb[:, :, s:].transpose(1, 2)[prow]
        k[valid], v[valid] = kf, vf
    k, v = k.transpose(1, 2), v.transpose(1, 2)
    if s:
        k = torch.cat([rows(kb[:, :, :s], prow), k], dim=2)
        v = torch.cat([rows(vb[:, :, :s], prow), v], dim=2)
    if last_only:
        q = rope(qf, cos_f[last] if cos_f is not None else None,
                 sin_f[last] if sin_f is not None else None, w.rotary_dim).unsqueeze(2)
        z, _ = attend(w, q, k, v, grid[0, -1:], li)
        xl = x[:, -1]
        a = torch.addmm(layer.b_O, z.reshape(B, -1), layer.W_O_flat)
        if w.parallel:
            return mlp(w, layer, xl, xl + a).unsqueeze(1)
        mid = add_attn(layer, xl, a)
        return mlp(w, layer, mid, mid).unsqueeze(1)
    qf = rope(qf, cos_f, sin_f, w.rotary_dim)
    if valid is None:
        q = qf.reshape(B, n, H, dh)
    else:
        q = x.new_zeros(B, n, H, dh)
        q[valid] = qf
    z, _ = attend(w, q.transpose(1, 2), k, v, grid[0], li)
    zv = z.reshape(B * n, H * dh) if valid is None else z[valid].reshape(-1, H * dh)
    a = torch.addmm(layer.b_O, zv, layer.W_O_flat)
    if w.parallel:
        new = mlp(w, layer, xv, xv + a)
    else:
        mid = add_attn(layer, xv, a)
        new = mlp(w, layer, mid, mid)
    if valid is None:
        return new.view(B, n, d)
    x[valid] = new
    return x


def run_from(w: FastWeights, li: int, stage: str, x: torch.Tensor, s: int, base: BaseRun,
             starts: torch.Tensor | None = None, prow: torch.Tensor | None = None) -> torch.Tensor:
    """Finish the forward pass from residual ``x`` at ``stage`` (pre/mid/post) of layer ``li``.

    ``starts [B]`` gives each row's earliest changed position (None: ``s`` for all rows);
    ``prow [B]`` each row's pair in ``base`` (None: pair 0).
    Returns last-position logits ``[B, vocab]``.
    """
    L = len(w.layers)
    n = x.shape[1]
    valid = None
    if starts is not None and bool((starts > s).any()):
        valid = torch.arange(s, s + n, device=x.device).unsqueeze(0) >= starts.unsqueeze(1)
    if stage == "mid":  # sequential blocks only: the MLP of layer li is still to run
        if li == L - 1:
            x, valid = x[:, -1:], None
        if valid is None:
            x = mlp(w, w.layers[li], x, x)
        else:
            xv = x[valid]
            x[valid] = mlp(w, w.layers[li], xv, xv)
        li += 1
    elif stage == "post":
        li += 1
    for j in range(li, L):
        x = block(w, j, x, s, base, valid, last_only=j == L - 1, prow=prow)
    return unembed(w, x[:, -1])


def run_wave(w: FastWeights, base: BaseRun, entries: list[tuple[int, str, torch.Tensor]]) -> torch.Tensor:
    """Finish all-position rows that enter at different layers in one pass over the layers.

    A row entering at layer ``j`` joins the rows already under way there: each block runs
    once on every active row, which gives larger matrix products than one pass per patched
    layer (fewer thread barriers).

    Parameters
    ----------
    w : FastWeights
        The model's weights.
    base : BaseRun
        The unpatched run (only its rotary tables are read: every row covers all positions,
        so no base keys or values are needed).
    entries : list of (int, str, Tensor)
        ``(layer, stage, x [B, T, d])`` sorted by layer; ``stage`` is ``"mid"`` (that layer's
        MLP still to run) or ``"post"``.

    Returns
    -------
    Tensor
        Last-position logits ``[sum of B, vocab]`` in the entries' row order.
    """
    L = len(w.layers)
    x: torch.Tensor | None = None
    i = 0
    for j in range(entries[0][0], L):
        last = j == L - 1
        if x is not None:
            x = block(w, j, x, 0, base, None, last_only=last)
        while i < len(entries) and entries[i][0] == j:
            _, stage, xe = entries[i]
            i += 1
            if last:  # the final block only feeds the last position
                xe = xe[:, -1:]
            if stage == "mid":  # sequential blocks: this layer's MLP is still to run
                xe = mlp(w, w.layers[j], xe, xe)
            x = xe if x is None else torch.cat([x, xe])
    assert x is not None and i == len(entries)
    return unembed(w, x[:, -1])
