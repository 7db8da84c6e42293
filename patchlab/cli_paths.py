"""``patchlab paths`` (path patching, or total/direct/indirect effects) and ``patchlab neurons``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from patchlab.core.errors import InputError
from patchlab.core.metrics import DIRECTIONS, METRICS

RECEIVER_CHOICES = ("q", "k", "v", "mlp", "logits")


def add_parsers(sub: Any) -> None:
    """Register the two subcommands on ``patchlab``'s subparsers."""
    from patchlab.cli import _model_args, _pair_args

    pa = sub.add_parser(
        "paths", help="path patching from a head or MLP into later q/k/v/MLP inputs or the logits; or --effects",
        description="Path patching (TransformerLens's direct path): the sender's source-minus-base write reaches "
                    "only the receivers' own inputs. With --effects: total, direct and indirect effect of every component.")
    _model_args(pa)
    _pair_args(pa)
    pa.add_argument("--sender", "-s", default="L0H3",
                    help="a head 'L0H3', an MLP 'MLP1', or 'heads' for every head (default L0H3)")
    pa.add_argument("--receiver", "-r", default="k", choices=RECEIVER_CHOICES,
                    help="q, k, v (later heads' inputs), mlp (later MLPs' inputs) or logits (direct path); default k")
    pa.add_argument("--effects", choices=["heads", "mlps", "all"], default=None,
                    help="instead: total / direct / indirect effect of these components")
    pa.add_argument("--freeze-ln", action="store_true", help="direct paths with the base run's final-norm scale")
    pa.add_argument("--direction", default="denoise", choices=list(DIRECTIONS))
    pa.add_argument("--metric", default="logit_diff_recovered", choices=list(METRICS))
    pa.add_argument("--out", "-o", type=Path, help="folder for paths.csv/json (or effects.csv/json)")

    ne = sub.add_parser(
        "neurons", help="screen one MLP layer's neurons: estimate all, patch the top k exactly, DLA, output tokens")
    _model_args(ne)
    _pair_args(ne)
    ne.add_argument("--layer", "-l", type=int, default=0, help="MLP layer (default 0)")
    ne.add_argument("--k", type=int, default=50, help="neurons to patch exactly (default 50)")
    ne.add_argument("--tokens", type=int, default=5, help="output tokens listed per top neuron (default 5)")
    ne.add_argument("--show", type=int, default=10, help="neurons printed (default 10)")
    ne.add_argument("--direction", default="denoise", choices=list(DIRECTIONS))
    ne.add_argument("--metric", default="logit_diff_recovered", choices=list(METRICS))
    ne.add_argument("--out", "-o", type=Path, help="folder for neurons.csv and neurons.json")


def _runs_line(meta: dict) -> None:
    for run in ("clean", "corrupted"):
        r = meta["runs"][run]
        print(f"  {run:9s} logit diff {r['logit_diff']:+.3f}  P(answer) {r['answer_prob']:.3f}  P(wrong) {r['wrong_prob']:.3f}")


def cmd_paths(args) -> int:
    from patchlab.cli import _check_pair_args, _load, _out_dir, _pairs, _write

    _check_pair_args(args)
    out = _out_dir(args.out)
    model = _load(args)
    pairs = _pairs(args, model)
    head = f"({args.direction}: {DIRECTIONS[args.direction]}), metric {args.metric}, {len(pairs)} pair(s)"
    if args.effects:
        from patchlab.engine.effects import effects

        res = effects(model, pairs, components=args.effects, metric=args.metric, direction=args.direction,
                      freeze_ln=args.freeze_ln)
        print(f"effects of {args.effects} {head}, {res.meta['elapsed_s']:.2f}s")
        _runs_line(res.meta)
        print(f"  {'component':10s} {'total':>9s} {'direct':>9s} {'indirect':>9s}")
        for j, lab in enumerate(res.labels["component"]):
            t, d, i = res.values[:, j]
            print(f"  {lab:10s} {t:+9.4f} {d:+9.4f} {i:+9.4f}")
        _write(res, out, "effects")
        return 0
    from patchlab.engine.paths import path_patch

    res = path_patch(model, pairs, args.sender, args.receiver, metric=args.metric, direction=args.direction,
                     freeze_ln=args.freeze_ln)
    print(f"{res.meta['target_label']} {head}, {res.meta['elapsed_s']:.2f}s")
    _runs_line(res.meta)
    if res.axes == ("layer", "head"):
        print("  " + " " * 8 + "".join(f"{h:>9s}" for h in res.labels["head"]))
        for layer in range(len(res.labels["layer"])):
            row = "".join(f"{v:+9.4f}" if np.isfinite(v) else f"{'-':>9s}" for v in res.values[layer])
            print(f"  {'L' + str(layer):8s}{row}")
    else:
        for index, value in res.top_cells(10, absolute=True):
            print(f"    {', '.join(res.labels[a][i] for a, i in zip(res.axes, index))}: {value:+.4f}")
    if np.isnan(res.values).any():
        print(f"  ({res.meta['nan_reason']})")
    _write(res, out, "paths")
    return 0


def cmd_neurons(args) -> int:
    from patchlab.cli import _check_pair_args, _load, _out_dir, _pairs, _write

    if args.k < 0 or args.tokens < 0 or args.show < 0:
        raise InputError("--k, --tokens and --show must be 0 or more.")
    _check_pair_args(args)
    out = _out_dir(args.out)
    model = _load(args)
    pairs = _pairs(args, model)
    from patchlab.engine.neurons import neurons

    res = neurons(model, pairs, args.layer, k=args.k, metric=args.metric, direction=args.direction,
                  n_tokens=args.tokens)
    m = res.meta
    print(f"MLP {res.layer}: {res.d_mlp} neurons, exact top {m['k']} ({args.direction}), metric {args.metric}, "
          f"{len(pairs)} pair(s), {m['elapsed_s']:.2f}s; unpatched {m['unpatched']:+.4f}")
    _runs_line(m)
    print(f"  {'neuron':8s} {'estimate':>9s} {'exact':>9s} {'DLA':>8s}  promoted / suppressed tokens")
    for n in res.top[: args.show]:
        toks = res.tokens.get(str(n), {})
        up = " ".join(t.strip() or repr(t) for t, _ in toks.get("promoted", []))
        down = " ".join(t.strip() or repr(t) for t, _ in toks.get("suppressed", []))
        print(f"  {res.label(n):8s} {res.estimate[n]:+9.4f} {res.exact[n]:+9.4f} {res.dla[n]:+8.3f}  {up} / {down}")
    _write(res, out, "neurons")
    return 0


COMMANDS = {"paths": cmd_paths, "neurons": cmd_neurons}
