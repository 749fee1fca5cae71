"""A float16 export (`transferd export --fp16`) serves through Triton with the same config and
gateway, and embeds like the float32 model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devtools.client import authed_channel
from tests.conftest import BACKBONE, ROOT
from tests.integration.conftest import cosines, text_request, vectors
from tests.triton.conftest import start_triton, start_triton_gateway
from transferd.v1 import embedding_pb2, embedding_pb2_grpc


@pytest.mark.slow
def test_the_fp16_export_serves_on_triton_like_fp32(
    tmp_path: Path, embedding_stub, sentences: list[str]
) -> None:
    repo = tmp_path / "repo"
    subprocess.run(
        [sys.executable, "-m", "service.cli", "export", "--fp16", "--model-repo", str(repo)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=True,
    )  # fmt: skip
    triton = start_triton(tmp_path / "triton", repo)
    try:
        gateway = start_triton_gateway(tmp_path / "gateway", repo, triton.grpc_url)
        try:
            with authed_channel(gateway.address, gateway.create_tenant_key("acme")) as channel:
                stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
                (backbone,) = [
                    b
                    for b in stub.ListBackbones(embedding_pb2.ListBackbonesRequest()).backbones
                    if b.name == BACKBONE
                ]
                half = vectors(stub.Embed(text_request(sentences)))
        finally:
            gateway.stop()
    finally:
        triton.stop()
    full = vectors(embedding_stub.Embed(text_request(sentences)))  # the float32 export on Triton
    assert backbone.runtime == "triton"
    assert cosines(half, full).min() >= 0.999
