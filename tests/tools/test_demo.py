"""tools/demo.py as an instructor runs it: every step checked, text that fits the terminal,
--only N, --step waiting for Enter, --help."""

import os
import re
import subprocess
import sys

from tools import programs

DEMO = [sys.executable, "tools/demo.py"]
STEPS = 18


def run(args, columns=80, stdin=None):
    env = dict(os.environ, COLUMNS=str(columns))
    env.pop("NO_COLOR", None)
    return subprocess.run(DEMO + args, cwd=programs.ROOT, env=env, input=stdin, capture_output=True,
                          text=True, timeout=240)


def headings(out):
    return [int(n) for n in re.findall(rf"^== (\d+)/{STEPS}  ", out, re.M)]


def test_the_whole_demo_runs_checked_and_every_line_fits_80_columns():
    result = run([], columns=80, stdin="")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert f"Demo complete: all {STEPS} steps behaved as narrated." in result.stdout
    assert headings(result.stdout) == list(range(1, STEPS + 1))
    assert result.stdout.count("  OK: ") == STEPS
    too_long = [line for line in result.stdout.splitlines() if len(line) > 80]
    assert too_long == []
    # the eavesdropper's step: found in the plaintext capture, absent from seclink's
    assert "found at offset 0x4" in result.stdout
    assert re.search(r"search for 'my PIN is 4711' in all \d+ bytes, both directions: not found", result.stdout)
    assert (programs.ROOT / "build/demo/session.html").stat().st_size > 5000


def test_a_wider_terminal_gets_wider_lines():
    result = run(["--only", "6"], columns=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "== 6/18  Interactive: Python client -> C++ server, C++ client -> Python server ==" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 120


def test_only_runs_one_step_and_starts_the_servers_it_needs_quietly():
    result = run(["--only", "10"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert headings(result.stdout) == [10]
    assert "step 1 ran quietly" in result.stdout
    assert "BAD_COUNTER" in result.stdout
    assert "Demo complete: step 10 behaved as narrated." in result.stdout


def test_step_waits_for_enter_after_each_step_and_q_stops():
    # Enter twice, then q: steps 1-3 run, each followed by a prompt; step 4 never starts.
    result = run(["--step"], stdin="\n\nq\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert headings(result.stdout) == [1, 2, 3]
    assert [int(n) for n in re.findall(rf"-- step (\d+)/{STEPS} done: Enter", result.stdout)] == [1, 2, 3]
    assert "demo: stopped by the presenter" in result.stdout
    assert f"Demo complete: steps 1-3 of {STEPS} behaved as narrated." in result.stdout


def test_help_lists_the_options_and_the_steps():
    result = run(["--help"])
    assert result.returncode == 0
    for word in ("--step", "--only N", "--width", "The attack lab", "An eavesdropper's view"):
        assert word in result.stdout


def test_make_demo_and_run_build_only_the_programs_quietly():
    """`make demo` and `make run*` build ./server, ./client and the Python extension, not the
    GoogleTest suite, and show the build's output only when it fails."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for target in ("demo", "run", "run-server", "run-client", "run-py-server", "run-py-client"):
        out = subprocess.run(["make", "-n", target], cwd=repo, capture_output=True, text=True, timeout=60).stdout
        builds = [line for line in out.splitlines() if "--build" in line]
        assert builds, out
        assert all("--target server client _seclink" in line for line in builds), out
        assert "> build/programs.log 2>&1 ||" in out, out
