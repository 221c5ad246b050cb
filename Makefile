# One entry point per task; CI and README run the same commands.
PYTHON ?= .venv/bin/python

.PHONY: test lint bench bench-quick profile profile-pipeline soak

test:  ## the whole test suite (README: Development)
	$(PYTHON) -m pytest

lint:  ## ruff, mypy and the package layers (import-linter, docs/architecture.md), as in the README
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy receiver && .venv/bin/lint-imports

bench:  ## the benchmark suite (about 6 minutes); table in bench/results/latest.{md,json}
	$(PYTHON) bench/suite.py $(BENCH_ARGS)

bench-quick:  ## the same, fewer and shorter runs (about 2 minutes), for development
	$(PYTHON) bench/suite.py --quick $(BENCH_ARGS)

profile:  ## where the webhook path spends its time under load (needs py-spy: .venv/bin/pip install py-spy)
	$(PYTHON) bench/profile_ingest.py $(PROFILE_ARGS)

profile-pipeline:  ## CPU per event after the 202: the inbox worker by part, the dispatcher per send (in-process)
	$(PYTHON) bench/profile_pipeline.py $(PROFILE_ARGS)

soak:  ## sustained signed webhooks for 5 minutes: memory, open files, loss, duplicates; exits 1 on FAIL
	$(PYTHON) bench/soak.py $(SOAK_ARGS)
