"""Patching targets: names, axes and labels (pure data, shared by engine, CLI and GUI).

Names and axis orders follow TransformerLens's ``get_act_patch_*`` functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from patchlab.core.errors import InputError


@dataclass(frozen=True)
class Target:
    """One kind of activation to patch.

    Attributes
    ----------
    name : str
        Public name (``resid_pre``, ``attn_head_out_by_pos``...).
    act : str
        TransformerLens activation short name (``resid_pre``, ``z``, ``q``, ``pattern``...).
    axes : tuple of str
        Axis names of the result, in TransformerLens order.
    label : str
        Plain-language label for menus.
    group : str
        Menu group: residual stream / layer outputs / heads / head internals.
    """

    name: str
    act: str
    axes: tuple[str, ...]
    label: str
    group: str

    @property
    def is_head(self) -> bool:
        return "head" in self.axes

    @property
    def uses_kv_heads(self) -> bool:
        """Keys and values are indexed by key/value head under grouped-query attention."""
        return self.act in ("k", "v")


_T = Target
TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        _T("resid_pre", "resid_pre", ("layer", "pos"), "Residual stream before each layer", "Residual stream"),
        _T("resid_mid", "resid_mid", ("layer", "pos"), "Residual stream between attention and MLP", "Residual stream"),
        _T("resid_post", "resid_post", ("layer", "pos"), "Residual stream after each layer", "Residual stream"),
        _T("attn_out", "attn_out", ("layer", "pos"), "Attention layer output", "Layer outputs"),
        _T("mlp_out", "mlp_out", ("layer", "pos"), "MLP layer output", "Layer outputs"),
        _T("attn_head_out_all_pos", "z", ("layer", "head"), "Head output (all positions)", "Heads"),
        _T("attn_head_out_by_pos", "z", ("layer", "pos", "head"), "Head output (per position)", "Heads"),
        _T("attn_head_q_all_pos", "q", ("layer", "head"), "Head queries (all positions)", "Head internals"),
        _T("attn_head_k_all_pos", "k", ("layer", "head"), "Head keys (all positions)", "Head internals"),
        _T("attn_head_v_all_pos", "v", ("layer", "head"), "Head values (all positions)", "Head internals"),
        _T("attn_head_pattern_all_pos", "pattern", ("layer", "head"), "Head attention pattern (all positions)", "Head internals"),
        _T("attn_head_q_by_pos", "q", ("layer", "pos", "head"), "Head queries (per position)", "Head internals"),
        _T("attn_head_k_by_pos", "k", ("layer", "pos", "head"), "Head keys (per position)", "Head internals"),
        _T("attn_head_v_by_pos", "v", ("layer", "pos", "head"), "Head values (per position)", "Head internals"),
        _T("attn_head_pattern_by_pos", "pattern", ("layer", "head", "pos"), "Head attention pattern (per destination position)", "Head internals"),
        # the input of the MLP's down projection (act(gate) * up for gated MLPs): hook_post
        _T("mlp_post_neuron", "post", ("layer", "neuron"), "MLP neurons (all positions)", "Neurons"),
        _T("mlp_post_neuron_by_pos", "post", ("layer", "pos", "neuron"), "MLP neurons (per position)", "Neurons"),
    )
}

GROUPS = ("Residual stream", "Layer outputs", "Heads", "Head internals", "Neurons")


def get_target(name: str) -> Target:
    """Look up a target by name with a helpful error."""
    try:
        return TARGETS[name]
    except KeyError:
        raise InputError(
            f"Unknown target {name!r}. Choose one of: {', '.join(TARGETS)}."
        ) from None
