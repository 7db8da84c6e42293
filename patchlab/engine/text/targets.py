"""Per-position targets read from a run: a token's logit or log-prob, a head's output norm, a
neuron's activation. Shared by token ablation and top examples."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from patchlab.core.errors import InputError, TargetUnavailableError
from patchlab.engine.tokens import single_token_id

KINDS = ("logit", "logprob", "head", "neuron")


@dataclass(frozen=True)
class TokenTarget:
    """What to read at a position: ``kind`` and its ``layer``/``index`` (head or neuron) or
    ``token`` (its id in ``token_id``)."""

    kind: str
    layer: int = -1
    index: int = -1
    token: str = ""
    token_id: int = -1

    @property
    def label(self) -> str:
        if self.kind in ("logit", "logprob"):
            return f"{self.kind}({self.token!r})"
        if self.kind == "head":
            return f"L{self.layer}H{self.index} output norm"
        return f"L{self.layer}N{self.index} activation"

    @property
    def hook(self) -> str | None:
        if self.kind == "head":
            return f"blocks.{self.layer}.attn.hook_z"
        if self.kind == "neuron":
            return f"blocks.{self.layer}.mlp.hook_post"
        return None


_UNIT = re.compile(r"^\s*L?(\d+)\s*[HN./: ,]\s*(\d+)\s*$", re.IGNORECASE)


def parse_target(model: Any, target: Any) -> TokenTarget:
    """Accept ``"logprob: pool"``, ``"logit: Mary"``, ``"head: L1H3"``, ``"neuron: L0N12"``,
    tuples ``("head", 1, 3)`` / ``("logit", " Mary")``, or a :class:`TokenTarget`."""
    if isinstance(target, TokenTarget):
        t = target
    elif isinstance(target, str):
        kind, sep, rest = target.partition(":")
        kind = kind.strip().lower()
        if not sep or kind not in KINDS:
            raise InputError(f"Unknown target {target!r}: use 'logit: TOKEN', 'logprob: TOKEN', "
                             "'head: L1H3' or 'neuron: L0N12'.")
        if kind in ("logit", "logprob"):
            # "logprob: pool" names "pool"; a second space keeps a GPT-2 style " Mary"
            t = TokenTarget(kind, token=rest[1:] if rest.startswith(" ") else rest)
        else:
            m = _UNIT.match(rest)
            if not m:
                raise InputError(f"Cannot read {rest.strip()!r} as a {kind}: write it like "
                                 f"{'L1H3' if kind == 'head' else 'L0N12'}.")
            t = TokenTarget(kind, int(m.group(1)), int(m.group(2)))
    elif isinstance(target, (tuple, list)) and target and target[0] in KINDS:
        if target[0] in ("logit", "logprob") and len(target) == 2:
            t = TokenTarget(target[0], token=str(target[1]))
        elif len(target) == 3:
            t = TokenTarget(target[0], int(target[1]), int(target[2]))
        else:
            raise InputError(f"Cannot read target {target!r}.")
    else:
        raise InputError(f"Cannot read target {target!r}: use e.g. 'logprob: pool' or ('head', 1, 3).")
    return _check(model, t)


def _check(model: Any, t: TokenTarget) -> TokenTarget:
    cfg = model.cfg
    if t.kind in ("logit", "logprob"):
        if not t.token:
            raise InputError("Name the token, e.g. 'logprob: pool'.")
        return TokenTarget(t.kind, token=t.token, token_id=single_token_id(model, t.token, "target token"))
    if not 0 <= t.layer < int(cfg.n_layers):
        raise InputError(f"Layer {t.layer} does not exist: the model has layers 0-{int(cfg.n_layers) - 1}.")
    if t.kind == "head" and not 0 <= t.index < int(cfg.n_heads):
        raise InputError(f"Head {t.index} does not exist: layer {t.layer} has heads 0-{int(cfg.n_heads) - 1}.")
    if t.kind == "neuron":
        if getattr(cfg, "attn_only", False) or t.hook not in model.hook_dict:
            raise TargetUnavailableError("This model has no MLP neurons (attention-only); pick a head target.")
        d_mlp = int(getattr(cfg, "d_mlp", 0) or 0)
        if not 0 <= t.index < d_mlp:
            raise InputError(f"Neuron {t.index} does not exist: layer {t.layer}'s MLP has neurons 0-{d_mlp - 1}.")
    return t


def read_target(model: Any, t: TokenTarget, tokens: torch.Tensor, fwd_hooks=()) -> torch.Tensor:
    """``[rows, pos]`` value of the target at every position of a run of ``tokens``."""
    with torch.inference_mode():
        if t.kind in ("logit", "logprob"):
            logits = model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks)) if fwd_hooks else model(tokens)
            if t.kind == "logprob":
                logits = torch.log_softmax(logits.float(), dim=-1)
            return logits[..., t.token_id].float()
        got = {}

        def grab(act, hook):
            got["a"] = act.detach()

        model.run_with_hooks(tokens, fwd_hooks=[*fwd_hooks, (t.hook, grab)])
        act = got["a"]
        if t.kind == "neuron":
            return act[..., t.index].float()
        w_o = model.blocks[t.layer].attn.W_O[t.index]  # [d_head, d_model]
        return (act[:, :, t.index] @ w_o).norm(dim=-1).float()
