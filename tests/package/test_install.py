"""The Python package as users get it: `python -m build` makes an sdist and a wheel (the wheel built
from the sdist, so the sdist is proven complete); neither carries build output; the wheel installs
into a fresh virtual environment and gives the package, its extension, its typing files,
`python -m seclink` and the console scripts seclink-server / seclink-client, which talk to each
other; and the package tests pass against the installed copy.

Slow (it compiles the extension, and pip fetches the build requirements): marked `install`, which
`make test` runs and a plain `pytest` leaves out.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from tools.procs import Server

pytestmark = pytest.mark.install

REPO = Path(__file__).resolve().parents[2]
BUILD_OUTPUT = re.compile(r"(^|/)(build[^/]*|dist|_skbuild|__pycache__|\.pytest_cache|[^/]*\.egg-info)/|\.so$|"
                          r"\.pyc$|(^|/)(server|client)$|_logs\.txt$")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def venv_bin(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    wheel = next(dist.glob("seclink-*.whl"))
    pip = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(wheel), "pytest"],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return bin_dir


def test_build_makes_an_sdist_and_a_wheel_without_build_output(dist: Path) -> None:
    sdists, wheels = list(dist.glob("seclink-*.tar.gz")), list(dist.glob("seclink-*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in dist.iterdir())
    with tarfile.open(sdists[0]) as t:
        top = t.getnames()[0].split("/")[0]
        sdist = [n.split("/", 1)[1] for n in t.getnames() if "/" in n]
    for want in ("pyproject.toml", "CMakeLists.txt", "README.md", "core/include/seclink/seclink.h",
                 "core/src/engine.cpp", "bindings/_seclink.cpp", "python/seclink/__init__.py",
                 "python/seclink/__main__.py", "python/seclink/py.typed", "docs/PROTOCOL.md"):
        assert want in sdist, (want, top)
    assert not [n for n in sdist if BUILD_OUTPUT.search(n)], [n for n in sdist if BUILD_OUTPUT.search(n)]

    with zipfile.ZipFile(wheels[0]) as z:
        names = z.namelist()
    package = [n for n in names if not n.startswith("seclink-")]  # not the .dist-info
    assert all(n.startswith("seclink/") for n in package), package  # no lib/, include/, bin/
    for name in ("__init__.py", "__main__.py", "aio.py", "cli.py", "py.typed", "_seclink.pyi"):
        assert f"seclink/{name}" in package, package
    modules = [n for n in package if re.fullmatch(r"seclink/_seclink\.cpython-[^/]+\.so", n)]
    assert len(modules) == 1, package
    assert not [n for n in package if BUILD_OUTPUT.search(n) and n not in modules], package


def test_the_wheel_in_a_fresh_venv_gives_the_package_and_python_m_seclink(venv_bin: Path, tmp_path: Path) -> None:
    # Imported from site-packages, not from the checkout (the working directory is elsewhere).
    probe = subprocess.run([str(venv_bin / "python"), "-c", "import seclink, seclink.aio; print(seclink.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith(str(venv_bin.parent)), probe.stdout

    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "PATH": f"{venv_bin}:/usr/bin:/bin"}
    shown = subprocess.run([str(venv_bin / "python"), "-m", "seclink"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert re.match(r"seclink \d+\.\d+\.\d+: ", out), out
    assert f"{venv_bin}/seclink-server" in out and f"{venv_bin}/seclink-client" in out, out
    assert f"{tmp_path}/config/seclink/psk (not created yet" in out, out
    assert "seclink.Client" in out and "seclink.aio" in out, out

    helped = subprocess.run([str(venv_bin / "python"), "-m", "seclink", "client", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: seclink-client"), helped.stdout


def test_the_installed_console_scripts_talk_to_each_other(venv_bin: Path, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"), "PATH": "/usr/bin:/bin"}
    key = tmp_path / "psk"
    assert subprocess.run([str(venv_bin / "seclink-server"), "--keygen", "--psk-file", str(key)], env=env,
                          capture_output=True, timeout=60).returncode == 0
    server = Server([str(venv_bin / "seclink-server"), "--host", "127.0.0.1", "--port", "0", "--psk-file", str(key),
                     "--log-file", "-"], cwd=tmp_path, env=env, timeout=60)
    try:
        client = subprocess.run([str(venv_bin / "seclink-client"), "127.0.0.1", str(server.port), "installed",
                                 "--psk-file", str(key), "--log-file", "-"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=60)
        assert client.returncode == 0, client.stderr
        assert "[RECV] #1 ACK: received 9 bytes" in client.stdout
    finally:
        assert server.stop(timeout=30) == 0


def test_the_package_tests_pass_against_the_installed_wheel(venv_bin: Path, tmp_path: Path) -> None:
    # Outside the checkout's configuration (which puts python/ on sys.path): the venv's pytest,
    # an empty ini file, import mode "importlib" (sys.path untouched), run from elsewhere.
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\nfilterwarnings = error\n", encoding="utf-8")
    tests = [str(REPO / "tests" / "package" / name) for name in ("test_package.py", "test_aio.py")]
    r = subprocess.run([str(venv_bin / "python"), "-m", "pytest", "-q", "-c", str(ini), "--rootdir", str(tmp_path),
                        "--import-mode=importlib", "-p", "no:cacheprovider", *tests],
                       cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert re.search(r"\d+ passed", r.stdout), r.stdout
