"""Corpora: a text file (.txt one document a line, .jsonl with ``text``), pasted texts, or toy docs.

Files are streamed line by line (a 2 GB file is never read whole) and can be iterated again
(mean ablation reads the corpus twice). Every problem names the file and the line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patchlab.core.errors import InputError


@dataclass(frozen=True)
class Doc:
    """One document: its text, its number in the corpus and its line in the file (1-based)."""

    index: int
    text: str
    line: int = 0
    toy: Any = None  # the toy generator's Document (tokens and rule targets), when sampled


@dataclass(frozen=True)
class Corpus:
    """A frozen description of where documents come from; iterate it to stream :class:`Doc`.

    Build with :func:`as_corpus`. ``size`` is the work total for progress: bytes for files,
    documents otherwise (``size_unit`` says which).
    """

    kind: str  # "file" | "texts" | "toy"
    path: Path | None = None
    texts: tuple[str, ...] = ()
    toy_docs: tuple[Any, ...] = field(default=(), repr=False)
    max_docs: int | None = None

    @property
    def size_unit(self) -> str:
        return "bytes" if self.kind == "file" else "docs"

    @property
    def size(self) -> int:
        if self.kind == "file":
            return int(self.path.stat().st_size) if self.path else 0
        n = len(self.texts) if self.kind == "texts" else len(self.toy_docs)
        return min(n, self.max_docs) if self.max_docs else n

    def describe(self) -> str:
        if self.kind == "file":
            return f"file {self.path}"
        if self.kind == "toy":
            return f"{len(self.toy_docs)} sampled toy documents"
        return f"{len(self.texts)} pasted text(s)"

    def __iter__(self) -> Iterator[Doc]:
        return self.iter_docs()[0]

    def iter_docs(self) -> tuple[Iterator[Doc], list[int]]:
        """A fresh iterator of documents and a one-element list it keeps at the work done."""
        done = [0]
        if self.kind == "file":
            return self._file_docs(done), done
        return self._mem_docs(done), done

    def _mem_docs(self, done: list[int]) -> Iterator[Doc]:
        items = self.texts if self.kind == "texts" else self.toy_docs
        for i, item in enumerate(items):
            if self.max_docs is not None and i >= self.max_docs:
                return
            done[0] = i + 1
            if self.kind == "toy":
                yield Doc(i, item.text, 0, item)
            else:
                yield Doc(i, item, 0)

    def _file_docs(self, done: list[int]) -> Iterator[Doc]:
        path = self.path
        assert path is not None
        jsonl = path.suffix.lower() == ".jsonl"
        n = 0
        with open(path, "rb") as fh:
            for line_no, raw in enumerate(fh, 1):
                done[0] += len(raw)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InputError(
                        f"{path}, line {line_no}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at "
                        f"column {exc.start + 1}). Save the file as UTF-8 or remove that line."
                    ) from None
                if line_no == 1 and line.startswith("\ufeff"):
                    line = line[1:]
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                if jsonl:
                    text = _jsonl_text(path, line_no, line)
                    if not text.strip():
                        continue
                else:
                    text = line
                yield Doc(n, text, line_no)
                n += 1
                if self.max_docs is not None and n >= self.max_docs:
                    return


def _jsonl_text(path: Path, line_no: int, line: str) -> str:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}, line {line_no}: not valid JSON ({exc.msg}). Each line of a "
                         ".jsonl corpus must be an object with a \"text\" field.") from None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise InputError(f"{path}, line {line_no}: expected an object with a string \"text\" field.")
    return data["text"]


def toy_corpus(n: int, seed: int = 0, length: int = 64) -> Corpus:
    """``n`` documents sampled from the toy language (for the embedded models)."""
    from patchlab.toy.language import sample_documents

    if n < 1:
        raise InputError("Sample at least one toy document.")
    return Corpus("toy", toy_docs=tuple(sample_documents(seed, n, length)))


def as_corpus(source: Any, *, max_docs: int | None = None) -> Corpus:
    """Turn what the user gave into a :class:`Corpus`.

    Parameters
    ----------
    source : Corpus, str, path or sequence of str
        A :class:`Corpus`; a path to a ``.txt`` (one document per line) or ``.jsonl`` (objects
        with ``text``) file; a single pasted text; or a list of texts.
    max_docs : int, optional
        Read at most this many documents.
    """
    if max_docs is not None and max_docs < 1:
        raise InputError("max_docs must be at least 1.")
    if isinstance(source, Corpus):
        return source if max_docs is None else Corpus(source.kind, source.path, source.texts,
                                                      source.toy_docs, max_docs)
    if isinstance(source, os.PathLike) or (isinstance(source, str) and _looks_like_path(source)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise InputError(f"The corpus file {path} does not exist.")
        if path.suffix.lower() not in (".txt", ".jsonl", ".text", ".md"):
            raise InputError(f"{path}: use a .txt file (one document per line) or a .jsonl file "
                             "with a \"text\" field per line.")
        return Corpus("file", path=path, max_docs=max_docs)
    if isinstance(source, str):
        source = [source]
    if isinstance(source, Sequence) and all(isinstance(t, str) for t in source):
        texts = tuple(t for t in source if t.strip())
        if not texts:
            raise InputError("The corpus is empty: give at least one non-empty text.")
        return Corpus("texts", texts=texts, max_docs=max_docs)
    if isinstance(source, Sequence) and source and all(hasattr(d, "tokens") and hasattr(d, "text") for d in source):
        return Corpus("toy", toy_docs=tuple(source), max_docs=max_docs)
    raise InputError("Give the corpus as a file path, a text, a list of texts or a Corpus.")


def _looks_like_path(s: str) -> bool:
    return "\n" not in s and len(s) < 4096 and s.lower().endswith((".txt", ".jsonl", ".text", ".md"))
