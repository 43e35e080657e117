# The two commands of the README: `make demo` (a land-cover map) and `make test` (all checks).
.PHONY: setup demo test lint bench

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/xlandcover demo --out out

lint: setup
	.venv/bin/ruff check xlandcover tests benchmarks scripts
	.venv/bin/ruff format --check xlandcover tests benchmarks scripts
	.venv/bin/mypy

test: lint
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python benchmarks/predict_throughput.py
