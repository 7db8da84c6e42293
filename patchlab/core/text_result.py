"""Results of analyses over text: one value per token, shown as coloured text.

:class:`TokenScores` holds documents (token strings + one value per token) for per-token loss,
model comparison and token ablation; :class:`TopExamples` the top activating positions of a
neuron or head with their context. Both export CSV, a JSON run record and a standalone HTML page
(coloured spans, hover for the value); ablation over components is in
:mod:`patchlab.core.ablation_result`.
"""

from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from patchlab._version import __version__
from patchlab.core.errors import SessionFileError
from patchlab.core.io import atomic_write_text
from patchlab.core.result import RUN_FORMAT, RUN_FORMAT_VERSION, RunRecord, _nan_array, check_record


@dataclass
class DocScores:
    """One document: its tokens and one value per token (NaN where undefined).

    Attributes
    ----------
    tokens : list of str
        Token strings in order (``<bos>`` first when the model prepends one).
    values : ndarray (n_tokens,)
        The value at each token; for next-token quantities the value at ``tokens[i]`` is about
        predicting ``tokens[i]`` from the tokens before it (so the first is NaN).
    index : int
        Document number in the corpus (0-based).
    line : int
        Line of the document in its file (1-based; 0 when not from a file).
    windows : int
        How many context windows the document was split into (1 = it fitted).
    """

    tokens: list[str]
    values: np.ndarray
    index: int = 0
    line: int = 0
    windows: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "line": self.line, "windows": self.windows,
                "tokens": self.tokens, "values": self.values}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DocScores:
        return cls(tokens=list(d["tokens"]), values=_nan_array(d["values"]).reshape(-1),
                   index=int(d.get("index", 0)), line=int(d.get("line", 0)),
                   windows=int(d.get("windows", 1)))


@dataclass(frozen=True)
class TokenHit:
    """One token picked out of a corpus (e.g. by :meth:`TokenScores.top`), with context."""

    value: float
    doc: int
    pos: int
    token: str
    before: list[str]
    after: list[str]
    line: int = 0

    @property
    def context(self) -> str:
        """``before [token] after`` as one line of text."""
        return "".join(self.before) + "[" + self.token + "]" + "".join(self.after)


def _context(tokens: list[str], pos: int, width: int) -> tuple[list[str], list[str]]:
    return tokens[max(0, pos - width):pos], tokens[pos + 1:pos + 1 + width]


def _cell(v: float) -> str:
    return repr(float(v)) if math.isfinite(v) else ""


@dataclass
class TokenScores(RunRecord):
    """Per-token values over a corpus (loss, model difference, effect of ablating a token).

    Attributes
    ----------
    docs : list of DocScores
    meta : dict
        ``kind`` (``token_losses``, ``compare_models``, ``token_ablation``), ``value_label``
        (what a value means, for axis titles and hover text), model(s), processing, corpus
        description, ``n_docs``, ``n_tokens``, ``split_docs`` (documents longer than the
        context, split into windows), ``complete``, elapsed time.
    """

    docs: list[DocScores]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", "token_scores"))

    @property
    def value_label(self) -> str:
        return str(self.meta.get("value_label", "value"))

    def all_values(self) -> np.ndarray:
        """Every finite value of every document, concatenated."""
        if not self.docs:
            return np.zeros(0)
        v = np.concatenate([d.values for d in self.docs])
        return v[np.isfinite(v)]

    def mean(self) -> float:
        v = self.all_values()
        return float(v.mean()) if v.size else math.nan

    def top(self, k: int = 50, *, largest: bool = True, width: int = 8) -> list[TokenHit]:
        """The ``k`` tokens with the largest (or smallest) value, each with ``width`` tokens of
        context on either side; ties keep corpus order."""
        flat = [(d_i, p) for d_i, d in enumerate(self.docs) for p in range(len(d.values))]
        if not flat:
            return []
        vals = np.concatenate([d.values for d in self.docs]).astype(float)
        key = np.where(np.isfinite(vals), vals if largest else -vals, -np.inf)
        order = np.argsort(-key, kind="stable")[:k]
        hits = []
        for j in order:
            if not np.isfinite(key[j]):
                break
            d_i, p = flat[j]
            doc = self.docs[d_i]
            before, after = _context(doc.tokens, p, width)
            hits.append(TokenHit(float(vals[j]), doc.index, p, doc.tokens[p], before, after, doc.line))
        return hits

    def histogram(self, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, edges)`` of all finite values (``numpy.histogram``)."""
        v = self.all_values()
        if v.size == 0:
            return np.zeros(bins, dtype=int), np.linspace(0.0, 1.0, bins + 1)
        return np.histogram(v, bins=bins)

    # -- exports ------------------------------------------------------------------------
    def to_csv(self) -> str:
        """Tidy CSV: ``doc, line, pos, token, <value_label>``, one row per token."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["doc", "line", "pos", "token", self.value_label])
        for d in self.docs:
            for p, (t, v) in enumerate(zip(d.tokens, d.values)):
                w.writerow([d.index, d.line, p, t, _cell(v)])
        return out.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION,
                "patchlab_version": __version__, "kind": "token_scores",
                "docs": [d.to_dict() for d in self.docs], "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenScores:
        check_record(data, "token_scores")
        try:
            return cls(docs=[DocScores.from_dict(d) for d in data["docs"]], meta=dict(data.get("meta", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionFileError(f"The run record is malformed ({exc}).") from exc

    def to_html(self, title: str | None = None, max_docs: int = 500) -> str:
        """A standalone HTML page: each token a coloured span, hover for its value."""
        return html_page(title or f"patchlab {self.kind}", self.meta,
                         [(f"document {d.index}" + (f" (line {d.line})" if d.line else ""), d.tokens, d.values)
                          for d in self.docs[:max_docs]], self.value_label)

    def save_html(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_html())


@dataclass
class TopExample:
    """One top activating position: the value, where it is, and the context with its values."""

    value: float
    doc: int
    pos: int
    tokens: list[str]  # context tokens
    values: np.ndarray  # the activation at each context token
    focus: int  # index of the example's token inside ``tokens``
    line: int = 0

    @property
    def token(self) -> str:
        return self.tokens[self.focus]


@dataclass
class TopExamples(RunRecord):
    """The top activating positions of one neuron or head over a corpus (largest first).

    ``meta`` names the ``unit`` (``L0N12`` or ``L1H3``), what the value is (``value_label``),
    the model, the corpus and how many positions were scanned (``n_tokens``).
    """

    examples: list[TopExample]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def value_label(self) -> str:
        return str(self.meta.get("value_label", "activation"))

    def to_csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["rank", "doc", "line", "pos", "token", self.value_label, "context"])
        for r, e in enumerate(self.examples, 1):
            ctx = "".join(e.tokens[:e.focus]) + "[" + e.token + "]" + "".join(e.tokens[e.focus + 1:])
            w.writerow([r, e.doc, e.line, e.pos, e.token, _cell(e.value), ctx])
        return out.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION,
                "patchlab_version": __version__, "kind": "top_examples",
                "examples": [{"value": e.value, "doc": e.doc, "pos": e.pos, "line": e.line,
                              "tokens": e.tokens, "values": e.values, "focus": e.focus}
                             for e in self.examples], "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TopExamples:
        check_record(data, "top_examples")
        try:
            ex = [TopExample(float(e["value"]), int(e["doc"]), int(e["pos"]), list(e["tokens"]),
                             _nan_array(e["values"]).reshape(-1), int(e["focus"]), int(e.get("line", 0)))
                  for e in data["examples"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionFileError(f"The run record is malformed ({exc}).") from exc
        return cls(ex, dict(data.get("meta", {})))

    def to_html(self, title: str | None = None) -> str:
        unit = self.meta.get("unit", "")
        return html_page(title or f"patchlab top examples {unit}", self.meta,
                         [(f"#{r} {e.value:+.4g} (doc {e.doc}, pos {e.pos})", e.tokens, e.values)
                          for r, e in enumerate(self.examples, 1)], self.value_label,
                         focus=[e.focus for e in self.examples])

    def save_html(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_html())


def span_colour(value: float, scale: float) -> str:
    """CSS background for a value: blue (negative) - white - red (positive), grey for NaN."""
    if not math.isfinite(value) or scale <= 0:
        return "#eeeeee" if not math.isfinite(value) else "#ffffff"
    x = max(-1.0, min(1.0, value / scale))
    fade = int(round(255 * (1 - abs(x))))
    return f"#ff{fade:02x}{fade:02x}" if x > 0 else f"#{fade:02x}{fade:02x}ff"


def html_page(title: str, meta: dict[str, Any], rows: list[tuple[str, list[str], np.ndarray]],
              value_label: str, focus: list[int] | None = None) -> str:
    """Render rows of (heading, tokens, values) as one standalone HTML page (no scripts)."""
    finite = [abs(v) for _, _, vals in rows for v in np.asarray(vals, float) if math.isfinite(v)]
    scale = float(np.percentile(finite, 99)) if finite else 1.0
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}"
        ".doc{font-family:monospace;line-height:1.9;margin-bottom:1.2em;white-space:pre-wrap}"
        ".t{border-radius:2px;padding:1px 0}.f{outline:2px solid #000}h2{font-size:1em;margin:0.4em 0}"
        "</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>Value: <b>{esc(value_label)}</b>. Colour scale: +-{scale:.4g} (blue negative, red positive, "
        "grey undefined). Hover over a token for its value.</p>",
        "<p>" + esc(", ".join(f"{k}: {v}" for k, v in meta.items() if isinstance(v, (str, int, float)))) + "</p>",
    ]
    for r, (head, tokens, values) in enumerate(rows):
        spans = []
        for i, (t, v) in enumerate(zip(tokens, np.asarray(values, float))):
            tip = f"{t!r} pos {i}: " + (f"{v:+.5g}" if math.isfinite(v) else "undefined")
            cls = "t f" if focus is not None and focus[r] == i else "t"
            spans.append(f"<span class='{cls}' style='background:{span_colour(v, scale)}' "
                         f"title='{esc(tip, quote=True)}'>{esc(t)}</span>")
        parts.append(f"<h2>{esc(head)}</h2><div class='doc'>{' '.join(spans) if _spaced(tokens) else ''.join(spans)}</div>")
    parts.append(f"<p><small>patchlab {__version__}</small></p></body></html>")
    return "\n".join(parts)


def _spaced(tokens: list[str]) -> bool:
    """Word-level tokens carry no spaces of their own: join them with spaces."""
    return bool(tokens) and not any(t[:1].isspace() or t.startswith(("Ġ", "▁")) for t in tokens[1:])
