"""Grouped-query attention: key/value heads and the query heads each one serves (issue 13)."""

from __future__ import annotations


def query_heads(kv_head: int, n_heads: int, n_kv: int) -> list[int]:
    """Query heads that read key/value head ``kv_head`` (HF ``repeat_kv``: contiguous groups)."""
    rep = n_heads // n_kv
    return list(range(kv_head * rep, (kv_head + 1) * rep))


def kv_labels(n_heads: int, n_kv: int) -> list[str]:
    """Labels ``KV1 (H2-H3)`` for the key/value heads of a grouped-query attention layer."""
    out = []
    for g in range(n_kv):
        qs = query_heads(g, n_heads, n_kv)
        span = f"H{qs[0]}" if len(qs) == 1 else f"H{qs[0]}-H{qs[-1]}"
        out.append(f"KV{g} ({span})")
    return out


def kv_meta(n_heads: int, n_kv: int) -> dict[str, object]:
    """Run-record entry: which query heads each key/value head serves."""
    return {
        "head_kind": "kv",
        "n_heads": n_heads,
        "n_key_value_heads": n_kv,
        "kv_groups": {f"KV{g}": query_heads(g, n_heads, n_kv) for g in range(n_kv)},
    }
