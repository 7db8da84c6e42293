"""Weights of a TransformerBridge as plain tensors, for the fast exact path.

Reads each block's TransformerLens-style accessors (``blocks[i].attn.W_Q`` ...), which reflect
compatibility-mode folding and are views of the bridge's own parameters, and the norm modules'
own weights. Nothing is copied except what cannot be a view (bias zeros for bias-free layers,
a reshape the layout does not allow); :attr:`FastWeights.copied_bytes` counts those copies.
The bridge's model-level accessors (``bridge.W_Q``) are not used: they ``torch.stack`` a copy.
"""

from __future__ import annotations

import inspect
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
    offset: bool = False  # Gemma: scales by (1 + weight), in float32 before the cast back

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.rms:
            xf = x.float()
            if self.offset:
                y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
                return (y if self.weight is None else y * (1.0 + self.weight.float())).to(x.dtype)
            # HF RMSNorm normalises in float32, casts back, then scales (matters in half precision)
            y = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)
            return y if self.weight is None else self.weight * y
        # HF LayerNorm runs in the input dtype (torch accumulates in float32 inside)
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
    # 2-D views for the matmuls: [d, H dh] / [d, Hkv dh] and [H dh, d] (no fused copy)
    W_q2: torch.Tensor | None = None
    W_k2: torch.Tensor | None = None
    W_v2: torch.Tensor | None = None
    W_O_flat: torch.Tensor | None = None
    ln_mlp: Norm | None = None  # SoLU-LN: LayerNorm over d_mlp between activation and W_out
    # Qwen3: RMSNorm of each head's query and key (over d_head), after the projection, before rotary
    q_norm: Norm | None = None
    k_norm: Norm | None = None
    # Gemma 2/3: RMSNorms of the attention and MLP outputs before they join the residual
    post_attn: Norm | None = None
    post_mlp: Norm | None = None
    window: int | None = None  # this layer's sliding window (Gemma: sliding and global layers alternate)
    rope_type: str | None = None  # Gemma 3: which of the rotary module's per-layer-type tables it uses

    def project_qkv(self, xn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat q ``[N, H dh]``, k and v ``[N, Hkv dh]`` of normalised residuals ``xn [N, d]``.

        Three products on views of the bridge's weights: fusing them would need a copy of
        every layer's q/k/v weights for the model's life.
        """
        return self.project(xn, "q"), self.project(xn, "k"), self.project(xn, "v")

    def project(self, xn: torch.Tensor, which: str) -> torch.Tensor:
        """One of the q/k/v projections (``which``) of ``xn [N, d]``, flat."""
        W, b = {"q": (self.W_q2, self.b_Q), "k": (self.W_k2, self.b_K), "v": (self.W_v2, self.b_V)}[which]
        return torch.addmm(b.reshape(-1), xn, W)


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
    embed_scale: float | None = None  # Gemma: embeddings times sqrt(d_model), in the model's dtype
    attn_softcap: float | None = None  # Gemma 2: scores -> cap * tanh(scores / cap)
    logit_softcap: float | None = None  # Gemma 2/3: the same on the final logits
    copied_bytes: int = 0  # tensors this object holds that are not views of the bridge's parameters

    @property
    def dtype(self) -> torch.dtype:
        return self.W_E.dtype


def extra_features(w: FastWeights) -> str | None:
    """Gemma features that only the patching fast path (forward.py, entries.py) implements.

    Other users of :class:`FastWeights` (path patching, text ablation) refuse a model when
    this names one, rather than compute without it.
    """
    if w.embed_scale is not None or w.attn_softcap is not None or w.logit_softcap is not None:
        return "Gemma embedding scale / soft-capping"
    if any(ly.post_attn is not None or ly.window is not None or ly.rope_type for ly in w.layers):
        return "norms after attention and MLP or per-layer sliding windows (Gemma 2/3)"
    return None


class Unsupported(Exception):
    """The fast path does not implement this model; the message says why."""


def hf_features(model: Any) -> int | list[int | None] | None:
    """Check Hugging Face architecture features the bridge's config does not flag (issue 13).

    Returns the sliding-window length when every layer uses the same window (Mistral), a list
    of per-layer windows (None: global attention) when sliding and global layers alternate
    (Gemma 2/3), else ``None``; raises :class:`Unsupported` for features this path does not
    implement.
    """
    devices = {str(p.device) for p in model.parameters()}
    if len(devices) > 1:
        # each block would need its inputs moved between devices; the hook path does that
        raise Unsupported(f"the model is split over several devices ({', '.join(sorted(devices))})")
    hf = getattr(getattr(model, "original_model", None), "config", None)
    blk = model.blocks[0]
    if (hasattr(blk, "ln1_post") or hasattr(blk, "ln2_post")) and not all(
            hasattr(blk, n) for n in ("ln1", "ln2", "ln1_post", "ln2_post")):
        raise Unsupported("norms after attention and MLP without norms before them (OLMo 2 style)")
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
        return [int(window) if "sliding" in t else None for t in types]
    if types and types[0] == "full_attention":
        return None
    return int(window)


def _get(owner: Any, name: str) -> torch.Tensor | None:
    """An accessor's tensor, detached (a view sharing storage and version counter), or None.

    Only a missing accessor reads as None: any other error (out of memory above all) is
    raised, never reported as a missing weight.
    """
    try:
        value = getattr(owner, name)
    except AttributeError:
        return None
    return None if value is None else value.detach()


class _Copies:
    """Counts bytes of tensors that are not views of the model's parameters."""

    def __init__(self, model: Any):
        self.ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.bytes = 0

    def own(self, t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in self.ptrs:
            self.bytes += t.numel() * t.element_size()
        return t

    def zeros(self, like: torch.Tensor, *shape: int) -> torch.Tensor:
        return self.own(like.new_zeros(shape))

    def flat(self, t: torch.Tensor, rows: int) -> torch.Tensor:
        """``t`` as ``[rows, -1]``: a view where the layout allows one, else a counted copy."""
        return self.own(t.reshape(rows, -1))


def _norm(module: Any, rms: bool) -> Norm:
    inner = getattr(module, "_original_component", module)
    weight = getattr(inner, "weight", None)
    bias = getattr(inner, "bias", None)
    eps = getattr(inner, "eps", None) or getattr(inner, "variance_epsilon", None)
    if eps is None:
        raise Unsupported(f"cannot read the epsilon of norm {type(inner).__name__}")
    offset = getattr(module, "config", None) is not None and getattr(module.config, "rmsnorm_uses_offset", False)
    if offset and not rms:
        raise Unsupported("LayerNorm with a (1 + weight) offset")
    return Norm(
        None if weight is None else weight.detach(),
        None if (bias is None or rms) else bias.detach(),
        float(eps[0] if isinstance(eps, tuple) else eps),
        rms,
        bool(offset),
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
    caps = {cap: float(getattr(cfg, cap, -1.0) or -1.0) for cap in ("attn_scores_soft_cap", "output_logits_soft_cap")}
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
    hf = getattr(getattr(model, "original_model", None), "config", None)
    if isinstance(window, list) and len(window) != int(cfg.n_layers):
        raise Unsupported("per-layer attention types do not match the layer count")
    if hasattr(model.blocks[0], "ln1_post") and getattr(cfg, "parallel_attn_mlp", False):
        raise Unsupported("post-norms with parallel attention and MLP")
    L, H, dh = int(cfg.n_layers), int(cfg.n_heads), int(cfg.d_head)
    attn_only = bool(getattr(cfg, "attn_only", False))
    gated = bool(getattr(cfg, "gated_mlp", False))
    copies = _Copies(model)
    layers = [_layer(model.blocks[i], i, H, dh, rms, attn_only, gated, act_name, copies) for i in range(L)]
    if isinstance(window, list):
        for layer, win in zip(layers, window):
            layer.window = win
    n_kv = int(layers[0].W_K.shape[0])
    rotary, rotary_dim = None, 0
    if pos_type == "rotary":
        rotary = _rotary(model)
        if "layer_type" in inspect.signature(rotary.forward).parameters:
            # Gemma 3: local (sliding) and global layers use rotary tables of different bases
            types = list(getattr(hf, "layer_types", None) or [])
            if len(types) != L:
                raise Unsupported("per-layer rotary tables without per-layer attention types")
            for layer, t in zip(layers, types):
                layer.rope_type = t
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
    if b_U is None:
        b_U = copies.zeros(W_U, W_U.shape[1])
    attn_scale = float(getattr(cfg, "attn_scale", -1.0) or -1.0)
    scale = 1.0 / (attn_scale if attn_scale > 0 else dh**0.5)
    if not getattr(cfg, "use_attn_scale", True):
        scale = 1.0
    qpas = getattr(hf, "query_pre_attn_scalar", None) if hf is not None else None
    if qpas:  # Gemma scales scores by query_pre_attn_scalar ** -0.5, not d_head ** -0.5
        scale = float(qpas) ** -0.5
    embed_scale = None
    if hf is not None and getattr(hf, "model_type", "").startswith("gemma"):
        # Gemma multiplies the embeddings by sqrt(d_model) at run time (not folded into W_E)
        embed_scale = float(hf.hidden_size) ** 0.5
    return FastWeights(
        layers=layers,
        ln_final=_norm(model.ln_final, rms),
        W_E=W_E,
        W_pos=W_pos,
        W_U=copies.own(W_U),  # often a transposed view of the embedding: BLAS reads it as is
        b_U=b_U,
        n_heads=H,
        n_kv=n_kv,
        d_head=dh,
        scale=scale,
        act=_ACTS[act_name],
        parallel=bool(getattr(cfg, "parallel_attn_mlp", False)),
        attn_only=attn_only,
        rotary=rotary,
        rotary_dim=rotary_dim,
        window=window if not isinstance(window, list) else None,
        embed_scale=embed_scale,
        attn_softcap=caps["attn_scores_soft_cap"] if caps["attn_scores_soft_cap"] > 0 else None,
        logit_softcap=caps["output_logits_soft_cap"] if caps["output_logits_soft_cap"] > 0 else None,
        copied_bytes=copies.bytes,
    )


def _layer(blk: Any, i: int, H: int, dh: int, rms: bool, attn_only: bool, gated: bool, act_name: str,
           copies: _Copies) -> Layer:
    """One block's weights as views of its own parameters."""
    attn, mlp = blk.attn, getattr(blk, "mlp", None)
    W = {n: _get(attn, n) for n in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O")}
    for n in ("W_Q", "W_K", "W_V", "W_O"):
        if W[n] is None or W[n].dim() != 3:
            raise Unsupported(f"no per-head {n} accessor on block {i}")
    n_kv, d = int(W["W_K"].shape[0]), int(W["W_Q"].shape[1])
    if H % n_kv:
        raise Unsupported("query heads are not a multiple of key/value heads")
    M = {n: None if (attn_only or mlp is None) else _get(mlp, n) for n in ("W_in", "b_in", "W_gate", "W_out", "b_out")}
    if not attn_only and (M["W_in"] is None or M["W_out"] is None or (gated and M["W_gate"] is None)):
        raise Unsupported("MLP weights not readable")
    z = copies.zeros
    layer = Layer(
        ln1=_norm(blk.ln1, rms),
        ln2=None if attn_only else _norm(blk.ln2, rms),
        W_Q=W["W_Q"], W_K=W["W_K"], W_V=W["W_V"],
        b_Q=W["b_Q"] if W["b_Q"] is not None else z(W["W_Q"], H, dh),
        b_K=W["b_K"] if W["b_K"] is not None else z(W["W_Q"], n_kv, dh),
        b_V=W["b_V"] if W["b_V"] is not None else z(W["W_Q"], n_kv, dh),
        W_O=W["W_O"],
        b_O=W["b_O"] if W["b_O"] is not None else z(W["W_Q"], d),
        W_in=M["W_in"], b_in=M["b_in"], W_gate=M["W_gate"] if gated else None,
        W_out=M["W_out"], b_out=M["b_out"],
    )
    # [H, d, dh] -> [d, H dh]: a view for both the Conv1D and the nn.Linear layouts
    layer.W_q2 = copies.flat(layer.W_Q.permute(1, 0, 2), d)
    layer.W_k2 = copies.flat(layer.W_K.permute(1, 0, 2), d)
    layer.W_v2 = copies.flat(layer.W_V.permute(1, 0, 2), d)
    layer.W_O_flat = copies.flat(layer.W_O, H * dh)
    if act_name == "solu_ln" and not attn_only:
        layer.ln_mlp = _mlp_norm(blk.mlp)
    layer.q_norm, layer.k_norm = _qk_norms(blk, dh)
    if hasattr(blk, "ln1_post"):
        layer.post_attn, layer.post_mlp = _norm(blk.ln1_post, rms), _norm(blk.ln2_post, rms)
    return layer
