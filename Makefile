.PHONY: run test lint format check

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

check:
	bin/setup dev
	DEBUG=1 .venv/bin/python manage.py check
	DEBUG=1 .venv/bin/python manage.py makemigrations --check --dry-run
