# Two set-up-and-go commands (README): `make demo` and `make test`. Each creates .venv and installs
# what it needs the first time; later runs reuse it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo fashion-mnist test test-slow lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The demo: the degradation experiment (plain vs residual, 20 and 56 layers) on real Fashion-MNIST at
# the quick budget; prints the table and the verdict, writes results/demo/ (figure, results.json).
demo: $(STAMP)
	$(VENV)/bin/resnetlab data list | grep -Eq '^fashion-mnist +found' || $(MAKE) fashion-mnist
	$(VENV)/bin/resnetlab reproduce degradation --data fashion-mnist --budget quick --out results/demo

# Fashion-MNIST: Debian's dataset-fashion-mnist package when we may use apt-get, else the official
# download (md5-checked).
fashion-mnist: $(STAMP)
	if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -q dataset-fashion-mnist || \
	  { apt-get update -q && apt-get install -y -q dataset-fashion-mnist; }; \
	else $(VENV)/bin/resnetlab data fetch fashion-mnist; fi

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
