# `make serve` and `make test` do all set-up themselves: venv, install, stubs, model export.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
PROTOS := $(wildcard protos/transferd/v1/*.proto)
MODEL_REPO ?= $(or $(TRANSFERD_MODEL_REPO),model_repo)

.PHONY: setup stubs model serve test bench lint clean

setup: $(STAMPS)/installed stubs

$(STAMPS)/installed: pyproject.toml
	@mkdir -p $(STAMPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned exactly: the local CPU build, never a multi-GB CUDA one.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

stubs: $(STAMPS)/stubs

$(STAMPS)/stubs: $(STAMPS)/installed $(PROTOS)
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)
	@touch $@

# A no-op when the export in $(MODEL_REPO) is up to date (transferd export checks fingerprints).
model: setup
	$(BIN)/transferd export --model-repo $(MODEL_REPO)

serve: model
	$(BIN)/transferd serve --model-repo $(MODEL_REPO)

test: model
	$(BIN)/python -m pytest tests

bench: model
	$(BIN)/python bench/embed.py
	$(BIN)/python bench/heads.py

lint: setup
	$(BIN)/ruff check service heads tests bench examples

clean:
	rm -rf $(VENV) $(STAMPS) transferd/v1/*_pb2*
