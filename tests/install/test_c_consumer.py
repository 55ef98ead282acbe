"""The C library installed like a library (`cmake --install build --prefix P`), used from C.

One installation (of the build `make` made, in a temporary prefix) is shared by the tests: what it
contains, a C-only CMake project built with `find_package(seclink)` against the shared and the
static library, the same program built with `cc` and pkg-config (shared and static), each run,
and the installed seclink-server and seclink-client talking to each other from a moved prefix.
Slow (it configures and builds): marked `install`, which `make test` runs and a plain `pytest`
leaves out.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tools.procs import Server

pytestmark = pytest.mark.install

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("SECLINK_BUILD_DIR", REPO / "build"))
CAPP = Path(__file__).resolve().parent / "capp"
OK_LINE = re.compile(r"^capp: libseclink \d+\.\d+\.\d+: key file, handshake and a message each way$")
TIMEOUT = 300


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, **kw)
    assert r.returncode == 0, f"{shlex.join(cmd)} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def clean_env(**extra: str) -> dict[str, str]:
    """No LD_LIBRARY_PATH and friends: what is found at run time comes from the binaries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LD_", "PKG_CONFIG", "CMAKE_"))}
    env.update(extra)
    return env


def needed(binary: Path) -> list[str]:
    out = run(["readelf", "-d", str(binary)]).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def run_capp(binary: Path, tmp: Path) -> None:
    key = tmp / f"{binary.name}.psk"
    r = run([str(binary), str(key)], cwd=tmp, env=clean_env())
    assert OK_LINE.match(r.stdout.strip()), r.stdout


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (BUILD / "CMakeCache.txt").exists():
        pytest.fail(f"no build in {BUILD}: run `make` first (or set SECLINK_BUILD_DIR)")
    p = tmp_path_factory.mktemp("prefix")
    run(["cmake", "--install", str(BUILD), "--prefix", str(p)])
    return p


@pytest.fixture(scope="module")
def libdir(prefix: Path) -> Path:
    pcs = sorted(prefix.glob("lib*/**/pkgconfig/seclink.pc"))
    assert pcs, sorted(str(f.relative_to(prefix)) for f in prefix.rglob("*"))
    return pcs[0].parent.parent


def test_the_prefix_holds_the_library_headers_packages_and_programs_only(prefix: Path, libdir: Path) -> None:
    files = sorted(str(f.relative_to(prefix)) for f in prefix.rglob("*") if not f.is_dir())
    lib = str(libdir.relative_to(prefix))
    for want in (f"{lib}/libseclink.a", f"{lib}/libseclink.so", f"{lib}/pkgconfig/seclink.pc",
                 f"{lib}/cmake/seclink/seclinkConfig.cmake", f"{lib}/cmake/seclink/seclinkConfigVersion.cmake",
                 f"{lib}/cmake/seclink/seclinkTargets.cmake", "include/seclink/seclink.h",
                 "include/seclink/seclink.hpp", "bin/seclink-server", "bin/seclink-client"):
        assert want in files, files
    assert any(re.fullmatch(re.escape(lib) + r"/libseclink\.so\.\d+", f) for f in files), files
    # Never the Python module (only the wheel has it), nothing at the top of the prefix.
    assert not [f for f in files if "_seclink" in f or f.endswith(".py")], files
    assert {f.split("/")[0] for f in files} <= {"bin", "include", lib.split("/")[0]}, files
    for prog in ("seclink-server", "seclink-client"):
        runpath = run(["readelf", "-d", str(prefix / "bin" / prog)]).stdout
        assert re.search(r"R(UN)?PATH.*\[\$ORIGIN/\.\./" + re.escape(lib) + r"\]", runpath), runpath


@pytest.mark.parametrize("static", [False, True], ids=["shared", "static"])
def test_a_c_project_builds_with_find_package(prefix: Path, tmp_path: Path, static: bool) -> None:
    build = tmp_path / "build"
    # Nothing but C is enabled: the static library must bring the C++ runtime itself.
    run(["cmake", "-S", str(CAPP), "-B", str(build), "-G", "Ninja", f"-DCMAKE_PREFIX_PATH={prefix}",
         f"-DCAPP_STATIC={'ON' if static else 'OFF'}"], env=clean_env())
    run(["cmake", "--build", str(build)], env=clean_env())
    binary = build / "capp"
    libs = needed(binary)
    assert any(lib.startswith("libseclink.so") for lib in libs) != static, libs
    run_capp(binary, tmp_path)


@pytest.mark.parametrize("static", [False, True], ids=["shared", "static"])
def test_a_c_program_builds_with_pkg_config(prefix: Path, libdir: Path, tmp_path: Path, static: bool) -> None:
    env = clean_env(PKG_CONFIG_PATH=str(libdir / "pkgconfig"))

    def pkg_config(*args: str) -> list[str]:
        return shlex.split(run(["pkg-config", *args, "seclink"], env=env).stdout)

    binary = tmp_path / "capp"
    if static:  # the archive named, then everything it needs
        cmd = ["cc", "-o", str(binary), str(CAPP / "main.c"), *pkg_config("--cflags"),
               str(libdir / "libseclink.a"), *pkg_config("--static", "--libs")]
    else:
        cmd = ["cc", "-o", str(binary), str(CAPP / "main.c"), *pkg_config("--cflags", "--libs")]
    run(cmd, env=env)
    if not static:
        assert any(lib.startswith("libseclink.so") for lib in needed(binary))
    run_capp(binary, tmp_path)


def test_installed_programs_talk_to_each_other_from_a_moved_prefix(prefix: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(prefix, moved, symlinks=True)  # a relative RPATH still finds the library
    server_bin, client_bin = moved / "bin" / "seclink-server", moved / "bin" / "seclink-client"
    env = clean_env(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"))
    key = tmp_path / "psk"
    run([str(server_bin), "--keygen", "--psk-file", str(key)], env=env)
    server = Server([str(server_bin), "--host", "127.0.0.1", "--port", "0", "--psk-file", str(key), "--log-file", "-"],
                    cwd=tmp_path, env=env, timeout=TIMEOUT)
    try:
        client = run([str(client_bin), "127.0.0.1", str(server.port), "installed", "--psk-file", str(key), "--log-file",
                      "-"], cwd=tmp_path, env=env)
        assert "[RECV] #1 ACK: received 9 bytes" in client.stdout, client.stdout
    finally:
        assert server.stop(timeout=30) == 0
