"""Pair sets on disk and on the clipboard: CSV, TSV, JSONL (and JSON arrays) of prompt pairs.

Columns (any order, case-insensitive header): ``clean, corrupted, answer, wrong`` and optionally
``name, group``. Files are read line by line (a 10,000-pair file never sits in memory twice) and
every error names the file, the line and what to change. Writes are atomic.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from patchlab.core.errors import PairError
from patchlab.core.io import atomic_write_text
from patchlab.core.pairs import PromptPair

REQUIRED = ("clean", "corrupted", "answer", "wrong")
OPTIONAL = ("name", "group")
COLUMNS = REQUIRED + OPTIONAL
#: File suffix -> format name.
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


class PairList(list):
    """A list of :class:`PromptPair` that remembers the file and line each pair came from.

    ``where(i)`` names pair ``i`` in messages ("pairs.csv, line 4 (pair 3)"); everything else
    is a plain list.
    """

    def __init__(self, pairs: Iterable[PromptPair] = (), source: str = "", lines: Sequence[int] = ()):
        super().__init__(pairs)
        self.source = source
        self.lines = list(lines)

    def where(self, i: int) -> str:
        if self.source and i < len(self.lines):
            return f"{self.source}, line {self.lines[i]} (pair {i + 1})"
        return f"Pair {i + 1}"


def _format_of(path: Path, first: bytes = b"") -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is not None:
        return fmt
    head = first.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith((b"{", b"[")):
        return "jsonl" if head.startswith(b"{") else "json"
    return "tsv" if b"\t" in first else "csv"


def _decoded_lines(fh, where: str) -> Iterator[str]:
    """Decode a binary file line by line; a bad byte names its line and offset."""
    offset = 0
    for n, raw in enumerate(fh, 1):
        if n == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a BOM from spreadsheet exports
            raw = raw[3:]
            offset += 3
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PairError(
                f"{where}, line {n}: not UTF-8 text (byte {offset + exc.start} of the file, "
                f"value 0x{raw[exc.start]:02x}). Save the file as UTF-8 (in a spreadsheet: "
                "'CSV UTF-8') and load it again."
            ) from None
        offset += len(raw)


def _header(cells: Sequence[str], where: str) -> dict[str, int]:
    names = [c.strip().lower() for c in cells]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        found = ", ".join(repr(c) for c in cells) or "none"
        raise PairError(
            f"{where}: no column {', '.join(repr(m) for m in missing)} in the header row (found "
            f"{found}). A pairs file needs the columns {', '.join(REQUIRED)} "
            f"(optional: {', '.join(OPTIONAL)}) in its first row."
        )
    return {c: names.index(c) for c in COLUMNS if c in names}


def _pair(values: dict, where: str) -> PromptPair:
    try:
        return PromptPair.from_dict(values).check()
    except PairError as exc:
        raise PairError(f"{where}: {exc}") from None


def _rows_to_pairs(rows: Iterable[tuple[int, list[str]]], where: str, header: dict[str, int] | None,
                   ) -> Iterator[tuple[int, PromptPair]]:
    """(line, pair) from numbered delimited rows; ``header`` None means the first row is the header."""
    for n, cells in rows:
        if not any(c.strip() for c in cells):
            continue
        if header is None:
            header = _header(cells, where)
            continue
        need = max(header[c] for c in REQUIRED) + 1
        if len(cells) < need:
            raise PairError(
                f"{where}, line {n}: {len(cells)} field(s), but the columns "
                f"{', '.join(REQUIRED)} need {need}. Check the separators on that line."
            )
        values = {c: cells[i] if i < len(cells) else "" for c, i in header.items()}
        yield n, _pair(values, f"{where}, line {n}")


def _json_object_pair(data, where: str) -> PromptPair:
    if isinstance(data, dict) and isinstance(data.get("pair"), dict):
        data = data["pair"]  # the built-in examples' layout
    if not isinstance(data, dict):
        raise PairError(f"{where}: expected an object with {', '.join(REQUIRED)}, got {type(data).__name__}.")
    missing = [c for c in REQUIRED if c not in data]
    if missing:
        raise PairError(f"{where}: no {', '.join(repr(m) for m in missing)} field "
                        f"(an object needs {', '.join(REQUIRED)}; optional {', '.join(OPTIONAL)}).")
    return _pair({c: data[c] for c in COLUMNS if c in data}, where)


def iter_pairs(path: str | Path) -> Iterator[PromptPair]:
    """Stream the pairs of a CSV/TSV/JSONL/JSON file; see :func:`load_pairs`."""
    for _, pair in iter_numbered_pairs(path):
        yield pair


def iter_numbered_pairs(path: str | Path) -> Iterator[tuple[int, PromptPair]]:
    """Stream ``(line, pair)`` from a pairs file (``line`` is 1-based; the item for .json)."""
    path = Path(path)
    where = str(path)
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise PairError(f"The pairs file {path} does not exist.") from None
    except OSError as exc:
        raise PairError(f"Cannot read the pairs file {path}: {exc.strerror or exc}.") from None
    with fh:
        first = fh.peek(256)[:256] if hasattr(fh, "peek") else b""
        if not first.strip(b"\xef\xbb\xbf \t\r\n"):
            raise PairError(f"The pairs file {path} is empty: add a header row "
                            f"({', '.join(REQUIRED)}) and one pair per line.")
        fmt = _format_of(path, first)
        lines = _decoded_lines(fh, where)
        if fmt == "json":
            text = "".join(lines)
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise PairError(f"{where}, line {exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno}).") from None
            if not isinstance(data, list):
                raise PairError(f"{where}: expected a list of pair objects (or one object per line, JSONL).")
            for i, item in enumerate(data, 1):
                yield i, _json_object_pair(item, f"{where}, item {i}")
        elif fmt == "jsonl":
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line.rstrip("\r\n"))
                except json.JSONDecodeError as exc:
                    raise PairError(
                        f"{where}, line {n}: not valid JSON ({exc.msg}, column {exc.colno}). "
                        "A JSONL file holds one complete object per line."
                    ) from None
                yield n, _json_object_pair(data, f"{where}, line {n}")
        else:
            reader = csv.reader(lines, delimiter="\t" if fmt == "tsv" else ",")
            try:
                yield from _rows_to_pairs(((reader.line_num, r) for r in reader), where, None)
            except csv.Error as exc:
                raise PairError(f"{where}, line {reader.line_num}: {exc}.") from None


def load_pairs(path: str | Path) -> PairList:
    """Read prompt pairs from a CSV, TSV, JSONL or JSON file.

    Parameters
    ----------
    path : str or Path
        ``.csv`` / ``.tsv`` with a header row naming the columns ``clean, corrupted, answer,
        wrong`` (optional ``name, group``), or ``.jsonl`` with one such object per line
        (``.json``: a list of them). Other suffixes are recognised from the content.

    Returns
    -------
    PairList
        A ``list`` of :class:`PromptPair` (each passed :meth:`PromptPair.check`) that also
        remembers each pair's line, so later errors (a multi-token answer) can name it.

    Raises
    ------
    PairError
        Missing file or column, bad encoding (line and byte), malformed JSON (line), a bad pair
        (line), or an empty file.
    """
    numbered = list(iter_numbered_pairs(path))
    pairs = PairList((p for _, p in numbered), source=Path(path).name, lines=[n for n, _ in numbered])
    if not pairs:
        raise PairError(f"The pairs file {path} holds no pairs: add one pair per line below the header.")
    return pairs


def parse_pairs_text(text: str) -> list[PromptPair]:
    """Pairs from pasted rows: tab-separated (spreadsheet copy) or CSV, with or without a header.

    Without a header the columns are ``clean, corrupted, answer, wrong[, name, group]``.
    Errors name the row.
    """
    if not text.strip():
        raise PairError("Nothing to paste: copy rows of clean, corrupted, answer, wrong.")
    lines = [ln for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if ln.strip()]
    delimiter = "\t" if any("\t" in ln for ln in lines) else ","
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
    rows = list(reader)
    first = [c.strip().lower() for c in rows[0]]
    has_header = "clean" in first and "corrupted" in first
    header = None if has_header else {c: i for i, c in enumerate(COLUMNS)}
    if header is not None and len(rows[0]) < len(REQUIRED):
        sep = "tabs" if delimiter == "\t" else "commas"
        raise PairError(f"Pasted row 1 has {len(rows[0])} field(s) separated by {sep}; each row needs "
                        f"{', '.join(REQUIRED)} (optional {', '.join(OPTIONAL)}), or a header row naming them.")
    pairs = [p for _, p in _rows_to_pairs(enumerate(rows, 1), "pasted text", header)]
    if not pairs:
        raise PairError("The pasted text has a header but no pairs.")
    return pairs


def save_pairs(pairs: Sequence[PromptPair], path: str | Path) -> Path:
    """Write pairs atomically; the format follows the suffix (``.csv``, ``.tsv``, ``.jsonl``, ``.json``)."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise PairError(f"Cannot tell the format of {path.name}: save pairs as .csv, .tsv or .jsonl.")
    with_opt = [c for c in OPTIONAL if any(getattr(p, c) for p in pairs)]
    if fmt in ("jsonl", "json"):
        objs = [json.dumps(p.to_dict(), ensure_ascii=False) for p in pairs]
        text = "\n".join(objs) + "\n" if fmt == "jsonl" else "[\n" + ",\n".join(objs) + "\n]\n"
    else:
        out = io.StringIO()
        writer = csv.writer(out, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
        writer.writerow([*REQUIRED, *with_opt])
        for p in pairs:
            writer.writerow([getattr(p, c) for c in (*REQUIRED, *with_opt)])
        text = out.getvalue()
    return atomic_write_text(path, text)


def group_by_length(pairs: Sequence[PromptPair], lengths: Sequence[int]) -> dict[int, list[PromptPair]]:
    """Split pairs by token length (``lengths[i]`` is pair ``i``'s), shortest first.

    Each group can run a by-position target on its own.
    """
    if len(pairs) != len(lengths):
        raise PairError(f"{len(pairs)} pairs but {len(lengths)} lengths.")
    groups: dict[int, list[PromptPair]] = {}
    for pair, n in zip(pairs, lengths):
        groups.setdefault(int(n), []).append(pair)
    return dict(sorted(groups.items()))


def mixed_length_message(target: str, lengths: Sequence[int], max_listed: int = 6) -> str:
    """The message for pairs of different token lengths on a target with a position axis."""
    by_len: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        by_len.setdefault(int(n), []).append(i + 1)
    common = max(by_len, key=lambda n: len(by_len[n]))
    parts = []
    for n, idx in sorted(by_len.items()):
        shown = ", ".join(map(str, idx[:max_listed])) + (f" and {len(idx) - max_listed} more" if len(idx) > max_listed else "")
        parts.append(f"{n} tokens: pair{'s' if len(idx) > 1 else ''} {shown}")
    return (
        f"The target {target!r} has a position axis, so every pair must have the same number of "
        f"tokens, but these differ ({'; '.join(parts)}). Group the pairs by length and run each "
        f"group on its own (patchlab.core.pairset.group_by_length; the largest group has "
        f"{len(by_len[common])} pairs of {common} tokens), or pick a target over all positions."
    )
