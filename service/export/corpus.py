"""Real English text of varied length, available offline: the docstrings of Python's standard library.

Every paragraph of every public docstring of a fixed list of modules, deduplicated, in a fixed
order: from one-line sentences to long paragraphs, the same on every machine with the same Python.
"""

from __future__ import annotations

import importlib
import inspect

MODULES = (
    "argparse", "asyncio", "collections", "csv", "datetime", "decimal", "email", "fractions",
    "functools", "http.client", "http.server", "inspect", "itertools", "json", "logging",
    "os", "pathlib", "random", "re", "shutil", "socket", "sqlite3", "statistics", "string",
    "subprocess", "tarfile", "textwrap", "threading", "unittest", "urllib.parse", "uuid", "zipfile",
)  # fmt: skip


def _docstrings() -> list[tuple[str, str]]:
    """(docstring, module name) pairs."""
    docs: list[tuple[str, str]] = []
    for name in MODULES:
        module = importlib.import_module(name)
        docs.append((inspect.getdoc(module) or "", name))
        for member_name, member in sorted(vars(module).items()):
            if not member_name.startswith("_"):
                docs.append((inspect.getdoc(member) or "", name))
    return docs


def labelled_texts(count: int, min_chars: int = 20) -> list[tuple[str, str]]:
    """`count` distinct paragraphs of real prose, each with the module it documents as its label
    (code samples and tables left out)."""
    pairs = all_labelled_texts(min_chars)
    if len(pairs) < count:
        raise ValueError(f"only {len(pairs)} texts available, {count} asked")
    # A fixed stride rather than the first `count`: modules differ in style and length.
    step = len(pairs) / count
    return [pairs[int(i * step)] for i in range(count)]


def all_labelled_texts(min_chars: int = 20) -> list[tuple[str, str]]:
    """Every distinct paragraph, with its module, in a fixed order (about 2,000; a few more or
    fewer as the modules' namespaces hold more or fewer public names)."""
    seen: dict[str, str] = {}
    for doc, module in _docstrings():
        for paragraph in doc.split("\n\n"):
            text = " ".join(paragraph.split())
            if len(text) < min_chars or text.startswith((">>>", "...", "|", "+")):
                continue
            seen.setdefault(text, module)
    return list(seen.items())


def real_texts(count: int, min_chars: int = 20) -> list[str]:
    """`count` distinct paragraphs of real prose."""
    return [text for text, _ in labelled_texts(count, min_chars)]
