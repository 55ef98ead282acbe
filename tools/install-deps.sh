#!/usr/bin/env bash
# Installs what building and testing seclink needs and is missing: Debian packages through
# apt-get, Python packages through pip. Does nothing (quietly) when everything is present.
# Usage: tools/install-deps.sh [python-interpreter]
set -euo pipefail

PYTHON=${1:-python3}

debs=(
  cmake ninja-build make gcc g++ pkg-config   # build
  libssl-dev                                   # OpenSSL 3 headers and libcrypto
  libgtest-dev nlohmann-json3-dev              # GoogleTest, JSON test vectors
  libbenchmark-dev                             # Google Benchmark (make bench)
  libzmq3-dev                                  # ZeroMQ with CURVE: the baseline users compare with (make bench)
  clang libclang-rt-dev                        # libFuzzer and its sanitizer runtimes
  python3 python3-dev python3-venv            # Debian's python3 (headers, venv) if it is the one on PATH
  chromium fonts-dejavu-core                   # headless browser: tests/tools renders the session page
  redis-server redis-tools                     # a real TCP program for the tunnel tests (--forward/--listen)
  openssh-server openssh-client spiped stunnel4  # make bench: scp, spiped and stunnel4 beside seclink
  nats-server libnats-dev                      # chat rooms across servers (--cluster): the bus and its C client
  ncat                                         # make bench: the `ncat --chat` baseline
)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python packages: import name -> PyPI name. (`build` makes the sdist and wheel in make test.)
# build.__main__, because the CMake build directory build/ would pass for a package `build`.
declare -A pips=([pytest]=pytest [cryptography]=cryptography [pybind11]=pybind11 [build.__main__]=build)
need=()
for mod in "${!pips[@]}"; do
  "$PYTHON" -c "import $mod" 2>/dev/null || need+=("${pips[$mod]}")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "install-deps: installing Python packages for $PYTHON: ${need[*]}"
  "$PYTHON" -m pip --version >/dev/null 2>&1 || "$PYTHON" -m ensurepip --upgrade >/dev/null 2>&1 || true
  # A Debian-managed interpreter refuses plain pip installs (PEP 668); fall back to the flag.
  "$PYTHON" -m pip install -q "${need[@]}" 2>/dev/null ||
    "$PYTHON" -m pip install -q --break-system-packages "${need[@]}"
fi
