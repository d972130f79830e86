.PHONY: run test lint format typecheck check

run:
	bin/run

test:
	bin/test

lint:
	bin/setup dev
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format:
	bin/setup dev
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

typecheck:
	bin/setup dev
	.venv/bin/mypy .

# Everything .ci/run checks before the tests (and the pre-commit hooks run).
check: lint typecheck
	DEBUG=1 .venv/bin/python manage.py check
	DEBUG=1 .venv/bin/python manage.py makemigrations --check --dry-run
