#!/usr/bin/env python3
"""Mutation testing with a committed set of mutants (`make mutants`).

Every file in mutants/ is one patch that breaks one behaviour on purpose, with a header:

    # what the change breaks, in one line
    # tests: <shell command, run from the scratch copy's root; fails when the mutant is caught>
    # tests: <another level (say the unit, then the program a user runs): each must catch it>
    diff --git ...

The working tree is never modified. The tracked (and new, not ignored) files are copied to a
scratch copy, build-mutants/src, whose build directory (build-mutants/src/build) is configured
once and kept, so each mutant costs an incremental build: the patch is applied, what it touched is
rebuilt, its tests run, and the patch is reversed. The tests are first run unpatched (a test that
fails anyway kills nothing). A mutant is killed when every one of its test commands fails; the
run fails if any mutant survives (even one level), does not apply or does not build.

    python3 tools/mutants.py [NAME_SUBSTRING ...] [--no-baseline] [--jobs N]
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "build-mutants" / "src"
BUILD = SCRATCH / "build"
TEST_TIMEOUT = 600  # seconds per mutant's tests: a mutant that hangs them is caught, not waited for


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, text=True, capture_output=True, **kw)


def sync_scratch() -> None:
    """Copies the tree as it is now (committed or not) to SCRATCH, touching only changed files so
    that the kept build stays incremental."""
    files = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True).stdout.split("\0")
    wanted = {f for f in files if f and (ROOT / f).is_file() and not f.startswith("mutants/")}
    for f in sorted(wanted):
        src, dst = ROOT / f, SCRATCH / f
        if dst.is_file() and not dst.is_symlink() and filecmp.cmp(src, dst, shallow=False):
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        shutil.copy2(src, dst)
        os.utime(dst)  # newer than its objects: rebuilt
    for dst in list(SCRATCH.rglob("*")):  # files deleted from the tree since the last run
        rel = dst.relative_to(SCRATCH).as_posix()
        if dst.is_file() and not dst.is_symlink() and rel not in wanted and not rel.startswith(("build/", ".")) \
                and "__pycache__" not in rel and not rel.startswith(("server_logs", "client_logs")):
            if (ROOT / rel).exists():
                continue  # an ignored file of the tree (never copied): leave it
            dst.unlink()


def configure(jobs: int) -> None:
    if not (BUILD / "build.ninja").exists():
        py = sys.executable
        pybind = run([py, "-m", "pybind11", "--cmakedir"], check=True).stdout.strip()
        run_checked(["cmake", "-G", "Ninja", "-S", str(SCRATCH), "-B", str(BUILD), "-DCMAKE_BUILD_TYPE=Release",
                     "-DSECLINK_BUILD_TESTS=ON", "-DSECLINK_BUILD_PYTHON=ON", f"-DPython_EXECUTABLE={py}",
                     f"-Dpybind11_DIR={pybind}"], "configure")
    build(jobs, "initial build")
    for name, target in (("server", "cpp_apps/server"), ("client", "cpp_apps/client")):
        link = SCRATCH / name
        if not link.is_symlink():
            link.symlink_to(BUILD / target)
    pkg = SCRATCH / "python" / "seclink"
    for so in BUILD.glob("bindings/_seclink.*.so"):
        link = pkg / so.name
        if not link.is_symlink():
            link.symlink_to(so)


def run_checked(argv: list[str], what: str) -> None:
    r = run(argv)
    if r.returncode != 0:
        sys.exit(f"mutants: {what} failed:\n{r.stdout[-4000:]}{r.stderr[-4000:]}")


def build(jobs: int, what: str) -> subprocess.CompletedProcess:
    return run(["cmake", "--build", str(BUILD), "-j", str(jobs)])


def parse(patch: Path) -> tuple[str, list[str]]:
    desc, tests = "", []
    for line in patch.read_text().splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("# tests:"):
            tests.append(line[len("# tests:"):].strip())
        elif not desc:
            desc = line[1:].strip()
    if not tests:
        sys.exit(f"mutants: {patch.name} has no '# tests:' line")
    return desc, tests


def run_tests(cmd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SECLINK_BUILD_DIR=str(BUILD), PYTHONDONTWRITEBYTECODE="1")
    try:
        return subprocess.run(["bash", "-c", cmd], cwd=SCRATCH, env=env, text=True, capture_output=True,
                              timeout=TEST_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, 124, str(exc.stdout or ""), "timed out")


def git_apply(patch: Path, reverse: bool = False, check: bool = False) -> subprocess.CompletedProcess:
    # The scratch copy lies inside the repository (build-mutants/ is ignored): git must not find
    # the repository around it, or it would apply nothing outside "its" subdirectory, silently.
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(SCRATCH.parent))
    return run(["git", "apply", *(["-R"] if reverse else []), *(["--check"] if check else []), str(patch)],
               cwd=SCRATCH, env=env)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="run only the mutants whose file name contains one of these")
    ap.add_argument("--no-baseline", action="store_true", help="skip running the tests unpatched first")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    patches = sorted((ROOT / "mutants").glob("*.patch"))
    if args.names:
        patches = [p for p in patches if any(n in p.name for n in args.names)]
    if not patches:
        sys.exit("mutants: no mutant selected")
    start = time.monotonic()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    sync_scratch()
    configure(args.jobs)
    print(f"mutants: scratch copy ready in {time.monotonic() - start:.0f} s ({SCRATCH.relative_to(ROOT)})", flush=True)

    if not args.no_baseline:
        for cmd in sorted({c for p in patches for c in parse(p)[1]}):
            r = run_tests(cmd)
            if r.returncode != 0:
                print(r.stdout[-3000:], r.stderr[-3000:])
                sys.exit(f"mutants: the tests fail without any mutant, so they could kill nothing: {cmd}")
        print(f"mutants: baseline passes ({time.monotonic() - start:.0f} s)", flush=True)

    results: list[tuple[str, str, str]] = []
    for patch in patches:
        desc, cmd = parse(patch)
        t0 = time.monotonic()
        # Applied means that it can now be reversed: a patch that changed nothing is no mutant.
        if git_apply(patch).returncode != 0 or git_apply(patch, reverse=True, check=True).returncode != 0:
            results.append((patch.stem, "DOES NOT APPLY", desc))
            print(f"  {patch.stem:34} DOES NOT APPLY", flush=True)
            continue
        try:
            b = build(args.jobs, patch.stem)
            if b.returncode != 0:
                verdict = "DOES NOT BUILD"
                print(b.stdout[-2000:])
            else:
                missed = [c for c in cmd if run_tests(c).returncode == 0]
                verdict = "killed" if not missed else "SURVIVED"
                for c in missed:
                    print(f"  {patch.stem}: not caught by: {c}", flush=True)
        finally:
            if git_apply(patch, reverse=True).returncode != 0:
                sys.exit(f"mutants: {patch.name} could not be reversed; remove {SCRATCH} and run again")
        results.append((patch.stem, verdict, desc))
        print(f"  {patch.stem:34} {verdict:8} {time.monotonic() - t0:5.0f} s  {desc}", flush=True)
    build(args.jobs, "restore")  # leave the scratch build matching the tree

    bad = [r for r in results if r[1] != "killed"]
    print(f"mutants: {len(results) - len(bad)} of {len(results)} killed in {time.monotonic() - start:.0f} s")
    for name, verdict, desc in bad:
        print(f"mutants: {verdict}: {name}: {desc}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
