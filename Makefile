# The two commands of the README: `make demo` (a land-cover map) and `make test` (all checks).
.PHONY: setup demo test lint docs bench

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/xlandcover demo --out out

lint: setup
	.venv/bin/ruff check xlandcover tests benchmarks scripts
	.venv/bin/ruff format --check xlandcover tests benchmarks scripts
	.venv/bin/mypy

docs: setup
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet

test: lint docs
	.venv/bin/python -m pytest -q -n auto tests --nbmake examples

bench: setup
	.venv/bin/python benchmarks/predict_throughput.py
