"""The embedded toy models shipped in ``resources/models/`` (offline, fast to load)."""

from __future__ import annotations

import json
from pathlib import Path

from patchlab.core.resources import resource_path

DEFAULT_MODEL = "toy-attn2"
_CARD = "card.json"


def _models_dir() -> Path:
    return resource_path("models")


def list_embedded() -> list[dict]:
    """Return the model cards of all embedded models, the default first.

    Returns
    -------
    list of dict
        One card per model folder in ``resources/models`` (``card.json``), each with at least
        ``name`` and ``description``.
    """
    root = _models_dir()
    cards = []
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            card_file = folder / _CARD
            if card_file.is_file():
                card = json.loads(card_file.read_text())
                card.setdefault("name", folder.name)
                card.setdefault("description", "")
                cards.append(card)
    cards.sort(key=lambda c: (c["name"] != DEFAULT_MODEL, c["name"]))
    return cards


def is_embedded(name: str) -> bool:
    """Return True when ``name`` is an embedded model folder with weights."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        return False
    try:
        folder = resource_path("models", name)
    except FileNotFoundError:
        return False
    return (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()


def load_embedded(name: str = DEFAULT_MODEL, *, device: str = "cpu", dtype=None):
    """Load an embedded toy model as a ``TransformerBridge`` in eval mode (offline).

    Parameters
    ----------
    name : str
        Model name, e.g. ``"toy-attn2"`` (see :func:`list_embedded`).
    device : str
        Torch device.
    dtype : torch.dtype, optional
        Weight dtype (float32 when omitted).

    Returns
    -------
    transformer_lens.TransformerBridge

    Raises
    ------
    KeyError
        When ``name`` is not an embedded model.
    """
    if not is_embedded(name):
        known = ", ".join(c["name"] for c in list_embedded()) or "none"
        raise KeyError(f"{name!r} is not an embedded model (embedded: {known}).")
    from patchlab.toy.io import load_bridge

    return load_bridge(resource_path("models", name), device=device, dtype=dtype, name=name)


def load_card(name: str) -> dict:
    """Return the card of embedded model ``name``."""
    return json.loads(resource_path("models", name, _CARD).read_text())


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_card(card: dict) -> str:
    """Render a model card as plain text (for ``patchlab models`` and the GUI).

    Parameters
    ----------
    card : dict
        A card as returned by :func:`list_embedded`.

    Returns
    -------
    str
        Several lines: name, description, architecture, training, per-rule accuracy table,
        circuits found and notes.
    """
    lines = [f"{card.get('name', '?')}" + (" (default)" if card.get("name") == DEFAULT_MODEL
                                              else ""), card.get("description", "")]
    arch = card.get("architecture") or {}
    if arch:
        parts = [f"{arch.get('n_layers')} layers", f"{arch.get('n_heads')} heads",
                 f"d_model {arch.get('d_model')}", f"n_ctx {arch.get('n_ctx')}",
                 f"vocab {arch.get('d_vocab')}"]
        parts.append("attention-only" if arch.get("attn_only") else
                     f"MLP {arch.get('d_mlp')} ({arch.get('act_fn')})")
        lines.append("Architecture: " + ", ".join(parts))
    train = card.get("training") or {}
    if train:
        lines.append(
            f"Training: {train.get('steps')} steps x {train.get('batch_size')} sequences of "
            f"{train.get('seq_len')} tokens, {train.get('documents')} sampled documents, "
            f"final loss {train.get('final_train_loss')}, {train.get('train_seconds')} s on 1 CPU thread"
        )
    per_rule = (card.get("evaluation") or {}).get("per_rule") or {}
    if per_rule:
        n_docs = card["evaluation"].get("heldout_documents")
        lines.append(f"Per-rule accuracy on {n_docs} fresh held-out documents:")
        lines.append(f"  {'rule':<10} {'n':>6} {'top-1':>7} {'P(model)':>9} {'P(true)':>8}")
        for rule, r in per_rule.items():
            lines.append(f"  {rule:<10} {r.get('n', 0):>6} {_fmt(r.get('top1_accuracy')):>7} "
                         f"{_fmt(r.get('mean_prob')):>9} {_fmt(r.get('true_prob')):>8}")
    if card.get("circuits_found"):
        lines.append("Circuits found (attention-pattern scores):")
        lines.extend(f"  {c}" for c in card["circuits_found"])
    if card.get("notes"):
        lines.append("Notes:")
        lines.extend(f"  - {n}" for n in card["notes"])
    return "\n".join(line for line in lines if line is not None)
