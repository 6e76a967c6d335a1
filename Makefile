# Two commands: `make run` (app + demo on the embedded database) and `make test` (every test).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

LINT_PATHS := src tests migrations $(wildcard benchmarks)

.PHONY: run test install static messages lint format clean-db bench

run: install
	$(BIN)/lovedcrm serve --demo --host $(HOST) --port $(PORT)

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

install: $(VENV)/.installed static

# The browser's JavaScript (htmx, SortableJS, Chart.js for the reports; Swagger UI and Redoc for /docs and /redoc),
# pinned in package.json + package-lock.json and copied into static/vendor; nothing is loaded
# from a CDN at run time. --ignore-scripts: no package runs code (or telemetry) at install.
VENDOR := src/lovedcrm/web/static/vendor
static: $(VENDOR)/.installed

$(VENDOR)/.installed: package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: install Node.js 18+ (it brings npm), then run make again. The pages need $(VENDOR)/htmx.min.js and Sortable.min.js." >&2; exit 1; }
	npm ci --no-audit --no-fund --ignore-scripts
	mkdir -p $(VENDOR)
	cp node_modules/htmx.org/dist/htmx.min.js node_modules/sortablejs/Sortable.min.js $(VENDOR)/
	cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css $(VENDOR)/
	cp node_modules/redoc/bundles/redoc.standalone.js $(VENDOR)/
	cp node_modules/chart.js/dist/chart.umd.min.js $(VENDOR)/
	touch $@

# Extract the pages' strings and merge them into the catalogs (pt_BR, en); then translate
# the new entries in src/lovedcrm/web/locale/pt_BR/LC_MESSAGES/messages.po. The .mo files
# are compiled by the app on first use.
messages: $(VENV)/.installed
	$(BIN)/pybabel extract -F src/lovedcrm/web/babel.cfg -k _t:2 -k t -k N_ -k AppError -k NotFound -k Conflict -k Unauthorized -k Forbidden -k ValidationFailed -k TooManyRequests --no-location --sort-output -o $(VENV)/messages.pot .
	$(BIN)/pybabel update -i $(VENV)/messages.pot -d src/lovedcrm/web/locale --no-fuzzy-matching

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==25.3"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

# Every benchmark in turn (benchmarks/bench_*.py), each on a fresh database, then
# benchmarks/results/summary.md: each figure beside its target, the load average before and
# after each run, the commit. Run it on a quiet machine. QUICK=1: a smoke run of seconds per
# script (results and summary under benchmarks/results/quick/), not a measurement.
bench: install
	$(BIN)/python benchmarks/run_all.py $(if $(QUICK),--quick)

clean-db:
	rm -rf var/postgres var/test-postgres
