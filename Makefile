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

.PHONY: all build programs deps test test-cpp test-asan test-tsan test-poll test-py test-py-asan fuzz mutants bench demo \
        attacks run run-server run-client \
        run-py-server run-py-client clean help

all: build

help:
	@echo "make            install missing dependencies, build library, tests and programs"
	@echo "make programs   only ./server, ./client and the Python extension, quietly (what demo and run* build)"
	@echo "make test       build, then run GoogleTest (plain and ASan+UBSan), the fuzzer"
	@echo "                for FUZZ_SECONDS (default 60), the pytest suites, and the Python"
	@echo "                package tests again with the extension under ASan+UBSan"
	@echo "make bench      engine benchmark (Google Benchmark), then the server vs three baselines and"
	@echo "                ZeroMQ CURVE through the load generator, the memory budget, chat fan-out to"
	@echo "                1000 members beside ncat --chat and over NATS, a 2 GiB file vs scp and the"
	@echo "                tunnel vs spiped and stunnel4 (about 10 minutes)"
	@echo "make demo       the narrated cross-language demo (C++ and Python servers and clients)"
	@echo "make demo STEP=1   the same, waiting for Enter between steps (for a class; ONLY=N: one step)"
	@echo "make attacks    the attack lab: four INSECURE designs broken, the same attacks failing on seclink"
	@echo "make run-server / run-client          ./server \$$PORT / interactive ./client (PORT=5000)"
	@echo "make run-py-server / run-py-client    the same with python/server.py and python/client.py"
	@echo "make run        a server in the background, then an interactive client; the server stops"
	@echo "                when the client ends"
	@echo "make test-tsan  the native server and its tests under ThreadSanitizer (part of make test)"
	@echo "make test-poll  GoogleTest and the C++ programs' end-to-end tests on the portable poll()"
	@echo "                backend (what macOS and the BSDs build), in build-poll (part of make test)"
	@echo "make mutants    break the code on purpose (mutants/*.patch, one behaviour each) in a scratch copy"
	@echo "                (build-mutants/) and check that the tests named in each patch catch it (CI runs it)"
	@echo "make fuzz       run the libFuzzer targets (engine FUZZ_SECONDS, session half that, key files 10 s)"
	@echo "make clean      remove build output, logs and caches (never your keys)"

deps:
	@tools/install-deps.sh $(PYTHON)

# The Python extension is built too and linked into python/seclink/, so that python/server.py
# and python/client.py run in place with the python3 on PATH, nothing installed.
PYBIND11_DIR = $(shell $(PYTHON) -m pybind11 --cmakedir 2>/dev/null)
PY_CONFIG = -DSECLINK_BUILD_PYTHON=ON -DPython_EXECUTABLE=$(shell command -v $(PYTHON)) -Dpybind11_DIR=$(PYBIND11_DIR)

BUILD_CONFIG = -DCMAKE_BUILD_TYPE=Release -DSECLINK_BUILD_TESTS=ON -DSECLINK_WERROR=ON $(PY_CONFIG)
LINK_PROGRAMS = ln -sf $(BUILD)/cpp_apps/server server && ln -sf $(BUILD)/cpp_apps/client client && \
  rm -f python/seclink/_seclink.*.so && ln -sf $(abspath $(BUILD))/bindings/_seclink.*.so python/seclink/

build: deps
	$(CONFIGURE) -B $(BUILD) $(BUILD_CONFIG)
	$(CMAKE) --build $(BUILD) -j $(JOBS)
	$(LINK_PROGRAMS)

# Only what the demo and `make run*` need (./server, ./client, the Python extension; not the
# GoogleTest suite), quietly: the output goes to $(BUILD)/programs.log, shown only on failure.
# The build tree is configured as `make build` configures it, so the two never rebuild each other.
programs: deps
	@mkdir -p $(BUILD); \
	{ $(CONFIGURE) -B $(BUILD) $(BUILD_CONFIG) && \
	  $(CMAKE) --build $(BUILD) -j $(JOBS) --target server client _seclink && $(LINK_PROGRAMS); } \
	  > $(BUILD)/programs.log 2>&1 || { cat $(BUILD)/programs.log; echo "make: building the programs failed"; exit 1; }

test: test-cpp test-asan test-tsan test-poll fuzz test-py test-py-asan

test-cpp: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# The same GoogleTest suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	$(CONFIGURE) -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSECLINK_BUILD_TESTS=ON -DSECLINK_SANITIZE=ON
	$(CMAKE) --build build-asan -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir build-asan --output-on-failure -j $(JOBS)

# The native server (worker threads, the shared session policy) and its tests under
# ThreadSanitizer, with clients on every worker at once: any data race fails the run.
test-tsan: deps
	$(CONFIGURE) -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSECLINK_BUILD_TESTS=ON -DSECLINK_BUILD_APPS=OFF \
	  -DSECLINK_TSAN=ON
	$(CMAKE) --build build-tsan -j $(JOBS) --target seclink_tests
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  build-tsan/tests/core/seclink_tests --gtest_filter='NativeIoTest.*:SessionTest.*:PollerTest.*:PasswordTest.*' --gtest_brief=1

# The portable I/O build (SECLINK_POLLER=poll: poll() and a self-pipe, socket()/accept() + fcntl(),
# the I/O that macOS and the BSDs compile) proven on Linux: every ctest test (NativeIoTest,
# SessionTest, PollerTest...), then the C++ programs' end-to-end tests (tests/programs, the [cpp...]
# half, slow ones included; the Python programs do not use this build) against build-poll's
# ./server and ./client. It needs `make build` for the Python extension that conftest checks for.
test-poll: build
	$(CONFIGURE) -B build-poll -DCMAKE_BUILD_TYPE=Release -DSECLINK_BUILD_TESTS=ON -DSECLINK_WERROR=ON \
	  -DSECLINK_POLLER=poll
	$(CMAKE) --build build-poll -j $(JOBS)
	ctest --test-dir build-poll --output-on-failure -j $(JOBS)
	SECLINK_SERVER=$(abspath build-poll/cpp_apps/server) SECLINK_CLIENT=$(abspath build-poll/cpp_apps/client) \
	  $(PYTHON) -m pytest tests/programs -k "[cpp" -q

# libFuzzer (clang) with ASan+UBSan, bounded in time; each target starts from its committed seed
# corpus: the engine for FUZZ_SECONDS, the session layer for half that, the key-file loader for 10 s.
FUZZ_TARGETS = engine:corpus:$(FUZZ_SECONDS) session:corpus_session:$$(($(FUZZ_SECONDS) / 2)) keyfile:corpus_keyfile:10
fuzz: deps
	CC=clang CXX=clang++ $(CONFIGURE) -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DSECLINK_BUILD_FUZZ=ON -DSECLINK_BUILD_TESTS=OFF -DSECLINK_BUILD_APPS=OFF
	$(CMAKE) --build build-fuzz -j $(JOBS)
	@for spec in $(FUZZ_TARGETS); do \
	  IFS=: read -r name corpus secs <<< "$$spec"; \
	  rm -rf build-fuzz/$$corpus && mkdir -p build-fuzz/$$corpus && cp core/fuzz/$$corpus/* build-fuzz/$$corpus/; \
	  build-fuzz/core/fuzz/fuzz_$$name -max_total_time=$$secs -timeout=10 -rss_limit_mb=2048 \
	    -print_final_stats=1 -artifact_prefix=build-fuzz/$$name- build-fuzz/$$corpus > build-fuzz/fuzz-$$name.log 2>&1 \
	    || { tail -n 80 build-fuzz/fuzz-$$name.log; echo "fuzz: fuzz_$$name FAILED (input saved in build-fuzz/)"; exit 1; }; \
	  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" build-fuzz/fuzz-$$name.log; \
	  echo "fuzz: fuzz_$$name: no crash, leak, sanitizer report or broken invariant in $$secs s"; \
	done

# Mutation testing: each patch in mutants/ breaks one behaviour; its tests must catch it. The tree
# is copied to build-mutants/src (its build is kept, so a run after the first is incremental).
# Not part of `make test` (minutes); .ci/run runs it after `make test`.
mutants: deps
	$(PYTHON) tools/mutants.py --jobs $(JOBS)

# -m "": every test, the slow `install` ones too (a plain `pytest` leaves those out).
test-py: build
	SECLINK_BUILD_DIR=$(abspath $(BUILD)) $(PYTHON) -m pytest -m ""

# The Python package tests (tests/package, but for test_install.py, which pip-installs a plain
# build of its own) with the extension built under ASan+UBSan in build-pyasan. The package is
# staged in build-pyasan/stage (links to python/seclink/*.py next to the sanitized module), so the
# in-place module of `make build` stays as it is. CPython is not instrumented: the ASan runtime is
# preloaded, with libstdc++ (python3 does not link it, and ASan must find the real __cxa_throw when
# it starts, or the first C++ exception aborts), and PYTHONMALLOC=malloc makes Python objects
# plain heap blocks ASan can see past the end of. No leak check: CPython leaks by design at exit.
# Any ASan or UBSan report fails the run; --capture=sys leaves file descriptor 2 alone, so the
# report of a run that aborts is shown rather than lost in pytest's capture file.
PYASAN_STAGE = build-pyasan/stage
test-py-asan: deps
	$(CONFIGURE) -B build-pyasan -DCMAKE_BUILD_TYPE=Debug -DSECLINK_SANITIZE=ON -DSECLINK_BUILD_TESTS=OFF \
	  -DSECLINK_BUILD_APPS=OFF $(PY_CONFIG)
	$(CMAKE) --build build-pyasan -j $(JOBS) --target _seclink
	rm -rf $(PYASAN_STAGE) && mkdir -p $(PYASAN_STAGE)/seclink
	ln -s $(abspath python/seclink)/*.py $(abspath python/seclink)/*.pyi $(abspath python/seclink)/py.typed \
	  $(abspath build-pyasan)/bindings/_seclink.*.so $(PYASAN_STAGE)/seclink/
	@cxx=$$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' build-pyasan/CMakeCache.txt); \
	asan=$$($$cxx -print-file-name=libasan.so); stdcxx=$$($$cxx -print-file-name=libstdc++.so); \
	[ -f "$$asan" ] || { echo "test-py-asan: no libasan.so for the compiler in build-pyasan (GCC's is needed)"; exit 1; }; \
	set -x; \
	export LD_PRELOAD="$$asan $$stdcxx" PYTHONMALLOC=malloc PYTHONPATH=$(abspath $(PYASAN_STAGE)) \
	  ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1; \
	$(PYTHON) -c 'import seclink._seclink as m, sys; sys.exit(0 if m.__file__.startswith(sys.argv[1]) else m.__file__)' \
	  $(abspath $(PYASAN_STAGE)) && \
	$(PYTHON) -m pytest -o pythonpath=. --capture=sys tests/package --ignore=tests/package/test_install.py

# Engine micro-benchmarks, then our server against three baselines through one load generator.
bench: deps
	$(CONFIGURE) -B build-bench -DCMAKE_BUILD_TYPE=Release -DSECLINK_BUILD_TESTS=OFF -DSECLINK_BUILD_BENCH=ON
	$(CMAKE) --build build-bench -j $(JOBS)
	build-bench/bench/engine_bench --benchmark_color=false
	$(PYTHON) bench/run_bench.py --build-dir build-bench --server build-bench/cpp_apps/server --repeat 5 --repeat-only rr16,rr128,mib1,mib16,ours,a
	$(PYTHON) bench/budget_bench.py --server build-bench/cpp_apps/server
	$(PYTHON) bench/streams_bench.py --server build-bench/cpp_apps/server --client build-bench/cpp_apps/client
	$(PYTHON) bench/chat_bench.py --server build-bench/cpp_apps/server --fanout build-bench/bench/chat_fanout

# The instructor's targets: one server, one interactive client, or both at once.
demo: programs
	$(PYTHON) tools/demo.py $(if $(STEP),--step) $(if $(ONLY),--only $(ONLY))

attacks: programs
	$(PYTHON) -m tools.attacks

run-server: programs
	./server $(PORT)

run-client: programs
	./client 127.0.0.1 $(PORT)

run-py-server: programs
	cd python && $(PYTHON) server.py --port $(PORT)

run-py-client: programs
	$(PYTHON) python/client.py --host 127.0.0.1 --port $(PORT)

# The server's screen output goes to $(BUILD)/run-server.out (its log to server_logs.txt as usual).
run: programs
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
	rm -rf $(BUILD) build-asan build-tsan build-poll build-pyasan build-fuzz build-bench build-mutants .pytest_cache server client \
	  server_logs.txt \
	  client_logs.txt python/server_logs.txt python/client_logs.txt python/seclink/_seclink.*.so _skbuild dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
