# Every target bootstraps .venv itself; the only thing a fresh machine needs is python3 (>= 3.10).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck check-generated generate unit fmt bench system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: run the demo pipeline with the embedded Prometheus endpoint on 127.0.0.1:9464
demo: $(STAMP)
	$(BIN)/otel-pipeline demo $(ARGS)

## test: lint, strict type checks, generated files current, then the whole suite (unit + real Prometheus + real OTLP receiver) with coverage
test: $(STAMP) system-deps lint typecheck check-generated unit

system-deps:
	bash scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check otel_pipeline _otel_pipeline_pytest.py tests benchmarks dashboards tools
	$(BIN)/ruff format --check otel_pipeline _otel_pipeline_pytest.py tests benchmarks dashboards tools

typecheck: $(STAMP)
	$(BIN)/mypy

## generate: write every generated file (docs/metrics.md, dashboards/*.json, dashboards/rules/*.yml)
generate: $(STAMP)
	$(BIN)/python -m tools.generate

## check-generated: fail naming each generated file that is stale (run `make generate`)
check-generated: $(STAMP)
	$(BIN)/python -m tools.generate --check

# coverage runs pytest (rather than pytest-cov) so that it starts before pytest imports the package's
# own pytest plugin (_otel_pipeline_pytest, an entry point): module-level code is measured too.
# fail_under (90) and the rest of the settings are in pyproject.toml.
unit: $(STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

fmt: $(STAMP)
	$(BIN)/ruff format otel_pipeline _otel_pipeline_pytest.py tests benchmarks dashboards tools
	$(BIN)/ruff check --fix otel_pipeline _otel_pipeline_pytest.py tests benchmarks dashboards tools

## bench: the overhead benchmarks; prints one JSON document and writes benchmarks/results/latest.json
bench: $(STAMP) system-deps
	$(BIN)/python -m benchmarks.run $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage* htmlcov
