# syntax=docker/dockerfile:1
# transferd images, one Dockerfile, three targets:
#
#   docker build -t transferd .                          the gateway (default: the last stage)
#   docker build --target export -t transferd-export .   `transferd export` (torch, CPU)
#   docker build --target models -t transferd-models .   the exported model repository, baked in
#
# The gateway image holds no torch, no compiler and no model: the model repository is mounted at
# /models. In Kubernetes an init container of the `models` image copies it into a volume shared by
# the pod (deploy/README.md); `docker run -v "$PWD/model_repo:/models:ro" transferd` does the same
# for a local export.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The stub generator the dev environment uses (make setup): same generated code in the image.
ARG GRPCIO_TOOLS_VERSION=1.85.1

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
# One unprivileged user for every image; numeric, so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 transferd \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin transferd

# ---- build: the gateway's virtualenv; stubs generated from protos/ here, never copied in -------
FROM base AS build
ARG GRPCIO_TOOLS_VERSION
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY transferd/ transferd/
COPY service/ service/
COPY heads/ heads/
# grpcio-tools generates the stubs in the same environment that will run them (so protobuf's
# runtime is at least the generator's version), then leaves: the image needs no code generator.
# The Open Inference Protocol's stubs go into a descriptor pool of their own, as `make stubs`
# does: tritonclient's stubs define the same names in the default pool.
RUN python -m venv /opt/venv \
    && pip install "grpcio-tools==${GRPCIO_TOOLS_VERSION}" \
    && python -m grpc_tools.protoc -Iprotos --python_out=. --grpc_python_out=. \
        protos/transferd/v1/*.proto protos/transferd/oip/*.proto \
    && sed -i 's/_descriptor_pool\.Default()/_descriptor_pool.DescriptorPool()/' \
        transferd/oip/*_pb2.py \
    && grep -q '_descriptor_pool.DescriptorPool()' transferd/oip/grpc_predict_v2_pb2.py \
    && pip install './[triton]' \
    && pip uninstall --yes grpcio-tools
# --build-arg TORCH_HEADS=true adds torch (CPU build, pinned) so that the gateway can train `mlp`
# heads; without it the image stays torch-free and TrainHead refuses kind `mlp`, naming torch.
# Serving an mlp head never needs torch: it is ONNX like every head.
ARG TORCH_HEADS=false
RUN if [ "${TORCH_HEADS}" = "true" ]; then \
        pip install --index-url https://download.pytorch.org/whl/cpu 'torch==2.13.0'; \
    fi

# ---- export: `transferd export --model-repo /models` (torch, CPU build only) ------------------
FROM base AS export
WORKDIR /src
COPY pyproject.toml README.md ./
COPY transferd/ transferd/
COPY service/ service/
COPY heads/ heads/
# torch first and pinned exactly, from the CPU index: never the multi-GB CUDA build.
RUN python -m venv /opt/venv \
    && pip install --index-url https://download.pytorch.org/whl/cpu 'torch==2.13.0' \
    && pip install './[export]' \
    && mkdir /models \
    && chown 10001:10001 /models
# The user has no home: library caches (Hugging Face, torch) go to /tmp, never to the weights.
ENV HF_HOME=/tmp/huggingface \
    XDG_CACHE_HOME=/tmp/cache \
    HF_HUB_OFFLINE=1
USER 10001:10001
ENTRYPOINT ["transferd", "export", "--model-repo", "/models"]

# ---- models: the verified export, baked into a small image for init containers -----------------
FROM export AS exported
# --build-arg EXPORT_FLAGS=--fp16: MiniLM in float16 for GPUs (README, "Triton").
ARG EXPORT_FLAGS=""
RUN transferd export --model-repo /models ${EXPORT_FLAGS}

FROM busybox:1.37.0 AS models
COPY --from=exported /models /models
USER 10001:10001
# An init container copies the repository into the pod's shared volume (deploy/README.md).
CMD ["cp", "-R", "/models/.", "/model-repo/"]

# ---- gateway: the default target ---------------------------------------------------------------
FROM base AS gateway
COPY --from=build /opt/venv /opt/venv
RUN mkdir /models /data && chown 10001:10001 /data
ENV TRANSFERD_MODEL_REPO=/models \
    TRANSFERD_DATA_DIR=/data \
    TRANSFERD_GRPC_PORT=50051 \
    TRANSFERD_METRICS_PORT=9464
WORKDIR /data
USER 10001:10001
EXPOSE 50051 9464
# Readiness on the metrics port (plain HTTP, whether or not gRPC has TLS), as deploy/'s probes
# ask it: healthy only while the server says SERVING (a 503 or no answer raises: exit 1).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('TRANSFERD_METRICS_PORT', '9464'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=3).status != 200)"]
ENTRYPOINT ["transferd"]
CMD ["serve"]
