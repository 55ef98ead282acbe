"""Runs a program and writes its peak resident memory (KiB) to a file: for memory tests. Its CPU
time (user and system seconds, one line) goes to OUT_FILE.cpu: for benchmarks.

    python3 -m tools.maxrss OUT_FILE PROGRAM [ARG...]

The program's max RSS (getrusage of the child) is measured from this small process, not from the
test runner: a child forked from a large process (pytest) starts with the parent's pages counted,
which would hide what the program itself uses. The exit status is the program's.
"""
import os
import signal
import sys


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    pid = os.posix_spawnp(argv[0], argv, dict(os.environ))
    for sig in (signal.SIGTERM, signal.SIGINT):  # a stop meant for the program reaches it
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    _, status, usage = os.wait4(pid, 0)
    with open(out, "w") as f:
        f.write(f"{usage.ru_maxrss}\n")
    with open(out + ".cpu", "w") as f:
        f.write(f"{usage.ru_utime} {usage.ru_stime}\n")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
