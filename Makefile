# The two commands a newcomer needs: `make demo` and `make test`.
# (a course hub's instructor has the hub's environment: VENV=/opt/coursekit-hub/venv, set by the hub,
# which grade and doctor use as it is: it is root's to install)
VENV ?= .venv
OWN_VENV := $(if $(filter .venv,$(VENV)),venv)
PY := $(VENV)/bin/python
ASSIGNMENTS := $(notdir $(wildcard source/ps*))
# nbgrader starts grading kernels with the first `python` on PATH: make it the venv's.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test quick lint docs release grade export new-assignment venv sandbox browser clean-grading doctor hub

venv: $(VENV)/.installed sandbox

# pip and the build of `-e .` without two notes that are about neither this course nor a problem
# (pip has no switch for one warning: -qq would drop them all, and its errors stay):
# - pip's "Location '<url>' is ignored: it is neither a file nor a directory.", once per project and
#   local index: a machine's pip.conf with local mirrors that hold a few projects each (100+ lines);
#   pip goes on to its other indexes, and says so as an error if none has the project.
# - setuptools' "Editable installation." note, that a folder named like the package could shadow it:
#   here that folder is the package itself.
PIP_INSTALL := $(VENV)/bin/pip install --quiet
PIP_NOTES := sed "/: Location '[^']*' is ignored: it is neither a file nor a directory\./d"
$(VENV)/.installed: export PYTHONWARNINGS := ignore:Editable installation.:UserWarning
$(VENV)/.installed: SHELL := /bin/bash
$(VENV)/.installed: .SHELLFLAGS := -o pipefail -c
$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip 2>&1 | $(PIP_NOTES)
	$(PIP_INSTALL) -r requirements.txt 2>&1 | $(PIP_NOTES)
	touch $@

## Build release/ (the student version) from source/ with nbgrader, and record the PyTorch
## reference values the hidden tests use (coursekit/judge/torch_cache/) by running the source notebooks.
# The old release is removed here, not by --force, whose warning that it removes it would be printed at every run.
release: venv
	for a in $(ASSIGNMENTS); do rm -rf release/$$a && $(VENV)/bin/nbgrader generate_assignment $$a --log-level=WARN || exit 1; done
	rm -rf coursekit/judge/torch_cache
	for a in $(ASSIGNMENTS); do COURSEKIT_RECORD_TORCH=1 $(PY) -m coursekit.tools.release $$a || exit 1; done

## Grade the shipped demo class: autograde, feedback, export, and a score table.
demo: release
	for a in $(ASSIGNMENTS); do $(PY) -m coursekit.tools.demo $$a || exit 1; done

## Grade a class in parallel: make grade A=ps1 [JOBS=4] [DASK=tcp://scheduler:8786] [DRY_RUN=1]
grade: $(OWN_VENV) sandbox
	$(PY) -m coursekit.pipeline.grade_class $(or $(A),ps1) $(if $(JOBS),--jobs $(JOBS)) $(if $(DASK),--dask $(DASK)) $(if $(DRY_RUN),--dry-run)

## Grades for a learning-management system, from the gradebook (`make grade` writes nbgrader's grades.csv itself):
## make export FORMAT=wide|canvas|gradescope [A=ps1] writes grades_<format>.csv (its columns: docs/exports.md)
EXPORTER_wide := WideExport
EXPORTER_canvas := CanvasExport
EXPORTER_gradescope := GradescopeExport
export: $(OWN_VENV)
	@test -n "$(EXPORTER_$(FORMAT))" || { echo "usage: make export FORMAT=wide|canvas|gradescope [A=ps1]"; exit 1; }
	$(PY) -m nbgrader export --exporter=coursekit.pipeline.plugins.export.$(EXPORTER_$(FORMAT)) $(if $(A),--assignment=$(A)) \
	  --to=grades_$(FORMAT).csv --log-level=WARN

## What this machine offers for grading and for a course hub (root or user namespaces, bubblewrap, the
## exchange, an interpreter every user can run, private homes), and what to do about what is missing
doctor: $(OWN_VENV)
	$(PY) -m coursekit.tools.doctor

## A course hub on this server for the demo class, as root: system users (an instructor, three students;
## passwords printed), the exchange, the instructor's course in their home, JupyterHub on http://127.0.0.1:8000
HUB_PREFIX ?= /opt/coursekit-hub
hub: venv sandbox $(HUB_PREFIX)/.installed
	$(PY) -m coursekit.tools.hub --prefix $(HUB_PREFIX)

$(HUB_PREFIX)/.installed: requirements.txt hub/requirements.txt hub/package-lock.json
	$(PY) -m coursekit.tools.hub --prefix $(HUB_PREFIX) --install
	touch $@

## Start an assignment: its notebook with one worked example part, its judge module and an empty
## catalog (reported as to write), then the release: make new-assignment A=ps4
new-assignment: venv
	@test -n "$(A)" || { echo "usage: make new-assignment A=ps4"; exit 1; }
	$(PY) -m coursekit.tools.scaffold $(A)
	$(MAKE) release

## Debian's bubblewrap: every grading kernel runs in its sandbox (coursekit/kernel/sandbox.py).
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; } \
	  || { echo "bubblewrap (bwrap) is needed to grade: install Debian's bubblewrap package as root"; exit 1; }

## Debian's chromium and chromium-driver, for the tests that look at feedback pages and JupyterLab
## (installed where we are root).
browser:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] \
	  && command -v apt-get >/dev/null 2>&1 && apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	  || echo "chromium or chromium-driver is not installed: the browser tests will be skipped"

## Run the whole test suite (CI's command), or one assignment's tests: make test A=ps3
test: venv browser lint
	$(PY) -m pytest $(if $(A),-m $(A))

## ruff's checks (pycodestyle and pyflakes, configured in pyproject.toml) on every Python file, and
## mypy's on the type hints of the judge, the kernel's code and what ships to students
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

## The quick loop: every test that does not grade a class or run a whole workflow [A=ps3]
quick: venv browser lint
	$(PY) -m pytest -m "$(if $(A),$(A) and )not slow"

## The check author's reference, docs/reference/, from the judge's and gradcheck's docstrings (pdoc)
docs: venv
	rm -rf docs/reference
	$(PY) -m coursekit.tools.reference docs/reference

## Remove grading output (never student submissions).
clean-grading:
	rm -rf autograded feedback gradebook.db grades.csv grades_*.csv
