"""`pip install .` in a fresh virtual environment gives the package, its extension, its typing
files and the console scripts seclink-server / seclink-client, which then talk to each other."""

from __future__ import annotations

import re
import subprocess
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(rb"\[INFO\] Listening on 127\.0\.0\.1:(\d+)")


def test_pip_install_in_a_fresh_venv_gives_a_working_package_and_scripts(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    pip = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(REPO)],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stdout + pip.stderr

    # Imported from site-packages, not from the checkout (the working directory is elsewhere).
    probe = subprocess.run([str(bin_dir / "python"), "-c",
                            "import seclink, seclink.aio, os; p = os.path.dirname(seclink.__file__); "
                            "print(p); print(sorted(os.listdir(p)))"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    where, files = probe.stdout.splitlines()
    assert where.startswith(str(env_dir)), where
    for name in ("py.typed", "_seclink.pyi", "aio.py", "cli.py"):
        assert f"'{name}'" in files
    assert re.search(r"'_seclink\.cpython-[^']+\.so'", files)

    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"), "PATH": "/usr/bin:/bin"}
    key = tmp_path / "psk"
    assert subprocess.run([str(bin_dir / "seclink-server"), "--keygen", "--psk-file", str(key)], env=env,
                          capture_output=True, timeout=60).returncode == 0
    server = subprocess.Popen([str(bin_dir / "seclink-server"), "--host", "127.0.0.1", "--port", "0", "--psk-file",
                               str(key), "--log-file", "-"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        port = None
        for line in server.stdout:  # ends (and fails the test) if the server exits
            if m := LISTENING.search(line):
                port = m.group(1).decode()
                break
        assert port, server.stderr.read().decode()
        client = subprocess.run([str(bin_dir / "seclink-client"), "127.0.0.1", port, "installed", "--psk-file",
                                 str(key), "--log-file", "-"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=60)
        assert client.returncode == 0, client.stderr
        assert "[RECV] #1 ACK: received 9 bytes (21 bytes)" in client.stdout
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
        server.stdout.close()
        server.stderr.close()
