"""Save and load toy models: safetensors weights, JSON config, word-level tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from patchlab.toy.language import BOS, UNK, vocabulary

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "card.json"


def build_tokenizer():
    """Return a word-level ``PreTrainedTokenizerFast`` over the toy vocabulary.

    Words are split on whitespace; ``<bos>`` is the BOS token (so ``bridge.to_tokens(text)``
    prepends it) and also serves as pad/eos token.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, unk_token=UNK, pad_token=BOS, eos_token=BOS
    )


def save_model(model: torch.nn.Module, config: dict, out_dir: Path) -> None:
    """Write ``model.safetensors``, ``config.json`` and the tokenizer files into ``out_dir``."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS))
    (out_dir / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    build_tokenizer().save_pretrained(str(out_dir))


def load_bridge(model_dir: Path, *, device: str = "cpu", dtype: torch.dtype | None = None,
                name: str | None = None):
    """Boot a saved toy model as a ``TransformerBridge`` (offline, eval mode).

    Parameters
    ----------
    model_dir : Path
        Folder written by :func:`save_model`.
    device : str
        Torch device.
    dtype : torch.dtype, optional
        Cast the weights to this dtype.
    name : str, optional
        Model name recorded on the bridge (defaults to the folder name).

    Returns
    -------
    transformer_lens.TransformerBridge
    """
    from safetensors.torch import load_file
    from transformer_lens import TransformerBridge
    from transformers import PreTrainedTokenizerFast

    model_dir = Path(model_dir)
    config = json.loads((model_dir / CONFIG).read_text())
    config = {**config, "init_weights": False}
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(model_dir))
    bridge = TransformerBridge.boot_native(
        config, tokenizer=tokenizer, device=device, dtype=dtype,
        model_name=name or model_dir.name,
    )
    state = load_file(str(model_dir / WEIGHTS))
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    # The bridge's unembedding carries a bias the native head lacks; keep it at zero.
    bias = bridge.original_model.state_dict().get("head._original_component.bias")
    if bias is not None and "head.bias" not in state:
        state["head.bias"] = torch.zeros_like(bias)
    result = bridge.load_state_dict(state, strict=False)
    # Some native modules are registered twice (``mlp.in`` aliases ``mlp.fc_in``): a missing
    # key is fine when its tensor is shared with a key that was loaded.
    current = bridge.original_model.state_dict()
    missing = set(result.missing_keys)
    loaded = {v.data_ptr() for k, v in current.items() if k not in missing}
    if [k for k in missing if current[k].data_ptr() not in loaded] or result.unexpected_keys:
        raise RuntimeError(f"{model_dir}: weights do not match the config: {result}")
    bridge.eval()
    return bridge
