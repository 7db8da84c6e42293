"""Patched batches: enter the forward pass at the patched component, then finish it.

Each function takes ``cells [B, k]`` (the non-layer indices of one cell per batch row, in the
target's axis order), the base run, and the source activation at this layer (batch dim
dropped, in the bridge's hook layout), and returns last-position logits ``[B, vocab]``.
Only positions at or after the earliest patched position are recomputed.
"""

from __future__ import annotations

import torch

from patchlab.engine.fast.forward import BaseRun, attend, attn_out, mlp, qk_normed, rope, run_from
from patchlab.engine.fast.weights import FastWeights


def _rows(cells: torch.Tensor) -> torch.Tensor:
    return torch.arange(cells.shape[0], device=cells.device)


def _grid(t: torch.Tensor, s: int, B: int) -> torch.Tensor:
    """Base tensor ``[T, d]`` from position ``s`` copied for ``B`` rows."""
    return t[s:].unsqueeze(0).expand(B, -1, -1).clone()


def _finish_sparse_attn(w: FastWeights, li: int, base: BaseRun, pos: torch.Tensor, a: torch.Tensor):
    """New attention output ``a [B, d]`` at one position per row; the rest is the base run."""
    s = int(pos.min())
    B = pos.shape[0]
    pre = base.pre[li][pos]
    if w.parallel:
        post_vals = pre + a + base.mlp[li][pos]
    else:
        mid = pre + a
        # the MLP is position-wise: in this layer only the patched position changes
        post_vals = mlp(w, w.layers[li], mid, mid)
    x = _grid(base.post[li], s, B)
    x[torch.arange(B, device=pos.device), pos - s] = post_vals
    return run_from(w, li, "post", x, s, base, pos)


def _finish_dense_attn(w: FastWeights, li: int, base: BaseRun, a: torch.Tensor, s: int, starts=None,
                       entry: bool = False):
    """New attention output ``a [B, n, d]`` at positions ``s..T-1``.

    ``entry`` returns the state ``(stage, residual)`` instead of logits, for
    :func:`~patchlab.engine.fast.forward.run_wave` to finish together with other layers' rows.
    """
    pre = base.pre[li][s:]
    stage, x = ("post", pre + a + base.mlp[li][s:]) if w.parallel else ("mid", pre + a)
    return (stage, x) if entry else run_from(w, li, stage, x, s, base, starts)


def _delta_attn(w: FastWeights, li: int, base: BaseRun, heads: torch.Tensor, z_new: torch.Tensor) -> torch.Tensor:
    """Attention output ``[B, T, d]`` when only ``heads [B, r]`` changed, to ``z_new [B, T, r, dh]``.

    The other heads' contributions are the base run's: base output plus the changed heads'
    difference through their slice of W_O (r/H of the full output projection's work).
    """
    B, T, r, dh = z_new.shape
    dz = z_new - base.z[li][:, heads].transpose(0, 1)  # [B, T, r, dh]
    W = w.layers[li].W_O[heads].reshape(B, r * dh, -1)
    return torch.baddbmm(base.attn[li].unsqueeze(0), dz.reshape(B, T, r * dh), W)


def _rot_at(w: FastWeights, base: BaseRun, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Rotate vectors ``x [B, ..., dh]`` each at its own position ``pos [B]``."""
    if base.cos is None:
        return x
    shape = (pos.shape[0],) + (1,) * (x.dim() - 2) + (-1,)
    return rope(x, base.cos[pos].view(shape), base.sin[pos].view(shape), w.rotary_dim)


def resid(w, li, base, src, cells, act):
    pos = cells[:, 0]
    s = int(pos.min())
    B = pos.shape[0]
    rows = _rows(cells)
    if act == "resid_mid":
        mid = src[pos]
        post_vals = mlp(w, w.layers[li], mid, mid)
        x = _grid(base.post[li], s, B)
        x[rows, pos - s] = post_vals
        return run_from(w, li, "post", x, s, base, pos)
    if act == "mlp_out":
        before = base.pre[li][pos] + base.attn[li][pos] if w.parallel else base.mid[li][pos]
        x = _grid(base.post[li], s, B)
        x[rows, pos - s] = before + src[pos]
        return run_from(w, li, "post", x, s, base, pos)
    if act == "attn_out":
        return _finish_sparse_attn(w, li, base, pos, src[pos])
    stage = {"resid_pre": "pre", "resid_post": "post"}[act]
    x = _grid(base.pre[li] if stage == "pre" else base.post[li], s, B)
    x[rows, pos - s] = src[pos]
    return run_from(w, li, stage, x, s, base, pos)


def head_z(w, li, base, src, cells):
    """By-position cells (all-position ones go through :func:`dense_entry`)."""
    rows = _rows(cells)
    layer = w.layers[li]
    pos, h = cells[:, 0], cells[:, 1]
    z = base.z[li][pos].clone()  # [B, H, dh]
    z[rows, h] = src[pos, h]
    return _finish_sparse_attn(w, li, base, pos, attn_out(w, layer, z.unsqueeze(1))[:, 0])


def head_q(w, li, base, src, cells):
    """By-position cells (all-position ones go through :func:`dense_entry`)."""
    rows = _rows(cells)
    layer = w.layers[li]
    k, v = base.k_rot[li].unsqueeze(0), base.v[li].unsqueeze(0)
    pos, h = cells[:, 0], cells[:, 1]
    q = base.q[li][:, pos].transpose(0, 1).clone()  # [B, H, dh]
    q[rows, h] = src[pos, h]
    qr = _rot_at(w, base, qk_normed(layer, q, "q"), pos).unsqueeze(2)  # [B, H, 1, dh]
    z, _ = attend(w, qr, k, v, pos.view(-1, 1))
    return _finish_sparse_attn(w, li, base, pos, attn_out(w, layer, z)[:, 0])


def head_kv(w, li, base, src, cells, which):
    """By-position k/v cells (all-position ones go through :func:`dense_entry`)."""
    rows = _rows(cells)
    layer = w.layers[li]
    T = base.n_pos
    B = cells.shape[0]
    k = base.k_rot[li].unsqueeze(0).expand(B, -1, -1, -1)
    v = base.v[li].unsqueeze(0).expand(B, -1, -1, -1)
    pos, g = cells[:, 0], cells[:, 1]
    s = int(pos.min())
    new = src[pos, g]  # [B, dh]
    if which == "k":
        k = k.clone()
        k[rows, g, pos] = _rot_at(w, base, qk_normed(layer, new, "k"), pos)
    else:
        v = v.clone()
        v[rows, g, pos] = new
    q = base.q_rot[li][:, s:].unsqueeze(0).expand(B, -1, -1, -1)
    z, _ = attend(w, q, k, v, torch.arange(s, T, device=q.device))
    return _finish_dense_attn(w, li, base, attn_out(w, layer, z), s, pos)


def head_pattern(w, li, base, src, cells):
    """By-position cells (all-position ones go through :func:`dense_entry`)."""
    rows = _rows(cells)
    layer = w.layers[li]
    rep = w.n_heads // w.n_kv
    h = cells[:, 0]
    vh = base.v[li][h // rep]  # [B, T, dh]
    dest = cells[:, 1]
    zh = torch.bmm(src[h, dest].unsqueeze(1), vh)[:, 0]  # [B, dh]
    z = base.z[li][dest].clone()
    z[rows, h] = zh
    return _finish_sparse_attn(w, li, base, dest, attn_out(w, layer, z.unsqueeze(1))[:, 0])


def changed_heads(w: FastWeights, li: int, base: BaseRun, src: torch.Tensor, cells: torch.Tensor, act: str):
    """All-position head cells: the query heads ``[B, r]`` whose output changes, and their new z.

    Only the patched head's attention (for k/v: the query heads sharing that key/value head)
    is recomputed; every other head of the layer keeps the base run's output.
    Returns ``(heads [B, r], z [B, T, r, dh])``.
    """
    rep = w.n_heads // w.n_kv
    c = cells[:, 0]
    qpos = torch.arange(base.n_pos, device=c.device)
    if act == "z":
        return c.unsqueeze(1), src[:, c].transpose(0, 1).unsqueeze(2)
    if act == "pattern":  # src [H, dest, src]
        return c.unsqueeze(1), torch.bmm(src[c], base.v[li][c // rep]).unsqueeze(2)
    if act == "q":
        q_new = qk_normed(w.layers[li], src[:, c].transpose(0, 1).unsqueeze(1), "q")
        qr = rope(q_new, base.cos, base.sin, w.rotary_dim)  # [B, 1, T, dh]
        kv = c // rep
        z, _ = attend(w, qr, base.k_rot[li][kv].unsqueeze(1), base.v[li][kv].unsqueeze(1), qpos)
        return c.unsqueeze(1), z
    new = src[:, c].transpose(0, 1)  # key/value head c's new k or v, [B, T, dh]
    if act == "k":
        k, v = rope(qk_normed(w.layers[li], new, "k"), base.cos, base.sin, w.rotary_dim), base.v[li][c]
    else:
        k, v = base.k_rot[li][c], new
    heads = c.unsqueeze(1) * rep + torch.arange(rep, device=c.device)  # [B, rep]
    z, _ = attend(w, base.q_rot[li][heads], k.unsqueeze(1), v.unsqueeze(1), qpos)
    return heads, z


def dense_entry(w: FastWeights, li: int, base: BaseRun, src: torch.Tensor, cells: torch.Tensor, act: str):
    """All-position head cells at layer ``li``: ``(stage, residual [B, T, d])`` to continue from."""
    a = _delta_attn(w, li, base, *changed_heads(w, li, base, src, cells, act))
    return _finish_dense_attn(w, li, base, a, 0, entry=True)


def run_cells(w: FastWeights, li: int, base: BaseRun, src: torch.Tensor, cells: torch.Tensor,
              act: str, axes: tuple[str, ...]) -> torch.Tensor:
    """Logits ``[B, vocab]`` of the base run with one cell patched per row."""
    by_pos = "pos" in axes
    if act in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"):
        return resid(w, li, base, src, cells, act)
    if not by_pos:
        stage, x = dense_entry(w, li, base, src, cells, act)
        return run_from(w, li, stage, x, 0, base)
    if act == "z":
        return head_z(w, li, base, src, cells)
    if act == "q":
        return head_q(w, li, base, src, cells)
    if act in ("k", "v") and by_pos:
        return head_kv(w, li, base, src, cells, act)
    if act == "pattern":
        return head_pattern(w, li, base, src, cells)
    raise ValueError(f"unsupported activation {act}")


def cell_start(cells: torch.Tensor, act: str, axes: tuple[str, ...]) -> torch.Tensor:
    """Earliest position each cell's patch can change (0 for all-position targets)."""
    if "pos" not in axes:
        return torch.zeros(cells.shape[0], dtype=torch.long)
    return cells[:, axes[1:].index("pos")]
