# seclink: `make` builds everything, `make test` runs every test (what CI runs).
# Both first install whatever is missing (tools/install-deps.sh: apt-get and pip).

PYTHON       ?= python3
JOBS         ?= $(shell nproc)
BUILD        ?= build
FUZZ_SECONDS ?= 60
CMAKE        ?= cmake
GENERATOR    ?= Ninja

CONFIGURE = $(CMAKE) -G $(GENERATOR) -S .
SHELL := /bin/bash

PORT         ?= 5000

.PHONY: all build deps test test-cpp test-asan test-py fuzz bench demo run run-server run-client run-py-server \
        run-py-client clean help

all: build

help:
	@echo "make            install missing dependencies, build library, tests and programs"
	@echo "make test       build, then run GoogleTest (plain and ASan+UBSan), the fuzzer"
	@echo "                for FUZZ_SECONDS (default 60) and the pytest suites"
	@echo "make bench      engine benchmark (Google Benchmark), then the server vs three baselines"
	@echo "                through the load generator (about 5 minutes)"
	@echo "make demo       the narrated cross-language demo (C++ and Python servers and clients)"
	@echo "make run-server / run-client          ./server \$$PORT / interactive ./client (PORT=5000)"
	@echo "make run-py-server / run-py-client    the same with python/server.py and python/client.py"
	@echo "make run        a server in the background, then an interactive client; the server stops"
	@echo "                when the client ends"
	@echo "make fuzz       run the libFuzzer target for FUZZ_SECONDS"
	@echo "make clean      remove build output, logs and caches (never your keys)"

deps:
	@tools/install-deps.sh $(PYTHON)

# The Python extension is built too and linked into python/seclink/, so that python/server.py
# and python/client.py run in place with the python3 on PATH, nothing installed.
PYBIND11_DIR = $(shell $(PYTHON) -m pybind11 --cmakedir 2>/dev/null)
PY_CONFIG = -DSECLINK_BUILD_PYTHON=ON -DPython_EXECUTABLE=$(shell command -v $(PYTHON)) -Dpybind11_DIR=$(PYBIND11_DIR)

build: deps
	$(CONFIGURE) -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DSECLINK_BUILD_TESTS=ON -DSECLINK_WERROR=ON $(PY_CONFIG)
	$(CMAKE) --build $(BUILD) -j $(JOBS)
	ln -sf $(BUILD)/cpp_apps/server server
	ln -sf $(BUILD)/cpp_apps/client client
	rm -f python/seclink/_seclink.*.so
	ln -sf $(abspath $(BUILD))/bindings/_seclink.*.so python/seclink/

test: test-cpp test-asan fuzz test-py

test-cpp: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# The same GoogleTest suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	$(CONFIGURE) -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSECLINK_BUILD_TESTS=ON -DSECLINK_SANITIZE=ON
	$(CMAKE) --build build-asan -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir build-asan --output-on-failure -j $(JOBS)

# libFuzzer (clang) with ASan+UBSan, bounded in time; starts from the committed seed corpus.
fuzz: deps
	CC=clang CXX=clang++ $(CONFIGURE) -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DSECLINK_BUILD_FUZZ=ON -DSECLINK_BUILD_TESTS=OFF -DSECLINK_BUILD_APPS=OFF
	$(CMAKE) --build build-fuzz -j $(JOBS)
	rm -rf build-fuzz/corpus && mkdir -p build-fuzz/corpus && cp core/fuzz/corpus/* build-fuzz/corpus/
	build-fuzz/core/fuzz/fuzz_engine -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	  -print_final_stats=1 -artifact_prefix=build-fuzz/ build-fuzz/corpus > build-fuzz/fuzz.log 2>&1 \
	  || { tail -n 80 build-fuzz/fuzz.log; echo "fuzz: FAILED (input saved in build-fuzz/)"; exit 1; }
	@grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" build-fuzz/fuzz.log
	@echo "fuzz: no crash, leak or sanitizer report in $(FUZZ_SECONDS) s"

# -m "": every test, the slow `install` ones too (a plain `pytest` leaves those out).
test-py: build
	SECLINK_BUILD_DIR=$(abspath $(BUILD)) $(PYTHON) -m pytest -m ""

# Engine micro-benchmarks, then our server against three baselines through one load generator.
bench: deps
	$(CONFIGURE) -B build-bench -DCMAKE_BUILD_TYPE=Release -DSECLINK_BUILD_TESTS=OFF -DSECLINK_BUILD_BENCH=ON
	$(CMAKE) --build build-bench -j $(JOBS)
	build-bench/bench/engine_bench --benchmark_color=false
	$(PYTHON) bench/run_bench.py --build-dir build-bench --server build-bench/cpp_apps/server

# The instructor's targets: one server, one interactive client, or both at once.
demo: build
	$(PYTHON) tools/demo.py

run-server: build
	./server $(PORT)

run-client: build
	./client 127.0.0.1 $(PORT)

run-py-server: build
	cd python && $(PYTHON) server.py --port $(PORT)

run-py-client: build
	$(PYTHON) python/client.py --host 127.0.0.1 --port $(PORT)

# The server's screen output goes to $(BUILD)/run-server.out (its log to server_logs.txt as usual).
run: build
	@./server $(PORT) > $(BUILD)/run-server.out 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid; echo "[make run] server stopped"' EXIT; \
	for i in $$(seq 100); do \
	  grep -q "Listening on" $(BUILD)/run-server.out && break; \
	  kill -0 $$pid 2>/dev/null || { cat $(BUILD)/run-server.out; exit 1; }; \
	  sleep 0.1; \
	done; \
	grep -q "Listening on" $(BUILD)/run-server.out || { echo "[make run] the server did not start"; exit 1; }; \
	echo "[make run] server listening on port $(PORT) (log: server_logs.txt); 'exit' or Ctrl-D ends both"; \
	./client 127.0.0.1 $(PORT)

clean:
	rm -rf $(BUILD) build-asan build-fuzz build-bench .pytest_cache server client server_logs.txt client_logs.txt \
	  python/server_logs.txt python/client_logs.txt python/seclink/_seclink.*.so _skbuild dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
