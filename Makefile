.PHONY: setup test lint fix bench docs quickstart

setup:
	scripts/setup --test

test:
	scripts/test

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

fix:
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

docs:
	.venv/bin/swapyard schema --format markdown --out docs/config-reference.md
	.venv/bin/python -c 'from service.settings import update_settings_doc as u; u("docs/service.md")'

bench:
	.venv/bin/python bench/render.py
	.venv/bin/python bench/swap.py
	.venv/bin/python bench/limits.py
	.venv/bin/python bench/mirror.py

quickstart:
	scripts/quickstart
