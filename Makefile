# The two commands a new user runs: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install web-setup demo test bench peers-venv llama-cpp board-check clean

install: $(STAMP)

# One virtual environment with the pinned, tested versions (constraints.txt).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[torch,plot,images,dev]'
	touch $(STAMP)

demo: $(STAMP) web-setup
	$(BIN)/edgeformer demo --out demo-out

test: $(STAMP) web-setup
	$(BIN)/python -m pytest

# Optimum's ONNX exporter and quantizer, which benchmarks/peers.py runs as the peer to beat, in an environment
# of its own: optimum-onnx needs transformers 4.x and the project's environment has 5.x.
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed-stamp

bench: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python benchmarks/bundle_vs_eager.py
	$(BIN)/python benchmarks/minilm_vs_transformers.py
	$(BIN)/python benchmarks/quantize_minilm.py
	$(BIN)/python benchmarks/peers.py --peers-venv $(PEERS_VENV)
	$(BIN)/python benchmarks/runtime_footprint.py
	$(BIN)/python benchmarks/generation.py
	$(BIN)/python benchmarks/distill.py

peers-venv: $(PEERS_STAMP)

# llama.cpp, the small language models' peer (benchmarks/smollm2.py): llama-cpp-python from its source release,
# compiled for this CPU (about 10 minutes on 2 quiet cores, over 20 on busy ones), built once into .cache/wheels.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CPP_WHEEL := .cache/wheels/llama_cpp_python-$(LLAMA_CPP_VERSION)-py3-none-linux_x86_64.whl

llama-cpp: $(STAMP) $(LLAMA_CPP_WHEEL)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $(LLAMA_CPP_WHEEL) diskcache

$(LLAMA_CPP_WHEEL):
	mkdir -p .cache/wheels
	CMAKE_ARGS="-DGGML_NATIVE=ON" $(BIN)/python -m pip wheel --quiet --no-deps --no-binary llama-cpp-python \
		-w .cache/wheels llama-cpp-python==$(LLAMA_CPP_VERSION)

$(PEERS_STAMP): benchmarks/peers-constraints.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c benchmarks/peers-constraints.txt \
		torch==2.13.0 'optimum-onnx[onnxruntime]==0.1.0'
	touch $(PEERS_STAMP)

# The browser tests and the demo's web stage: Debian's chromium and Node.js (apt-get, when missing) and
# web/node_modules (`npm ci` from web/package-lock.json; playwright-core drives Debian's chromium and never
# downloads a browser). When this cannot be done here, it says so and the tests that need it skip with the reason.
web-setup:
	@if ! command -v chromium >/dev/null || ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
		($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium nodejs npm) || \
		echo "warning: could not install chromium and nodejs; the browser tests will skip"; fi
	@if command -v npm >/dev/null && { [ ! -f web/node_modules/.package-lock.json ] || \
		[ web/package-lock.json -nt web/node_modules/.package-lock.json ]; }; then \
		(cd web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund) || \
		echo "warning: npm ci failed in web/; the browser tests will skip"; fi
	@if command -v node >/dev/null && [ "$$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then \
		echo "warning: Node.js $$(node --version) is older than playwright-core needs (20; Debian 12's nodejs is 18):" \
		"the browser tests will skip and deploy --target web needs --no-check"; fi

# The demo's bundles (or small random ones without demo-out/) deployed with --target arm64 --check:
# run on emulated aarch64 (qemu user mode) and compared with x86. Installs qemu-user-static and
# debootstrap when missing; the aarch64 root is cached in .cache/board/.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
board-check: $(STAMP)
	@if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y qemu-user-static debootstrap; fi
	$(BIN)/python benchmarks/board_check.py

clean:
	rm -rf $(VENV) .venv-peers demo-out .pytest_cache
