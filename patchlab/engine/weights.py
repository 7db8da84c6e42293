"""Circuits read from the weights: the direct path, per-head OV and QK circuits, positional QK,
and composition scores with a random baseline.

Everything here assumes folded LayerNorm (TransformerLens compatibility mode): without it the
LayerNorm scales sit between these matrices and the products mislead, so a model loaded with
``processing="raw"`` gets a message offering to switch (``allow_raw=True`` reads them anyway).
The bridge's stacked ``W_Q``... are copies: weights are read per layer and never cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from patchlab._version import __version__
from patchlab.core.errors import InputError, TargetUnavailableError
from patchlab.core.weights_result import CompositionResult, WeightMatrix
from patchlab.engine.loading import model_info

MODES = ("q", "k", "v")


def require_compat(model: Any, allow_raw: bool = False) -> None:
    """Refuse raw weights unless asked: weight views need folded LayerNorm."""
    if not allow_raw and model_info(model).processing != "compat":
        raise InputError(
            "Weight views need folded LayerNorm (TransformerLens compatibility mode), but this model "
            "was loaded with processing='raw'. Reload it with processing='compat' (CLI: --processing "
            "compat; in the window: switch processing to compat), or pass allow_raw=True to read the "
            "unfolded weights anyway.")


def toy_groups(model: Any) -> list[str] | None:
    """Word class of every token when the model speaks the toy language, else None."""
    from patchlab.toy import language as lang

    vocab = lang.vocabulary()
    tok_vocab = model.tokenizer.get_vocab()
    if len(tok_vocab) != len(vocab) or any(tok_vocab.get(w) != i for i, w in enumerate(vocab)):
        return None
    groups = ["special", "special"]
    for name, words in (("names", lang.NAMES), ("verbs", lang.VERBS), ("places", lang.PLACES),
                        ("adjectives", lang.ADJECTIVES), ("connectors", lang.CONNECTORS),
                        ("activities", lang.ACTIVITIES), ("venues", lang.VENUES),
                        ("function words", lang.FUNCTION_WORDS), ("fillers", lang.FILLERS)):
        groups += [name] * len(words)
    return groups


def unknown_words(model: Any, text: str) -> list[str]:
    """The words of ``text`` that ``model``'s vocabulary lacks (empty for BPE vocabularies).

    A word-level vocabulary (the toy models) reads every word it lacks as its one unknown-word
    token (``<unk>``), so a row or column for it would stand for all of them at once. The
    unknown-word token typed on purpose is not counted: GPT-2's unk token is ``<|endoftext|>``.
    """
    tok = model.tokenizer
    unk_id, unk = getattr(tok, "unk_token_id", None), getattr(tok, "unk_token", None)
    if unk_id is None:
        return []
    try:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        spans = [text[a:b] for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]) if i == unk_id]
    except (NotImplementedError, ValueError, TypeError):  # slow tokenizers have no offsets: word by word
        spans = [w for w in text.split() if unk_id in tok(w, add_special_tokens=False)["input_ids"]]
    return [w.strip() for w in spans if w.strip() and w.strip() != unk]


def _refuse_unknown(model: Any, text: str, where: str) -> None:
    """An :class:`InputError` naming the unknown words of ``text`` (``where``: "the token list"...).

    The pair editor marks the same words red in its token strip; here a weight view would show
    one meaningless ``<unk>`` row for them, so it refuses and says which words to change.
    """
    words = unknown_words(model, text)
    if words:
        unique = list(dict.fromkeys(words))
        hint = (" (the toy language's words: patchlab.toy.language.vocabulary())"
                if toy_groups(model) is not None else "")
        verb, each = ("is", "it") if len(unique) == 1 else ("are", "each")
        raise InputError(f"{', '.join(map(repr, unique))} (in {where}) {verb} not in the model's vocabulary: "
                         f"{each} would be read as "
                         f"{model.tokenizer.unk_token}, the one token for every unknown word. Use words "
                         f"the model knows{hint}.")


def token_set(model: Any, tokens: Sequence[str | int] | None = None,
              pairs: Sequence[Any] | None = None) -> tuple[list[int], list[str], list[str]]:
    """Token ids, labels and groups for the token axes.

    Toy models without a list: the whole vocabulary grouped by word class. Otherwise the tokens
    of ``pairs`` (prompts, answers) in order of first appearance, then ``tokens`` (each a single
    token: a string or an id). Words the vocabulary lacks (word-level vocabularies read them all as
    one ``<unk>`` token) raise an :class:`InputError` naming them.
    """
    if tokens is None and pairs is None:
        groups = toy_groups(model)
        if groups is None:
            raise InputError("This model's vocabulary is too large for a full token x token view: give "
                             "tokens=[' Mary', ' John', ...] or the prompt pairs whose tokens to use.")
        vocab = model.tokenizer.convert_ids_to_tokens(list(range(len(groups))))
        return list(range(len(groups))), [str(v) for v in vocab], groups
    from patchlab.engine.tokens import single_token_id

    ids, labels, groups, seen = [], [], [], set()

    def add(i: int, group: str) -> None:
        if i not in seen:
            seen.add(i)
            ids.append(i)
            labels.append(model.tokenizer.decode([i]))
            groups.append(group)

    for n, p in enumerate(pairs or (), start=1):
        for text, role in ((p.clean, "clean prompt"), (p.corrupted, "corrupted prompt")):
            _refuse_unknown(model, text, f"pair {n}'s {role}")
            for i in model.to_tokens(text, prepend_bos=False)[0].tolist():
                add(int(i), "pairs")
        for text, role in ((p.answer, "answer"), (p.wrong, "wrong answer")):
            _refuse_unknown(model, text, f"pair {n}'s {role}")
            add(single_token_id(model, text, "answer"), "pairs")
    for t in tokens or ():
        if isinstance(t, (int, np.integer)):
            if not 0 <= int(t) < int(model.cfg.d_vocab):
                raise InputError(f"Token id {t} is outside the vocabulary (0-{int(model.cfg.d_vocab) - 1}).")
            add(int(t), "tokens")
        else:
            _refuse_unknown(model, str(t), "the token list")
            add(single_token_id(model, str(t), "token"), "tokens")
    if not ids:
        raise InputError("No tokens to show: give at least one token.")
    return ids, labels, groups


def _check_head(model: Any, layer: int, head: int) -> None:
    n_l, n_h = int(model.cfg.n_layers), int(model.cfg.n_heads)
    if not 0 <= layer < n_l or not 0 <= head < n_h:
        raise InputError(f"No head L{layer}H{head}: the model has layers 0-{n_l - 1} and heads 0-{n_h - 1}.")


def head_weights(model: Any, layer: int) -> dict[str, torch.Tensor]:
    """``W_Q, W_K, W_V`` ``[head, d_model, d_head]`` and ``W_O`` ``[head, d_head, d_model]`` of one
    layer in float64, key/value heads repeated for grouped-query attention."""
    attn = model.blocks[layer].attn
    n_h = int(model.cfg.n_heads)
    out = {}
    with torch.no_grad():
        for name in ("W_Q", "W_K", "W_V", "W_O"):
            w = getattr(attn, name).detach().to("cpu", torch.float64)
            if w.shape[0] != n_h:  # GQA: each key/value head serves n_h // n_kv query heads
                w = w.repeat_interleave(n_h // w.shape[0], dim=0)
            out[name] = w
    return out


def _meta(model: Any, circuit: str, **extra: Any) -> dict[str, Any]:
    info = model_info(model)
    return {"circuit": circuit, "model": info.name, "processing": info.processing,
            "patchlab_version": __version__, **extra}


def _emb(model: Any) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return (model.W_E.detach().to("cpu", torch.float64), model.W_U.detach().to("cpu", torch.float64))


def direct_path(model: Any, tokens=None, pairs=None, *, allow_raw: bool = False) -> WeightMatrix:
    """``W_E @ W_U`` on a token set: row = current token, column = the logit it pushes (bigrams).

    See :func:`token_set` for ``tokens``/``pairs`` (toy models: the whole vocabulary by class).
    """
    require_compat(model, allow_raw)
    ids, labels, groups = token_set(model, tokens, pairs)
    w_e, w_u = _emb(model)
    vals = (w_e[ids] @ w_u[:, ids]).numpy()
    return WeightMatrix(vals, labels, labels, groups, groups,
                        _meta(model, "direct", row_axis="current token", col_axis="logit of token"))


def ov_circuit(model: Any, layer: int, head: int, tokens=None, pairs=None, *, allow_raw: bool = False) -> WeightMatrix:
    """``W_E W_V W_O W_U`` of one head: row = attended token, column = the logit it pushes."""
    require_compat(model, allow_raw)
    _check_head(model, layer, head)
    ids, labels, groups = token_set(model, tokens, pairs)
    w_e, w_u = _emb(model)
    w = head_weights(model, layer)
    vals = (w_e[ids] @ w["W_V"][head] @ w["W_O"][head] @ w_u[:, ids]).numpy()
    return WeightMatrix(vals, labels, labels, groups, groups,
                        _meta(model, "ov", layer=layer, head=head, row_axis="attended (source) token",
                              col_axis="logit of token"))


def qk_circuit(model: Any, layer: int, head: int, tokens=None, pairs=None, *, allow_raw: bool = False) -> WeightMatrix:
    """``W_E W_Q W_K^T W_E^T`` of one head: row = query token, column = key token (token
    embeddings only; positions are in :func:`positional_qk`)."""
    require_compat(model, allow_raw)
    _check_head(model, layer, head)
    ids, labels, groups = token_set(model, tokens, pairs)
    w_e, _ = _emb(model)
    w = head_weights(model, layer)
    e = w_e[ids]
    vals = ((e @ w["W_Q"][head]) @ (e @ w["W_K"][head]).T).numpy()
    return WeightMatrix(vals, labels, labels, groups, groups,
                        _meta(model, "qk", layer=layer, head=head, row_axis="query token", col_axis="key token"))


def positional_qk(model: Any, layer: int, head: int, n_pos: int | None = None, *, allow_raw: bool = False) -> WeightMatrix:
    """``W_pos W_Q W_K^T W_pos^T`` of one head (query position x key position), NaN where the key
    comes after the query. Only for models with learned absolute positions."""
    require_compat(model, allow_raw)
    _check_head(model, layer, head)
    try:
        with torch.no_grad():
            w_pos = model.W_pos.detach().to("cpu", torch.float64)
    except AttributeError:
        raise TargetUnavailableError(
            f"{model_info(model).name} has no learned positional embedding (positional_embedding_type="
            f"{getattr(model.cfg, 'positional_embedding_type', '?')!r}), so there is no positional QK "
            "pattern to read; use the token QK circuit.") from None
    n = min(int(n_pos or w_pos.shape[0]), w_pos.shape[0])
    w = head_weights(model, layer)
    p = w_pos[:n]
    vals = ((p @ w["W_Q"][head]) @ (p @ w["W_K"][head]).T).numpy()
    vals[np.triu_indices(n, 1)] = np.nan
    labels = [str(i) for i in range(n)]
    return WeightMatrix(vals, labels, labels, ["pos"] * n, ["pos"] * n,
                        _meta(model, "pos_qk", layer=layer, head=head, row_axis="query position",
                              col_axis="key position"))


def _factors(w: dict[str, torch.Tensor], mode: str, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` with the circuit ``A @ B`` per head: OV for the source; Q/K/V side for the
    destination, in TransformerLens's orientation (K: the transposed QK circuit)."""
    if side == "src" or mode == "v":
        return w["W_V"], w["W_O"]
    if mode == "q":
        return w["W_Q"], w["W_K"].transpose(-1, -2)
    return w["W_K"], w["W_Q"].transpose(-1, -2)


def _scores(a, b, c, d) -> torch.Tensor:
    """``||A B C D|| / (||A B|| ||C D||)`` for every (source, destination) pair, via Gram matrices:
    ``||A M D||^2 = tr(M^T (A^T A) M (D D^T))`` with ``M = B C`` (never forms d_model matrices)."""
    g_a = a.transpose(-1, -2) @ a  # [S, dh, dh]
    g_d = d @ d.transpose(-1, -2)  # [T, dh, dh]
    m = torch.einsum("sij,tjk->stik", b, c)  # [S, T, dh, dh]
    # tr(M^T G_A M G_D) = sum((G_A M) * (M G_D)) since G_A is symmetric
    left = ((g_a[:, None] @ m) * (m @ g_d[None])).sum((-1, -2))
    n_src = torch.einsum("sij,sji->s", g_a, b @ b.transpose(-1, -2))
    n_dst = torch.einsum("tij,tji->t", c.transpose(-1, -2) @ c, g_d)
    return left.clamp_min(0).sqrt() / (n_src.sqrt()[:, None] * n_dst.sqrt()[None, :])


def composition_scores(model: Any, mode: str = "k", *, baseline_samples: int = 500, seed: int = 0,
                       allow_raw: bool = False) -> CompositionResult:
    """Q-, K- or V-composition scores between every pair of heads, with a random baseline.

    Parameters
    ----------
    model : TransformerBridge
        Loaded with ``processing="compat"`` (folded LayerNorm).
    mode : {"q", "k", "v"}
        Which input of the destination head reads the source head's output (OV circuit).
    baseline_samples, seed
        Draws of random Gaussian matrices of the heads' shapes for the baseline.

    Returns
    -------
    CompositionResult
        ``.values`` ``(layer, head, layer, head)`` source then destination (NaN unless the
        destination's layer is later), ``.baseline_mean``, ``.baseline_p99``, ``.ranked()``.
    """
    mode = str(mode).lower()
    if mode not in MODES:
        raise InputError(f"Unknown composition mode {mode!r}: use q, k or v.")
    require_compat(model, allow_raw)
    n_l, n_h = int(model.cfg.n_layers), int(model.cfg.n_heads)
    per_layer = [head_weights(model, layer) for layer in range(n_l)]
    src = [torch.cat(x) for x in zip(*(_factors(w, mode, "src") for w in per_layer))]
    dst = [torch.cat(x) for x in zip(*(_factors(w, mode, "dst") for w in per_layer))]
    vals = torch.full((n_l * n_h, n_l * n_h), float("nan"), dtype=torch.float64)
    for layer in range(n_l - 1):
        rows = slice(layer * n_h, (layer + 1) * n_h)
        cols = slice((layer + 1) * n_h, n_l * n_h)
        vals[rows, cols] = _scores(src[0][rows], src[1][rows], dst[0][cols], dst[1][cols])
    mean, p99 = random_baseline(src[0].shape[1:], src[1].shape[1:], dst[0].shape[1:], dst[1].shape[1:],
                                baseline_samples, seed)
    meta = {**_meta(model, f"{mode}_composition"), "baseline_samples": baseline_samples, "seed": seed,
            "baseline": "the same score between products of i.i.d. Gaussian matrices of the heads' shapes"}
    return CompositionResult(vals.reshape(n_l, n_h, n_l, n_h).numpy(), mode, mean, p99, meta)


def random_baseline(sa, sb, sc, sd, n: int, seed: int) -> tuple[float, float]:
    """Mean and 99th percentile of the composition score of random matrices of these shapes."""
    if n < 1:
        raise InputError("baseline_samples must be at least 1.")
    g = torch.Generator().manual_seed(seed)
    r = [torch.randn((n, *s), generator=g, dtype=torch.float64) for s in (sa, sb, sc, sd)]
    a, b, c, d = r
    g_a, g_d = a.transpose(-1, -2) @ a, d @ d.transpose(-1, -2)
    m = b @ c  # sample i's source and destination only
    left = ((g_a @ m) * (m @ g_d)).sum((-1, -2))
    n_src = (g_a * (b @ b.transpose(-1, -2))).sum((-1, -2))
    n_dst = ((c.transpose(-1, -2) @ c) * g_d).sum((-1, -2))
    scores = (left.clamp_min(0).sqrt() / (n_src * n_dst).sqrt()).numpy()
    return float(scores.mean()), float(np.percentile(scores, 99))
