# Kiln developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv from PATH, or the copy `make` installs with pip (run through python3 -m uv).
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export UV_PYTHON_DOWNLOADS := never
# Use the system certificate store too (TLS-intercepting proxies install their CA there).
export UV_SYSTEM_CERTS := 1

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: uv
uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --user --quiet "uv==0.13.9" \
	  || python3 -m pip install --user --quiet --break-system-packages "uv==0.13.9"

.PHONY: install
install: $(VENV)/.synced ## Install every dependency into .venv (uv sync --locked).

$(VENV)/.synced: uv.lock pyproject.toml libs/*/pyproject.toml services/*/pyproject.toml | uv
	$(UV) sync --locked
	@touch $@

.PHONY: run
run: install ## Start NATS, PostgreSQL, migrations and all services locally; Ctrl-C stops all.
	$(PY) scripts/localstack.py

.PHONY: test
test: install ## Run the whole test suite.
	$(BIN)/pytest -m "not long" --durations=25

.PHONY: test-long
test-long: install ## Run the long scenarios (fault and load suites).
	$(BIN)/pytest -m long --durations=25 || [ $$? -eq 5 ]  # 5: no long scenario selected

.PHONY: lint
lint: install ## buf lint + format, ruff, mypy --strict, generated code freshness, buf breaking.
	$(BIN)/buf lint
	$(BIN)/buf format -d --exit-code
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	scripts/typecheck.sh
	scripts/check_generated.sh
	scripts/check_breaking.sh

.PHONY: fmt
fmt: install ## Format protos and Python, fix what ruff can.
	$(BIN)/buf format -w
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: proto
proto: install ## Regenerate libs/genproto from protos/.
	PATH=$(BIN):$$PATH scripts/genproto.sh

.PHONY: migrate
migrate: install ## Apply database migrations of auth and tasks (DATABASE_URL).
	$(PY) -m auth migrate
	$(PY) -m tasks migrate

.PHONY: k8s-validate
k8s-validate: install ## Render every kustomize overlay and validate it (kubernetes-validate --strict).
	BIN=$(BIN) scripts/k8s_validate.sh

.PHONY: bench
bench: install ## Run the benchmarks in bench/.
	$(PY) bench/run.py

.PHONY: clean
clean: ## Remove the virtualenv, caches and local stack data.
	rm -rf $(VENV) .data .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
