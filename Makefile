# Two commands: `make app` (dashboard on an embedded dataset) and `make test` (the whole suite);
# `make book` renders the executed lessons to static HTML handouts in book/ (a student and an
# instructor edition), `make slides` to reveal.js slideshows in book/slides/; book/ opens offline.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check
PORT   ?= 8501

.PHONY: app test notebooks book slides results bench clean help

help:
	@echo "make app        set up .venv and open the dashboard (http://localhost:$(PORT))"
	@echo "make test       set up .venv with the test extras and run the whole suite"
	@echo "make notebooks  open JupyterLab on notebooks/"
	@echo "make book       execute the lessons and render them to HTML handouts in book/student and book/instructor (CHESTLAB_FAST=1: fast mode)"
	@echo "make slides     the lessons as reveal.js slideshows in book/slides (EXECUTED=build/executed: reuse make book's runs)"
	@echo "make results    recompute the lessons' shipped studies in chestlab/assets/results (NAME=...: one; ~20 min of CPU in all)"
	@echo "make bench      run the benchmark scripts in benchmarks/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.stamp-app: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e ".[app]"
	touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e ".[app,notebooks,dev]"
	touch $@

app: $(VENV)/.stamp-app
	$(BIN)/python -m streamlit run app.py --server.headless true --server.port $(PORT) --browser.gatherUsageStats false

# The 25 slowest tests are listed at the end of the run (to keep an eye on the suite's ~13 minutes on 2 cores).
# The notebooks run in fast mode (CHESTLAB_FAST=1: each under a minute) in their own pytest run:
# inside the workers that ran the other tests, nbclient twice stalled forever waiting on an idle
# kernel; a stalled notebook fails after 120 s and is retried. One thread per process
# (OMP_NUM_THREADS=1): two kernels with two spinning threads each on two cores run 3-10x slower.
test: $(VENV)/.stamp-dev
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile --durations=25 tests
	OMP_NUM_THREADS=1 CHESTLAB_FAST=1 $(BIN)/python -m pytest -n 2 notebooks --nbmake --nbmake-timeout=120 --reruns 2
	CHESTLAB_FAST=1 OMP_NUM_THREADS=1 $(BIN)/python -m chestlab.book --what all --out build/book  # handouts and slides build; exit 1 if a page lacks a figure

notebooks: $(VENV)/.stamp-dev
	$(BIN)/python -m jupyter lab notebooks/ $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

# The handouts: every lesson executed (full mode; fast mode when CHESTLAB_FAST=1, as CI does) and
# rendered by nbconvert to book/student/<lesson>.html (no solutions) and book/instructor/<lesson>.html
# (solutions collapsed), figures embedded, MathJax in book/_static/: book/ opens from a USB stick.
# The executed notebooks are kept in build/executed/ (`make slides EXECUTED=build/executed` reuses them).
book: $(VENV)/.stamp-dev
	OMP_NUM_THREADS=1 $(BIN)/python -m chestlab.book --what handouts --out book --save-executed build/executed

# The slides: each lesson a reveal.js slideshow in book/slides/ (reveal.js and MathJax in book/_static/),
# a slide per heading (or as the notebook's slideshow metadata says). The lessons run again unless
# EXECUTED names a folder of executed notebooks (make book's build/executed).
slides: $(VENV)/.stamp-dev
	OMP_NUM_THREADS=1 $(BIN)/python -m chestlab.book --what slides --out book $(if $(EXECUTED),--executed $(EXECUTED))

# The lessons' expensive studies (00's disk-vs-plane sweep, 02's t × c sweep, 04's eight-seed study, 05's
# ablation and slider grid, 06's H-vs-E networks and tree fits, 07's CHEST-vs-HIER seeds), computed once
# and shipped as JSON in chestlab/assets/results/; the lessons read them in full mode (each has a
# RECOMPUTE switch), fast mode computes their short versions. `python -m chestlab.results list`: current?
results: $(VENV)/.stamp-dev
	OMP_NUM_THREADS=1 $(BIN)/python -m chestlab.results regenerate $(NAME)

bench: $(VENV)/.stamp-dev
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build book *.egg-info
