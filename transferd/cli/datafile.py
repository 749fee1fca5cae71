"""Reading the CLI's data files: JSON Lines or CSV with a header, one example per row.

Columns: `text` or `image` (a path relative to the file), and for training one of `label`,
`labels` (a JSON list in JSON Lines, `|`-separated in CSV) or `value`. Every problem is found
before anything is sent, and reported with its line number.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferd.client import Example

INPUT_COLUMNS = ("text", "image")
TARGET_COLUMNS = ("label", "labels", "value")
MAX_REPORTED_PROBLEMS = 20
CSV_LABELS_SEPARATOR = "|"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a data file: its line (0: the file as a whole) and what."""

    line: int
    message: str


class DataFileError(Exception):
    """A data file that cannot be used, with every problem found (up to a limit)."""

    def __init__(self, path: Path, problems: list[Problem], more: int = 0) -> None:
        self.path = path
        self.problems = problems
        self.more = more
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """One `FILE:LINE: problem` per problem, compiler style (editors jump to them)."""
        out = [
            f"{self.path}:{p.line}: {p.message}" if p.line else f"{self.path}: {p.message}"
            for p in self.problems
        ]
        if self.more:
            out.append(f"{self.path}: ... and {self.more} more problems")
        return out


@dataclass(frozen=True)
class DataFile:
    """A read data file: its examples in row order, and the line each came from."""

    path: Path
    examples: list[Example]
    lines: list[int]

    def locate(self, message: str) -> str:
        """The server's message, with the file and line of the example it names (it counts
        examples from 0: `examples[7].input.image: ...`) so that the row is easy to find."""
        found = _EXAMPLE_INDEX.search(message)
        if found is None or int(found.group(1)) >= len(self.lines):
            return message
        return f"{message} ({self.path}:{self.lines[int(found.group(1))]})"


_EXAMPLE_INDEX = re.compile(r"\bexamples\[(\d+)\]")


def read_examples(path: Path, targets: bool) -> DataFile:
    """Every row of `path` as an Example, with its target when `targets` is true.

    Raises:
        DataFileError: The file is missing, empty, unreadable, or any row is bad.
    """
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataFileError(path, [Problem(0, f"cannot read it: {error.strerror}")]) from None
    try:
        text = raw.decode("utf-8-sig")  # a BOM (spreadsheets write one) is not data
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataFileError(path, [Problem(line, "is not UTF-8 text")]) from None
    from_csv = not _is_jsonl(path, text)
    reader = _RowReader(path, targets, from_csv)
    records = _csv_records(text, reader) if from_csv else _jsonl_records(text)
    rows = [(line, example) for line, record in records if (example := reader.row(line, record))]
    if not rows and not reader.problems:
        reader.problems.append(Problem(0, "holds no examples"))
    if reader.problems:
        shown = reader.problems[:MAX_REPORTED_PROBLEMS]
        raise DataFileError(path, shown, more=len(reader.problems) - len(shown))
    return DataFile(path, [example for _, example in rows], [line for line, _ in rows])


def _is_jsonl(path: Path, text: str) -> bool:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return True
    if suffix in (".csv", ".txt"):
        return False
    return text.lstrip().startswith("{")  # no telling suffix: sniff the first row


def _jsonl_records(text: str) -> list[tuple[int, Any]]:
    """(line, parsed value or the JSON error) per non-blank line."""
    records: list[tuple[int, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except ValueError as error:
            records.append((number, _Unreadable(f"not JSON: {error}")))
    return records


@dataclass(frozen=True)
class _Unreadable:
    reason: str


def _csv_records(text: str, reader: _RowReader) -> list[tuple[int, Any]]:
    """(line where the record starts, {column: cell}) per CSV record after the header."""
    table = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(table, None)
    except csv.Error as error:
        reader.problems.append(Problem(1, f"bad CSV header: {error}"))
        return []
    if header is None:
        return []
    header = [name.strip() for name in header]
    if not reader.header_ok(header):
        return []
    records: list[tuple[int, Any]] = []
    start = table.line_num + 1
    while True:
        try:
            cells = next(table)
        except StopIteration:
            break
        except csv.Error as error:
            reader.problems.append(Problem(start, f"bad CSV: {error}"))
            break
        if any(cell.strip() for cell in cells):
            if len(cells) != len(header):
                records.append(
                    (start, _Unreadable(f"{len(cells)} cells for {len(header)} columns"))
                )
            else:
                records.append((start, dict(zip(header, cells, strict=True))))
        start = table.line_num + 1
    return records


class _RowReader:
    """Turns records into examples, collecting problems instead of stopping at the first."""

    def __init__(self, path: Path, targets: bool, from_csv: bool) -> None:
        self.folder = path.parent
        self.targets = targets
        self.from_csv = from_csv  # every cell is a string there
        self.problems: list[Problem] = []

    def header_ok(self, header: list[str]) -> bool:
        inputs = [c for c in INPUT_COLUMNS if c in header]
        found = [c for c in TARGET_COLUMNS if c in header]
        if len(inputs) != 1:
            self.problems.append(Problem(1, "the header needs exactly one of: text, image"))
        if self.targets and len(found) != 1:
            self.problems.append(
                Problem(1, "the header needs exactly one of: label, labels, value")
            )
        return not self.problems

    def row(self, line: int, record: Any) -> Example | None:
        try:
            return self._example(record)
        except _BadRow as bad:
            self.problems.append(Problem(line, str(bad)))
            return None

    def _example(self, record: Any) -> Example:
        if isinstance(record, _Unreadable):
            raise _BadRow(record.reason)
        if not isinstance(record, dict):
            raise _BadRow("is not a JSON object")
        inputs = _one_of(record, INPUT_COLUMNS)
        text = image = None
        if inputs == "text":
            text = _string(record["text"], "text")
        else:
            image = self._image(_string(record["image"], "image"))
        if not self.targets:
            return Example(text=text, image=image)
        target = _one_of(record, TARGET_COLUMNS)
        value = record[target]
        if target == "label":
            return Example(text=text, image=image, label=_label(value))
        if target == "labels":
            return Example(text=text, image=image, labels=_labels(value, self.from_csv))
        return Example(text=text, image=image, value=_number(value))

    def _image(self, relative: str) -> bytes:
        path = self.folder / relative
        try:
            return path.read_bytes()
        except OSError as error:
            raise _BadRow(f"image {relative}: {error.strerror}") from None


class _BadRow(Exception):
    pass


def _one_of(record: dict[str, Any], columns: tuple[str, ...]) -> str:
    """The one column of `columns` that the record fills."""
    present = [c for c in columns if c in record]
    filled = [c for c in present if record[c] not in (None, "")]
    if len(filled) == 1:
        return filled[0]
    if len(present) == 1:  # a CSV row, or a JSON object with the key left blank
        raise _BadRow(f"{present[0]} is empty")
    raise _BadRow(f"needs exactly one of: {', '.join(columns)}")


def _string(value: Any, column: str) -> str:
    if not isinstance(value, str):
        raise _BadRow(f"{column} must be a string, got {json.dumps(value)}")
    return value


def _label(value: Any) -> str:
    # Whole numbers are common class ids in JSON ("label": 3); they become the label "3".
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    raise _BadRow(f"label must be a non-empty string, got {json.dumps(value)}")


def _labels(value: Any, from_csv: bool) -> list[str]:
    if from_csv:
        value = [part.strip() for part in value.split(CSV_LABELS_SEPARATOR) if part.strip()]
    if not isinstance(value, list) or not value:
        raise _BadRow(f"labels must be a non-empty list of strings, got {json.dumps(value)}")
    return [_label(item) for item in value]


def _number(value: Any) -> float:
    if isinstance(value, str):  # CSV cells are text
        try:
            value = float(value)
        except ValueError:
            raise _BadRow(f"value must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _BadRow(f"value must be a finite number, got {json.dumps(value)}")
    return float(value)
