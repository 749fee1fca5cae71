# `make serve` and `make test` do all set-up themselves: venv, install, stubs, model export.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
PROTOS := $(wildcard protos/transferd/v1/*.proto)
# The Open Inference Protocol (package `inference`, stubs in transferd/oip/): tritonclient defines
# the same message names in protobuf's default descriptor pool, and the gateway imports both when
# its backbones run on Triton, so these stubs are moved into a pool of their own.
OIP_PROTOS := $(wildcard protos/transferd/oip/*.proto)
OWN_POOL := s/_descriptor_pool\.Default()/_descriptor_pool.DescriptorPool()/
MODEL_REPO ?= $(or $(TRANSFERD_MODEL_REPO),model_repo)
# The local CPU Triton (make triton, tests, bench): its python backend's models run in their own
# virtualenv (NumPy 1, for the wheel's stub), built once and reused.
TRITON_PYTHON_ENV := build/triton-python-env
NVIDIA_PYTRITON := nvidia-pytriton==0.7.0

.PHONY: setup stubs model serve test test-fast bench soak fuzz lint clean triton triton-env

setup: $(STAMPS)/installed stubs

$(STAMPS)/installed: pyproject.toml
	@mkdir -p $(STAMPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned exactly: the local CPU build, never a multi-GB CUDA one.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# tritonserver (CPU, python backend) for `make triton` and the Triton tests. --no-deps: its
	# numpy<2 pin would downgrade the gateway's NumPy, and none of its Python code is used.
	$(BIN)/pip install --quiet --no-deps '$(NVIDIA_PYTRITON)'
	@touch $@

stubs: $(STAMPS)/stubs

$(STAMPS)/stubs: $(STAMPS)/installed $(PROTOS) $(OIP_PROTOS)
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. \
		$(PROTOS) $(OIP_PROTOS)
	sed -i '$(OWN_POOL)' transferd/oip/*_pb2.py
	grep -q '_descriptor_pool.DescriptorPool()' transferd/oip/grpc_predict_v2_pb2.py
	@touch $@

# A no-op when the export in $(MODEL_REPO) is up to date (transferd export checks fingerprints).
model: setup
	$(BIN)/transferd export --model-repo $(MODEL_REPO)

# Several `make serve` at once (replicas on one host) take turns at set-up and export: one
# installs and exports, the others then find both done. The server dies with make, even by
# SIGKILL (devtools/bound_to_parent.py).
serve:
	@mkdir -p $(STAMPS)
	flock $(STAMPS)/setup.lock $(MAKE) --no-print-directory model
	$(BIN)/python -m devtools.bound_to_parent $(BIN)/transferd serve --model-repo $(MODEL_REPO)

# A no-op when the environment exists for the current ONNX Runtime version.
triton-env: setup
	$(BIN)/python -m devtools.triton.python_env $(TRITON_PYTHON_ENV)

# A local CPU tritonserver in the foreground over the CPU flavour of $(MODEL_REPO), on
# TRITON_GRPC_PORT / TRITON_HTTP_PORT / TRITON_METRICS_PORT (8001 / 8000 / 8002), bound to
# TRITON_ADDRESS (127.0.0.1). Then: TRANSFERD_RUNTIME=triton TRANSFERD_TRITON_URL=localhost:8001 make serve
triton: model triton-env
	$(BIN)/python -m devtools.triton.local --model-repo $(MODEL_REPO) \
		--workdir build/triton --python-env $(TRITON_PYTHON_ENV)

test: model triton-env
	$(BIN)/python -m pytest tests

# The fast tier, under a minute on 2 cores: tests/unit with no model export, torch or subprocess
# (tests/support/fast_tier.py lists the unit tests it leaves to `make test`, and fails any that
# imports torch or starts a subprocess).
test-fast: setup
	$(BIN)/python -m pytest tests/unit -q -p no:cacheprovider -p tests.support.fast_tier

# bench/embed.py (embedded) runs last: the last line of `make bench` is its `ratio c/a`.
bench: model triton-env
	$(BIN)/python bench/heads.py
	$(BIN)/python bench/fairness.py
	$(BIN)/python bench/replicas.py
	$(BIN)/python bench/transfer.py
	$(BIN)/python bench/embed.py --runtime triton
	$(BIN)/python bench/embed.py

# 10 minutes of mixed tenants (flood, training, hostile input) with the server killed (SIGKILL)
# and restarted every 90 s; fails on a lost head, a stuck job or a refused well-behaved tenant.
soak: model
	$(BIN)/python bench/soak.py --minutes $(or $(SOAK_MINUTES),10)

# The fuzz of every RPC's decoding, converters and validators, long and with fresh random cases
# (`make test` runs a short, repeatable pass of the same tests).
fuzz: model
	FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),1000) FUZZ_RANDOM=1 $(BIN)/python -m pytest tests/fuzz -q -p no:cacheprovider

# Style, types (mypy), the layers (import-linter: pyproject.toml's contracts), the deployables.
lint: setup
	$(BIN)/ruff check service heads devtools tests bench examples transferd
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile
	$(BIN)/yamllint --strict deploy
	$(BIN)/kubernetes-validate --strict --quiet $(filter-out deploy/kustomization.yaml,$(wildcard deploy/*.yaml)) $(wildcard deploy/*/secret.yaml)

clean:
	rm -rf $(VENV) $(STAMPS) transferd/v1/*_pb2* transferd/oip/*_pb2* build/triton $(TRITON_PYTHON_ENV)
