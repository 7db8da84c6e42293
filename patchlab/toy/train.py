"""Train the embedded toy models deterministically on CPU.

Usage::

    python -m patchlab.toy.train --out resources/models [--steps N] [--only toy-attn2]

Seeded, one CPU thread (deterministic, and leaves the other core free). Each model folder gets
``model.safetensors``, ``config.json``, the tokenizer files and a ``card.json`` whose numbers are
measured by :mod:`patchlab.toy.evaluate` on freshly sampled held-out text.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from patchlab.toy.io import CARD, save_model
from patchlab.toy.language import sample_documents, vocabulary
from patchlab.toy.specs import DATA_SEED, EVAL_SEED, SEQ_LEN, SPECS, full_config

REPEAT_FRACTION = 0.4  # share of extra training documents that are a repeated filler run


def repeat_documents(seed: int, n: int, length: int = SEQ_LEN) -> np.ndarray:
    """Token ids of ``n`` induction warm-up documents: ``<bos> R R F`` with ``R`` a run of
    5-31 distinct random fillers and ``F`` fresh fillers up to ``length``."""
    from patchlab.toy.language import FILLERS

    ids = {w: i for i, w in enumerate(vocabulary())}
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        h = int(rng.integers(5, (length - 1) // 2 + 1))
        run = [ids[f] for f in rng.choice(FILLERS, size=length - 1 - h, replace=False)]
        rows.append([ids["<bos>"], *run[:h], *run[:h], *run[h:]][:length])
    return np.array(rows, dtype=np.int64)


def encode(docs) -> np.ndarray:
    """Token ids ``[n_docs, seq]`` of sampled documents."""
    ids = {w: i for i, w in enumerate(vocabulary())}
    return np.array([[ids[t] for t in d.tokens] for d in docs], dtype=np.int64)


@torch.no_grad()
def _induction_acc(model) -> float:
    from patchlab.toy.evaluate import repeated_random_tokens

    toks = repeated_random_tokens(0, n=10, half=20)
    was = model.training
    model.eval()
    hit = (model(toks)[:, 21:-1].argmax(-1) == toks[:, 22:]).float().mean().item()
    model.train(was)
    return hit


def train_model(
    name: str, data: np.ndarray, steps: int, *, repeats: np.ndarray | None = None, log=print
) -> tuple[torch.nn.Module, dict]:
    """Train model ``name`` on token array ``data`` for ``steps`` steps.

    When the spec has ``induction_warmup`` and ``repeats`` is given, the first
    ``min(induction_warmup, steps // 2)`` steps draw batches from ``repeats`` only.

    Parameters
    ----------
    name : str
        A key of :data:`SPECS`.
    data : numpy.ndarray
        Token ids ``[n_docs, seq]``, each row starting with ``<bos>``.
    steps : int
        Optimiser steps (AdamW, linear warm-up then cosine decay).
    log : callable
        Receives progress lines.

    Returns
    -------
    (model, info)
        The trained ``NativeModel`` (eval mode) and a dict with losses and seconds.
    """
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge.sources.native import NativeModel, initialize_native_model

    spec = SPECS[name]
    cfg = TransformerBridgeConfig.from_dict(full_config(name))
    torch.manual_seed(spec["seed"])
    model = NativeModel(cfg)
    initialize_native_model(model, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.01,
                            betas=(0.9, 0.98))
    warm = max(1, min(100, steps // 10))

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + np.cos(np.pi * (step - warm) / max(1, steps - warm))) * 0.95 + 0.05

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(spec["seed"])
    tokens = torch.from_numpy(data)
    warmup = 0
    if repeats is not None and spec.get("induction_warmup"):
        warmup = min(int(spec["induction_warmup"]), steps // 2)
        rep_tokens = torch.from_numpy(repeats)
    t0 = time.perf_counter()
    losses = []
    model.train()
    for step in range(steps):
        source = rep_tokens if step < warmup else tokens
        idx = torch.randint(0, source.shape[0], (spec["batch"],), generator=gen)
        batch = source[idx]
        logits = model(batch)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 250 == 0 or step == steps - 1:
            log(f"{name} step {step:5d} loss {np.mean(losses[-50:]):.4f} "
                f"induction acc {_induction_acc(model):.2f}")
    model.eval()
    info = {
        "steps": steps, "batch_size": spec["batch"], "lr": spec["lr"], "optimizer": "AdamW",
        "induction_warmup_steps": warmup,
        "final_train_loss": round(float(np.mean(losses[-100:])), 4),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    return model, info


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: train, save and evaluate the toy models."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("resources/models"))
    parser.add_argument("--steps", type=int, default=None, help="override steps for every model")
    parser.add_argument("--only", action="append", help="train only these models")
    parser.add_argument("--docs", type=int, default=20000, help="training documents")
    parser.add_argument("--eval-docs", type=int, default=2000, help="held-out documents")
    args = parser.parse_args(argv)

    from patchlab.toy.evaluate import make_card

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    t0 = time.perf_counter()
    docs = sample_documents(DATA_SEED, args.docs, SEQ_LEN)
    repeats = repeat_documents(DATA_SEED + 1, int(len(docs) * REPEAT_FRACTION / (1 - REPEAT_FRACTION)))
    data = np.concatenate([encode(docs), repeats])
    print(f"sampled {len(docs)} training documents in {time.perf_counter() - t0:.1f}s")
    heldout = sample_documents(EVAL_SEED, args.eval_docs, SEQ_LEN)
    for name in args.only or list(SPECS):
        steps = args.steps if args.steps is not None else SPECS[name]["steps"]
        model, info = train_model(name, data, steps, repeats=repeats)
        info.update(documents=len(docs), repeat_documents=len(data) - len(docs),
                    seq_len=SEQ_LEN, data_seed=DATA_SEED,
                    tokens_seen=steps * SPECS[name]["batch"] * SEQ_LEN)
        out = args.out / name
        save_model(model, full_config(name), out)
        card = make_card(name, SPECS[name]["description"], out, info, heldout)
        (out / CARD).write_text(json.dumps(card, indent=2) + "\n")
        print(f"{name}: saved to {out} ({info['train_seconds']}s)")
    print(f"total {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
