"""Tiny random models of several architectures, built offline into a folder (HF format)."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "When John and Mary went to the store, John gave a drink to Mary.",
    "When Mary and John went to the park, Mary gave a book to John.",
    "The cat sat on the mat. Alice sees Bob at the beach. Tom and Anna walk home.",
    "The war lasted from the year 1732 to the year 1789.",
]

ARCHS = ("gpt2", "neox", "llama")


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )


def build(arch: str, folder: Path, seed: int = 0, perturb_norms: bool = True, initializer_range: float = 0.02) -> Path:
    """Save a tiny random ``arch`` model with a BPE tokenizer into ``folder/arch``.

    A larger ``initializer_range`` gives components effects well above float32 noise.
    """
    import torch
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )

    tok = build_tokenizer()
    vocab = len(tok)
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, bos_token_id=0, eos_token_id=0, initializer_range=initializer_range)
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_positions=64, n_embd=32, n_layer=3, n_head=4, **common))
    elif arch == "neox":
        model = GPTNeoXForCausalLM(GPTNeoXConfig(
            hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64, use_parallel_residual=True, rotary_pct=0.5, **common))
    elif arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(
            hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=64, max_position_embeddings=64, **common))
    else:
        raise ValueError(arch)
    if perturb_norms:
        # random init leaves norms at weight 1 / bias 0, which hides LayerNorm-handling bugs
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name or "ln" in name:
                    p.add_(0.2 * torch.randn_like(p))
    out = Path(folder) / arch
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


# --- modern architectures (issue 13): a separate registry so ARCHS / tiny_dir stay as they are ---
# 2 layers and tiny dims keep TransformerLens's per-cell reference affordable. Sliding windows are
# shorter than the test prompts so the window actually masks something.
WINDOW = 4
MODERN_ARCHS = (
    "gptj", "llama3", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "olmo2",
)


def modern_config(arch: str, vocab: int):
    """The ``transformers`` config of a tiny random ``arch`` model (2 layers)."""
    import transformers as tf

    common = dict(vocab_size=vocab, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    dec = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=64, **common)
    if arch == "gptj":
        return tf.GPTJConfig(n_positions=64, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, **common)
    if arch == "llama3":
        return tf.LlamaConfig(num_key_value_heads=2, rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, **dec)
    if arch == "mistral":
        return tf.MistralConfig(num_key_value_heads=2, sliding_window=WINDOW, **dec)
    if arch == "qwen2":
        return tf.Qwen2Config(num_key_value_heads=2, **dec)
    if arch == "qwen3":
        return tf.Qwen3Config(num_key_value_heads=2, head_dim=8, **dec)
    if arch in ("gemma2", "gemma3"):
        cls = tf.Gemma2Config if arch == "gemma2" else tf.Gemma3TextConfig
        return cls(num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8, sliding_window=WINDOW,
                   layer_types=["sliding_attention", "full_attention"], attn_logit_softcapping=5.0 if arch == "gemma2" else None,
                   final_logit_softcapping=3.0, **dec)
    if arch == "phi3":
        return tf.Phi3Config(num_key_value_heads=2, original_max_position_embeddings=64, **dec)
    if arch == "olmo2":
        return tf.Olmo2Config(num_key_value_heads=2, **dec)
    raise ValueError(arch)


def build_modern(arch: str, folder: Path, seed: int = 0) -> Path:
    """Save a tiny random model of one of :data:`MODERN_ARCHS` into ``folder/arch``."""
    import torch
    from transformers import AutoModelForCausalLM

    tok = build_tokenizer()
    torch.manual_seed(seed)
    cfg = modern_config(arch, len(tok))
    model = AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln" in name:
                # random init leaves norms at 1 (or 0 for offset norms): perturb to expose bugs
                p.add_(0.2 * torch.randn_like(p))
            elif "bias" in name:
                p.add_(0.1 * torch.randn_like(p))
    out = Path(folder) / arch
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
