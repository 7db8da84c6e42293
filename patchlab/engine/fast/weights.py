"""Weights of a TransformerBridge as plain tensors, for the fast exact path.

Reads the bridge's TransformerLens-style stacked accessors (``W_Q`` ...), which reflect
compatibility-mode folding, and the norm modules' own weights (ones/zeros once folded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

# in place: the MLP hands its own fresh pre-activation tensor, and a second [tokens, d_mlp]
# allocation per layer costs page faults on large batches
_ACTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": lambda x: torch.ops.aten.gelu_(x),
    "gelu_new": lambda x: torch.ops.aten.gelu_(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: torch.ops.aten.gelu_(x, approximate="tanh"),
    "gelu_fast": lambda x: torch.ops.aten.gelu_(x, approximate="tanh"),
    "relu": torch.relu_,
    "silu": lambda x: F.silu(x, inplace=True),
    "swish": lambda x: F.silu(x, inplace=True),
    # SoLU (x * softmax(x)); "solu_ln" adds the MLP's own LayerNorm after it (Layer.ln_mlp)
    "solu": lambda x: x * torch.softmax(x, dim=-1),
    "solu_ln": lambda x: x * torch.softmax(x, dim=-1),
}

# config flags whose forward pass this path does not implement
_UNSUPPORTED_FLAGS = (
    "use_local_attn", "use_qk_norm", "post_embedding_ln", "use_normalization_before_and_after",
    "scale_attn_by_inverse_layer_idx", "num_experts", "use_attn_in", "use_split_qkv_input",
    "is_audio_model", "is_visual_model", "is_multimodal", "is_stateful", "rotary_adjacent_pairs",
    "load_in_4bit", "per_layer_head_dim", "per_layer_num_key_value_heads", "scale_embedding",
)


@dataclass
class Norm:
    """LayerNorm (``bias`` set) or RMSNorm (``bias`` None) with an optional weight."""

    weight: torch.Tensor | None
    bias: torch.Tensor | None
    eps: float
    rms: bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.rms:
            # HF RMSNorm normalises in float32, then scales
            y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
            return y if self.weight is None else y * self.weight
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


@dataclass
class Layer:
    ln1: Norm
    ln2: Norm | None
    W_Q: torch.Tensor  # [H, d, dh]
    W_K: torch.Tensor  # [Hkv, d, dh]
    W_V: torch.Tensor
    b_Q: torch.Tensor  # [H, dh]
    b_K: torch.Tensor
    b_V: torch.Tensor
    W_O: torch.Tensor  # [H, dh, d]
    b_O: torch.Tensor  # [d]
    W_in: torch.Tensor | None  # [d, d_mlp]
    b_in: torch.Tensor | None
    W_gate: torch.Tensor | None
    W_out: torch.Tensor | None  # [d_mlp, d]
    b_out: torch.Tensor | None
    # fused projections: one matmul for q, k and v of every head
    W_qkv: torch.Tensor | None = None  # [d, (H + 2 Hkv) dh]
    b_qkv: torch.Tensor | None = None
    W_O_flat: torch.Tensor | None = None  # [H dh, d]
    ln_mlp: Norm | None = None  # SoLU-LN: LayerNorm over d_mlp between activation and W_out
    # Qwen3: RMSNorm of each head's query and key (over d_head), after the projection, before rotary
    q_norm: Norm | None = None
    k_norm: Norm | None = None


@dataclass
class FastWeights:
    layers: list[Layer]
    ln_final: Norm
    W_E: torch.Tensor
    W_pos: torch.Tensor | None
    W_U: torch.Tensor
    b_U: torch.Tensor
    n_heads: int
    n_kv: int
    d_head: int
    scale: float
    act: Callable[[torch.Tensor], torch.Tensor]
    parallel: bool
    attn_only: bool
    rotary: Any  # HF rotary module (called with (x, position_ids)) or None
    rotary_dim: int
    window: int | None = None  # sliding-window attention: keys within this many positions


class Unsupported(Exception):
    """The fast path does not implement this model; the message says why."""


def hf_features(model: Any) -> int | None:
    """Check Hugging Face architecture features the bridge's config does not flag (issue 13).

    Returns the sliding-window length when every layer uses the same window (Mistral), which
    :func:`~patchlab.engine.fast.forward.attend` implements, else ``None``; raises
    :class:`Unsupported` for features this path does not implement.
    """
    devices = {str(p.device) for p in model.parameters()}
    if len(devices) > 1:
        # each block would need its inputs moved between devices; the hook path does that
        raise Unsupported(f"the model is split over several devices ({', '.join(sorted(devices))})")
    hf = getattr(getattr(model, "original_model", None), "config", None)
    blk = model.blocks[0]
    if hasattr(blk, "ln1_post") or hasattr(blk, "ln2_post"):
        raise Unsupported("norms after attention and MLP (Gemma 2/3, OLMo 2 style)")
    if not hasattr(blk, "ln2") and not getattr(model.cfg, "attn_only", False):
        raise Unsupported("attention and MLP share one LayerNorm (GPT-J style)")
    if hf is None:
        return None
    window = getattr(hf, "sliding_window", None)
    types = getattr(hf, "layer_types", None) or []
    if any("sliding" not in t and "full" not in t for t in types):
        raise Unsupported(f"attention layer types {sorted(set(types))}")
    if not window or (getattr(hf, "use_sliding_window", True) is False):
        return None
    if types and len(set(types)) > 1:
        raise Unsupported("layers alternate between sliding-window and full attention")
    if types and types[0] == "full_attention":
        return None
    return int(window)


def _get(model: Any, name: str) -> torch.Tensor | None:
    try:
        value = getattr(model, name)
    except (AttributeError, RuntimeError):
        return None
    return None if value is None else value.detach()


def _norm(module: Any, rms: bool) -> Norm:
    inner = getattr(module, "_original_component", module)
    weight = getattr(inner, "weight", None)
    bias = getattr(inner, "bias", None)
    eps = getattr(inner, "eps", None) or getattr(inner, "variance_epsilon", None)
    if eps is None:
        raise Unsupported(f"cannot read the epsilon of norm {type(inner).__name__}")
    if getattr(module, "config", None) is not None and getattr(module.config, "rmsnorm_uses_offset", False):
        raise Unsupported("RMSNorm with a (1 + weight) offset")
    return Norm(
        None if weight is None else weight.detach(),
        None if (bias is None or rms) else bias.detach(),
        float(eps[0] if isinstance(eps, tuple) else eps),
        rms,
    )


def _mlp_norm(mlp: Any) -> Norm:
    """The LayerNorm inside a SoLU-LN MLP (TransformerLens's ``mlp.ln``)."""
    inner = getattr(mlp, "_original_component", mlp)
    ln = getattr(mlp, "ln", None) or getattr(inner, "ln", None)
    if ln is None:
        raise Unsupported("SoLU-LN MLP without a readable LayerNorm")
    return _norm(ln, rms=False)


def _qk_norms(blk: Any, d_head: int) -> tuple[Norm | None, Norm | None]:
    """Per-head query/key RMSNorms (Qwen3), or (None, None); other q/k norms are unsupported."""
    attn = getattr(blk, "attn", None)
    mods = [getattr(attn, n, None) for n in ("q_norm", "k_norm")]
    if all(m is None for m in mods):
        return None, None
    norms = []
    for m in mods:
        norm = None if m is None else _norm(m, rms=True)
        if norm is not None and norm.weight is not None and norm.weight.shape[-1] != d_head:
            raise Unsupported("query/key norms over all heads together (OLMo 2 style)")
        norms.append(norm)
    return norms[0], norms[1]


def _rotary(model: Any) -> Any:
    mod = getattr(model, "rotary_emb", None)
    if mod is None:
        for name, m in model.named_modules():
            if name.endswith("rotary_emb"):
                mod = m
                break
    if mod is None:
        raise Unsupported("rotary embedding module not found")
    return getattr(mod, "_original_component", mod)


def extract(model: Any) -> FastWeights:
    """Collect the bridge's weights; raise :class:`Unsupported` with a reason if unknown."""
    cfg = model.cfg
    window = hf_features(model)
    for flag in _UNSUPPORTED_FLAGS:
        if getattr(cfg, flag, None):
            raise Unsupported(f"config flag {flag} is set")
    if getattr(cfg, "attention_dir", "causal") != "causal":
        raise Unsupported("attention is not causal")
    for cap in ("attn_scores_soft_cap", "output_logits_soft_cap"):
        if (getattr(cfg, cap, -1.0) or -1.0) > 0:
            raise Unsupported(f"{cap} is set")
    if getattr(cfg, "window_size", None) or getattr(cfg, "attn_types", None):
        raise Unsupported("local/sliding-window attention")
    pos_type = getattr(cfg, "positional_embedding_type", "standard")
    if pos_type not in ("standard", "rotary"):
        raise Unsupported(f"positional embedding {pos_type!r}")
    norm_type = getattr(cfg, "normalization_type", None)
    if norm_type not in ("LN", "LNPre", "RMS", "RMSPre"):
        raise Unsupported(f"normalization {norm_type!r}")
    act_name = getattr(cfg, "act_fn", None)
    if act_name not in _ACTS:
        raise Unsupported(f"activation {act_name!r}")
    rms = norm_type.startswith("RMS")
    L, H, dh = int(cfg.n_layers), int(cfg.n_heads), int(cfg.d_head)
    attn_only = bool(getattr(cfg, "attn_only", False))
    gated = bool(getattr(cfg, "gated_mlp", False))
    big = {n: _get(model, n) for n in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O",
                                       "W_in", "b_in", "W_gate", "W_out", "b_out")}
    for n in ("W_Q", "W_K", "W_V", "W_O"):
        if big[n] is None:
            raise Unsupported(f"no {n} accessor")
    n_kv = int(big["W_K"].shape[1])
    if H % n_kv:
        raise Unsupported("query heads are not a multiple of key/value heads")
    if not attn_only and (big["W_in"] is None or big["W_out"] is None or (gated and big["W_gate"] is None)):
        raise Unsupported("MLP weights not readable")
    d = int(big["W_Q"].shape[2])
    zeros = big["W_Q"].new_zeros
    layers = []
    for i in range(L):
        blk = model.blocks[i]
        ln2 = None if attn_only else _norm(blk.ln2, rms)
        layer = Layer(
            ln1=_norm(blk.ln1, rms),
            ln2=ln2,
            W_Q=big["W_Q"][i], W_K=big["W_K"][i], W_V=big["W_V"][i],
            b_Q=big["b_Q"][i] if big["b_Q"] is not None else zeros(H, dh),
            b_K=big["b_K"][i] if big["b_K"] is not None else zeros(n_kv, dh),
            b_V=big["b_V"][i] if big["b_V"] is not None else zeros(n_kv, dh),
            W_O=big["W_O"][i],
            b_O=big["b_O"][i] if big["b_O"] is not None else zeros(d),
            W_in=None if attn_only else big["W_in"][i],
            b_in=None if attn_only else (big["b_in"][i] if big["b_in"] is not None else None),
            W_gate=big["W_gate"][i] if (gated and not attn_only) else None,
            W_out=None if attn_only else big["W_out"][i],
            b_out=None if attn_only else (big["b_out"][i] if big["b_out"] is not None else None),
        )
        layer.W_qkv = torch.cat([
            layer.W_Q.permute(1, 0, 2).reshape(d, -1),
            layer.W_K.permute(1, 0, 2).reshape(d, -1),
            layer.W_V.permute(1, 0, 2).reshape(d, -1),
        ], dim=1).contiguous()
        layer.b_qkv = torch.cat([layer.b_Q.reshape(-1), layer.b_K.reshape(-1), layer.b_V.reshape(-1)])
        layer.W_O_flat = layer.W_O.reshape(H * dh, d).contiguous()
        if act_name == "solu_ln" and not attn_only:
            layer.ln_mlp = _mlp_norm(blk.mlp)
        layer.q_norm, layer.k_norm = _qk_norms(blk, dh)
        layers.append(layer)
    rotary, rotary_dim = None, 0
    if pos_type == "rotary":
        rotary = _rotary(model)
        rotary_dim = int(getattr(cfg, "rotary_dim", None) or 0)
        if not rotary_dim:
            factor = (getattr(cfg, "rope_parameters", None) or {}).get("partial_rotary_factor", 1.0)
            rotary_dim = int(dh * factor)
    W_pos = _get(model, "W_pos") if pos_type == "standard" else None
    if pos_type == "standard" and W_pos is None:
        raise Unsupported("no learned positional embedding readable")
    W_U, b_U, W_E = _get(model, "W_U"), _get(model, "b_U"), _get(model, "W_E")
    if W_U is None or W_E is None:
        raise Unsupported("embedding/unembedding not readable")
    attn_scale = float(getattr(cfg, "attn_scale", -1.0) or -1.0)
    scale = 1.0 / (attn_scale if attn_scale > 0 else dh**0.5)
    if not getattr(cfg, "use_attn_scale", True):
        scale = 1.0
    return FastWeights(
        layers=layers,
        ln_final=_norm(model.ln_final, rms),
        W_E=W_E,
        W_pos=W_pos,
        W_U=W_U.contiguous(),
        b_U=b_U if b_U is not None else W_U.new_zeros(W_U.shape[1]),
        n_heads=H,
        n_kv=n_kv,
        d_head=dh,
        scale=scale,
        act=_ACTS[act_name],
        parallel=bool(getattr(cfg, "parallel_attn_mlp", False)),
        attn_only=attn_only,
        rotary=rotary,
        rotary_dim=rotary_dim,
        window=window,
    )
