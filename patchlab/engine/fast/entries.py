"""Patched batches: enter the forward pass at the patched component, then finish it.

Each function takes ``cells [B, k]`` (the non-layer indices of one cell per batch row, in the
target's axis order), ``prow [B]`` (each row's pair in the base run), the base run of those
pairs, and the source activation at this layer (``[P, ...]``, the bridge's hook layout per
pair), and returns last-position logits ``[B, vocab]``. Only positions at or after the
earliest patched position are recomputed.
"""

from __future__ import annotations

import torch

from patchlab.engine.fast.forward import (
    BaseRun,
    add_attn,
    attend,
    attn_out,
    mlp,
    qk_normed,
    rope,
    rows,
    run_from,
)
from patchlab.engine.fast.weights import FastWeights


def _rows(cells: torch.Tensor) -> torch.Tensor:
    return torch.arange(cells.shape[0], device=cells.device)


def _grid(t: torch.Tensor, s: int, prow: torch.Tensor) -> torch.Tensor:
    """Base tensor ``[P, T, d]`` from position ``s``, copied for each row's pair."""
    return t[:, s:][prow]


def _finish_sparse_attn(w: FastWeights, li: int, base: BaseRun, prow, pos: torch.Tensor, a: torch.Tensor,
                        normed: bool = False):
    """New attention output ``a [B, d]`` at one position per row; the rest is the base run.

    ``a`` is the output projection's (before a post-attention norm), or with ``normed`` the
    ``attn_out`` hook's value (after it).
    """
    s = int(pos.min())
    B = pos.shape[0]
    pre = base.pre[li][prow, pos]
    if w.parallel:
        post_vals = pre + a + base.mlp[li][prow, pos]
    else:
        mid = pre + a if normed else add_attn(w.layers[li], pre, a)
        # the MLP is position-wise: in this layer only the patched position changes
        post_vals = mlp(w, w.layers[li], mid, mid)
    x = _grid(base.post[li], s, prow)
    x[torch.arange(B, device=pos.device), pos - s] = post_vals
    return run_from(w, li, "post", x, s, base, pos, prow)


def _finish_dense_attn(w: FastWeights, li: int, base: BaseRun, prow, a: torch.Tensor, s: int, starts=None,
                       entry: bool = False):
    """New attention output ``a [B, n, d]`` at positions ``s..T-1``.

    ``entry`` returns the state ``(stage, residual)`` instead of logits, for
    :func:`~patchlab.engine.fast.forward.run_wave` to finish together with other layers' rows.
    """
    pre = rows(base.pre[li][:, s:], prow)
    stage, x = ("post", pre + a + rows(base.mlp[li][:, s:], prow)) if w.parallel else ("mid", add_attn(w.layers[li], pre, a))
    return (stage, x) if entry else run_from(w, li, stage, x, s, base, starts, prow)


def _delta_attn(w: FastWeights, li: int, base: BaseRun, prow, heads: torch.Tensor, z_new: torch.Tensor) -> torch.Tensor:
    """Attention output ``[B, T, d]`` when only ``heads [B, r]`` changed, to ``z_new [B, T, r, dh]``.

    The other heads' contributions are the base run's: base output plus the changed heads'
    difference through their slice of W_O (r/H of the full output projection's work).
    """
    B, T, r, dh = z_new.shape
    dz = z_new - base.z[li][prow.unsqueeze(1), :, heads].transpose(1, 2)  # [B, T, r, dh]
    W = w.layers[li].W_O[heads].reshape(B, r * dh, -1)
    attn = base.attn if base.attn_raw is None else base.attn_raw  # before a post-attention norm
    return torch.baddbmm(rows(attn[li], prow), dz.reshape(B, T, r * dh), W)


def _rot_at(w: FastWeights, base: BaseRun, x: torch.Tensor, pos: torch.Tensor, li: int) -> torch.Tensor:
    """Rotate layer ``li``'s vectors ``x [B, ..., dh]`` each at its own position ``pos [B]``."""
    cos, sin = base.tables(w.layers[li])
    if cos is None:
        return x
    shape = (pos.shape[0],) + (1,) * (x.dim() - 2) + (-1,)
    return rope(x, cos[pos].view(shape), sin[pos].view(shape), w.rotary_dim)


def resid(w, li, base, prow, src, cells, act):
    pos = cells[:, 0]
    s = int(pos.min())
    r = _rows(cells)
    if act == "resid_mid":
        mid = src[prow, pos]
        post_vals = mlp(w, w.layers[li], mid, mid)
        x = _grid(base.post[li], s, prow)
        x[r, pos - s] = post_vals
        return run_from(w, li, "post", x, s, base, pos, prow)
    if act == "mlp_out":
        before = base.pre[li][prow, pos] + base.attn[li][prow, pos] if w.parallel else base.mid[li][prow, pos]
        x = _grid(base.post[li], s, prow)
        x[r, pos - s] = before + src[prow, pos]  # the hook's value is after any post-MLP norm
        return run_from(w, li, "post", x, s, base, pos, prow)
    if act == "attn_out":
        return _finish_sparse_attn(w, li, base, prow, pos, src[prow, pos], normed=True)
    stage = {"resid_pre": "pre", "resid_post": "post"}[act]
    x = _grid(base.pre[li] if stage == "pre" else base.post[li], s, prow)
    x[r, pos - s] = src[prow, pos]
    return run_from(w, li, stage, x, s, base, pos, prow)


def head_z(w, li, base, prow, src, cells):
    """By-position cells (all-position ones go through :func:`dense_entry`)."""
    r = _rows(cells)
    pos, h = cells[:, 0], cells[:, 1]
    z = base.z[li][prow, pos]  # [B, H, dh] (indexing copies)
    z[r, h] = src[prow, pos, h]
    return _finish_sparse_attn(w, li, base, prow, pos, attn_out(w, w.layers[li], z.unsqueeze(1))[:, 0])


def head_q(w, li, base, prow, src, cells):
    """By-position cells (all-position ones go through :func:`dense_entry`)."""
    r = _rows(cells)
    k, v = rows(base.k_rot[li], prow), rows(base.v[li], prow)
    pos, h = cells[:, 0], cells[:, 1]
    q = base.q[li][prow, :, pos]  # [B, H, dh]
    q[r, h] = src[prow, pos, h]
    qr = _rot_at(w, base, qk_normed(w.layers[li], q, "q"), pos, li).unsqueeze(2)  # [B, H, 1, dh]
    z, _ = attend(w, qr, k, v, pos.view(-1, 1), li)
    return _finish_sparse_attn(w, li, base, prow, pos, attn_out(w, w.layers[li], z)[:, 0])


def head_kv(w, li, base, prow, src, cells, which):
    """By-position k/v cells (all-position ones go through :func:`dense_entry`)."""
    r = _rows(cells)
    T = base.n_pos
    pos, g = cells[:, 0], cells[:, 1]
    s = int(pos.min())
    k, v = rows(base.k_rot[li], prow), rows(base.v[li], prow)
    new = src[prow, pos, g]  # [B, dh]
    if which == "k":
        k = k.clone()
        k[r, g, pos] = _rot_at(w, base, qk_normed(w.layers[li], new, "k"), pos, li)
    else:
        v = v.clone()
        v[r, g, pos] = new
    q = rows(base.q_rot[li][:, :, s:], prow)
    z, _ = attend(w, q, k, v, torch.arange(s, T, device=q.device), li)
    return _finish_dense_attn(w, li, base, prow, attn_out(w, w.layers[li], z), s, pos)


def head_pattern(w, li, base, prow, src, cells):
    """By-position cells (all-position ones go through :func:`dense_entry`)."""
    r = _rows(cells)
    rep = w.n_heads // w.n_kv
    h, dest = cells[:, 0], cells[:, 1]
    vh = base.v[li][prow, h // rep]  # [B, T, dh]
    zh = torch.bmm(src[prow, h, dest].unsqueeze(1), vh)[:, 0]  # [B, dh]
    z = base.z[li][prow, dest]
    z[r, h] = zh
    return _finish_sparse_attn(w, li, base, prow, dest, attn_out(w, w.layers[li], z.unsqueeze(1))[:, 0])


def changed_heads(w: FastWeights, li: int, base: BaseRun, prow, src: torch.Tensor, cells: torch.Tensor, act: str):
    """All-position head cells: the query heads ``[B, r]`` whose output changes, and their new z.

    Only the patched head's attention (for k/v: the query heads sharing that key/value head)
    is recomputed; every other head of the layer keeps the base run's output.
    Returns ``(heads [B, r], z [B, T, r, dh])``.
    """
    rep = w.n_heads // w.n_kv
    c = cells[:, 0]
    qpos = torch.arange(base.n_pos, device=c.device)
    if act == "z":
        return c.unsqueeze(1), src[prow, :, c].unsqueeze(2)
    if act == "pattern":  # src [P, H, dest, src]
        return c.unsqueeze(1), torch.bmm(src[prow, c], base.v[li][prow, c // rep]).unsqueeze(2)
    if act == "q":
        qr = rope(qk_normed(w.layers[li], src[prow, :, c].unsqueeze(1), "q"), *base.tables(w.layers[li]), w.rotary_dim)  # [B, 1, T, dh]
        kv = c // rep
        z, _ = attend(w, qr, base.k_rot[li][prow, kv].unsqueeze(1), base.v[li][prow, kv].unsqueeze(1), qpos, li)
        return c.unsqueeze(1), z
    new = src[prow, :, c]  # key/value head c's new k or v, [B, T, dh]
    if act == "k":
        k, v = rope(qk_normed(w.layers[li], new, "k"), *base.tables(w.layers[li]), w.rotary_dim), base.v[li][prow, c]
    else:
        k, v = base.k_rot[li][prow, c], new
    heads = c.unsqueeze(1) * rep + torch.arange(rep, device=c.device)  # [B, rep]
    z, _ = attend(w, base.q_rot[li][prow.unsqueeze(1), heads], k.unsqueeze(1), v.unsqueeze(1), qpos, li)
    return heads, z


def dense_entry(w: FastWeights, li: int, base: BaseRun, prow, src: torch.Tensor, cells: torch.Tensor, act: str):
    """All-position head cells at layer ``li``: ``(stage, residual [B, T, d])`` to continue from."""
    a = _delta_attn(w, li, base, prow, *changed_heads(w, li, base, prow, src, cells, act))
    return _finish_dense_attn(w, li, base, prow, a, 0, entry=True)


def run_cells(w: FastWeights, li: int, base: BaseRun, prow: torch.Tensor, src: torch.Tensor, cells: torch.Tensor,
              act: str, axes: tuple[str, ...]) -> torch.Tensor:
    """Logits ``[B, vocab]`` of the base runs with one cell patched per row (row ``i`` of pair ``prow[i]``)."""
    by_pos = "pos" in axes
    if act in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"):
        return resid(w, li, base, prow, src, cells, act)
    if not by_pos:
        stage, x = dense_entry(w, li, base, prow, src, cells, act)
        return run_from(w, li, stage, x, 0, base, prow=prow)
    if act == "z":
        return head_z(w, li, base, prow, src, cells)
    if act == "q":
        return head_q(w, li, base, prow, src, cells)
    if act in ("k", "v"):
        return head_kv(w, li, base, prow, src, cells, act)
    if act == "pattern":
        return head_pattern(w, li, base, prow, src, cells)
    raise ValueError(f"unsupported activation {act}")


def cell_start(cells: torch.Tensor, act: str, axes: tuple[str, ...]) -> torch.Tensor:
    """Earliest position each cell's patch can change (0 for all-position targets)."""
    if "pos" not in axes:
        return torch.zeros(cells.shape[0], dtype=torch.long)
    return cells[:, axes[1:].index("pos")]
