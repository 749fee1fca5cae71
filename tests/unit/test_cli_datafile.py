"""The CLI's data files: JSON Lines and CSV rows become examples, and every bad row is named by
its line before anything is sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transferd.cli.datafile import MAX_REPORTED_PROBLEMS, DataFileError, read_examples
from transferd.client import Example


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_rows_of_every_target_kind(tmp_path: Path) -> None:
    (tmp_path / "cat.png").write_bytes(b"\x89PNG-bytes")
    rows = [
        {"text": "a goal", "label": "sports"},
        {"text": "class three", "label": 3},  # class ids become labels
        {"text": "two things", "labels": ["a", "b"], "id": 17},  # extra keys are ignored
        {"image": "cat.png", "value": 2.5},
    ]
    path = _write(tmp_path, "d.jsonl", "\n".join(json.dumps(r) for r in rows[:2]) + "\n\n"
                  + "\n".join(json.dumps(r) for r in rows[2:]))  # fmt: skip
    data = read_examples(path, targets=True)
    assert data.examples == [
        Example(text="a goal", label="sports"),
        Example(text="class three", label="3"),
        Example(text="two things", labels=["a", "b"]),
        Example(image=b"\x89PNG-bytes", value=2.5),
    ]
    assert data.lines == [1, 2, 4, 5]  # the blank line 3 is skipped, not renumbered


def test_csv_with_header_quotes_bom_and_separated_labels(tmp_path: Path) -> None:
    text = '\ufefftext,labels\n"first, with a comma",a|b\n"two\nlines",c\n plain , a | c \n'
    data = read_examples(_write(tmp_path, "d.csv", text), targets=True)
    assert [e.labels for e in data.examples] == [["a", "b"], ["c"], ["a", "c"]]
    assert data.examples[1].text == "two\nlines"
    assert data.lines == [2, 3, 5]  # a quoted line break moves the next row down


def test_csv_values_are_parsed_as_numbers(tmp_path: Path) -> None:
    data = read_examples(_write(tmp_path, "d.csv", "text,value\nx,1.5\ny,-2\n"), targets=True)
    assert [e.value for e in data.examples] == [1.5, -2.0]


def test_inputs_only_ignore_targets(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n')
    assert read_examples(path, targets=False).examples == [Example(text="a"), Example(text="b")]


def test_format_is_sniffed_without_a_telling_suffix(tmp_path: Path) -> None:
    jsonl = _write(tmp_path, "rows", '{"text": "a", "label": "x"}\n')
    csv = _write(tmp_path, "table", "text,label\na,x\n")
    assert read_examples(jsonl, True).examples == read_examples(csv, True).examples


def _problems(path: Path, targets: bool = True) -> list[str]:
    with pytest.raises(DataFileError) as caught:
        read_examples(path, targets)
    return caught.value.lines()


def test_every_bad_jsonl_row_is_reported_with_its_line(tmp_path: Path) -> None:
    text = "\n".join(
        [
            '{"text": "fine", "label": "x"}',
            '{"text": "no target"}',
            "not json",
            '{"text": 5, "label": "x"}',
            '{"image": "missing.png", "label": "x"}',
            '{"text": "t", "value": "high"}',
            "[1, 2]",
            '{"text": "both", "image": "a.png", "label": "x"}',
            '{"text": "t", "labels": []}',
            '{"text": "t", "label": true}',
            '{"text": "t", "value": NaN}',
        ]
    )
    path = _write(tmp_path, "bad.jsonl", text)
    lines = _problems(path)
    assert [line.split(":")[1] for line in lines] == [str(n) for n in range(2, 12)]
    assert all(line.startswith(f"{path}:") for line in lines)
    assert "label, labels, value" in lines[0] and "not JSON" in lines[1]
    assert "missing.png" in lines[3] and "text, image" in lines[6]


def test_every_bad_csv_row_is_reported_with_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.csv", "text,label\nok,a\nempty label,\n,no text\nx,y,z\n")
    assert _problems(path) == [
        f"{path}:3: label is empty",
        f"{path}:4: text is empty",
        f"{path}:5: 3 cells for 2 columns",
    ]


def test_a_csv_header_without_the_columns_is_refused(tmp_path: Path) -> None:
    assert _problems(_write(tmp_path, "h.csv", "sentence,label\na,b\n")) == [
        f"{tmp_path / 'h.csv'}:1: the header needs exactly one of: text, image"
    ]
    path = _write(tmp_path, "t.csv", "text,label,value\na,b,1\n")
    assert "label, labels, value" in _problems(path)[0]


def test_whole_file_problems(tmp_path: Path) -> None:
    assert _problems(tmp_path / "absent.jsonl") == [
        f"{tmp_path / 'absent.jsonl'}: cannot read it: No such file or directory"
    ]
    assert _problems(_write(tmp_path, "empty.jsonl", "\n\n")) == [
        f"{tmp_path / 'empty.jsonl'}: holds no examples"
    ]
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("text,label\ncaf\xe9,x\n".encode("latin-1"))
    assert _problems(latin1) == [f"{latin1}:2: is not UTF-8 text"]


def test_problems_are_capped(tmp_path: Path) -> None:
    path = _write(tmp_path, "many.jsonl", '{"text": "no target"}\n' * (MAX_REPORTED_PROBLEMS + 5))
    lines = _problems(path)
    assert len(lines) == MAX_REPORTED_PROBLEMS + 1 and lines[-1].endswith("and 5 more problems")


def test_server_messages_are_located_in_the_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"}\n'
    )
    data = read_examples(path, targets=True)
    assert data.locate("examples[1].input.text: too long") == (
        f"examples[1].input.text: too long ({path}:3)"
    )
    assert data.locate("examples[9].label: bad") == "examples[9].label: bad"  # not in the file
    assert data.locate("head: bad name") == "head: bad name"
