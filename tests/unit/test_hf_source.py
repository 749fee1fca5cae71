"""Hugging Face folders: family detection, option defaults and refusals, weight hashes (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.backbones.card import sha256_of_file
from service.export.hf_source import (
    HfExportError,
    check_name,
    inspect_folder,
    resolve_options,
    source_info,
)


def _folder(root: Path, config: dict, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(config))
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


BERT = {"model_type": "bert", "max_position_embeddings": 512, "hidden_size": 32}
TEXT_FILES = {"model.safetensors": "weights", "tokenizer.json": "{}"}


def test_families_and_their_defaults(tmp_path: Path) -> None:
    bert = inspect_folder(_folder(tmp_path / "bert", BERT, TEXT_FILES))
    assert (bert.modality, resolve_options(bert, None, None, None)) == (
        "text",
        resolve_options(bert, "mean", 512, True),
    )
    roberta_config = {"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}
    roberta = inspect_folder(_folder(tmp_path / "roberta", roberta_config, TEXT_FILES))
    assert resolve_options(roberta, None, None, None).max_sequence_length == 512
    # MPNet numbers positions like RoBERTa (from pad + 1): 514 embeddings allow 512 tokens.
    mpnet_config = {"model_type": "mpnet", "max_position_embeddings": 514, "pad_token_id": 1}
    mpnet = inspect_folder(_folder(tmp_path / "mpnet", mpnet_config, TEXT_FILES))
    assert (mpnet.modality, resolve_options(mpnet, None, None, None)) == (
        "text",
        resolve_options(mpnet, "mean", 512, True),
    )
    with pytest.raises(HfExportError, match="allows 1 to 512"):
        resolve_options(mpnet, None, 513, None)
    gpt2 = inspect_folder(
        _folder(tmp_path / "gpt2", {"model_type": "gpt2", "n_positions": 1024}, TEXT_FILES)
    )
    assert resolve_options(gpt2, None, None, False).pooling == "last"
    vision_files = {"model.safetensors": "w", "preprocessor_config.json": "{}"}
    vit = inspect_folder(_folder(tmp_path / "vit", {"model_type": "vit"}, vision_files))
    options = resolve_options(vit, None, None, None)
    assert (vit.modality, options.pooling, options.normalize) == ("image", "cls", False)
    resnet = inspect_folder(_folder(tmp_path / "resnet", {"model_type": "resnet"}, vision_files))
    assert resolve_options(resnet, None, None, None).pooling == "avg"


def test_a_sentence_transformers_folder_sets_pooling_and_length(tmp_path: Path) -> None:
    modules = [{"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"}]
    files = {
        **TEXT_FILES,
        "modules.json": json.dumps(modules),
        "1_Pooling/config.json": json.dumps({"pooling_mode_cls_token": True}),
        "sentence_bert_config.json": json.dumps({"max_seq_length": 128}),
        "tokenizer_config.json": json.dumps({"model_max_length": 10**30}),
    }
    folder = inspect_folder(_folder(tmp_path / "st", BERT, files))
    options = resolve_options(folder, None, None, None)
    assert (options.pooling, options.max_sequence_length) == ("cls", 128)
    assert resolve_options(folder, "mean", 64, None).pooling == "mean"  # flags win


@pytest.mark.parametrize(
    ("config", "files", "message"),
    [
        ({"model_type": "t5"}, TEXT_FILES, "unsupported model_type 't5'"),
        ({}, TEXT_FILES, "unsupported model_type None"),
        (BERT, {"tokenizer.json": "{}"}, "no weights in"),
        (BERT, {"model.safetensors": "w"}, "no tokenizer"),
        ({"model_type": "vit"}, {"model.safetensors": "w"}, "no preprocessor_config.json"),
    ],
)
def test_folders_that_cannot_be_exported(
    tmp_path: Path, config: dict, files: dict[str, str], message: str
) -> None:
    with pytest.raises(HfExportError, match=message):
        inspect_folder(_folder(tmp_path / "m", config, files))


def test_options_a_family_cannot_honour(tmp_path: Path) -> None:
    gpt2 = inspect_folder(
        _folder(tmp_path / "g", {"model_type": "gpt2", "n_positions": 64}, TEXT_FILES)
    )
    with pytest.raises(HfExportError, match="causal"):
        resolve_options(gpt2, "cls", None, None)
    with pytest.raises(HfExportError, match="allows 1 to 64 tokens"):
        resolve_options(gpt2, None, 65, None)
    vit = inspect_folder(
        _folder(
            tmp_path / "v",
            {"model_type": "vit"},
            {"model.safetensors": "w", "preprocessor_config.json": "{}"},
        )
    )
    with pytest.raises(HfExportError, match="text models only"):
        resolve_options(vit, None, 128, None)
    with pytest.raises(HfExportError, match="not supported for vit"):
        resolve_options(vit, "last", None, None)


@pytest.mark.parametrize("name", ["Upper", "../escape", "", "a b", "-dash", "x" * 65])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(HfExportError, match="invalid backbone name"):
        check_name(name)


def test_sharded_weights_are_hashed_together(tmp_path: Path) -> None:
    index = {"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}
    files = {
        "tokenizer.json": "{}",
        "model.safetensors.index.json": json.dumps(index),
        "model-1.safetensors": "one",
        "model-2.safetensors": "two",
    }
    folder = inspect_folder(_folder(tmp_path / "sharded", BERT, files))
    assert [f.name for f in folder.weight_files] == ["model-1.safetensors", "model-2.safetensors"]
    before = source_info(folder)
    assert before["weights"] == "model-1.safetensors,model-2.safetensors"
    (tmp_path / "sharded" / "model-2.safetensors").write_text("changed")
    assert source_info(folder)["weights_sha256"] != before["weights_sha256"]
    assert source_info(folder)["files_sha256"] == before["files_sha256"]
    (tmp_path / "sharded" / "model-2.safetensors").unlink()
    with pytest.raises(HfExportError, match="missing weight shards"):
        inspect_folder(tmp_path / "sharded")


def test_one_weights_file_is_its_own_hash(tmp_path: Path) -> None:
    folder = inspect_folder(_folder(tmp_path / "bert", BERT, TEXT_FILES))
    info = source_info(folder)
    assert info["weights_sha256"] == sha256_of_file(tmp_path / "bert" / "model.safetensors")
    assert info["model_type"] == "bert" and info["path"] == str((tmp_path / "bert").resolve())
