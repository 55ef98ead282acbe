"""bench/run_bench.py --repeat: rounds alternate the column order, figures are medians, and a
ratio of two figures measured in the same rounds is the median of its per-round ratios."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("run_bench", ROOT / "bench" / "run_bench.py")
rb = importlib.util.module_from_spec(_spec)
sys.modules["run_bench"] = rb  # its dataclasses look their module up
_spec.loader.exec_module(rb)


def _figures():
    rows = [rb.Row(k, k, "rr", [], True) for k in ("rr16", "rr128")]
    cols = [rb.Column(k, k, "raw", False, ["x"]) for k in ("ours", "a")]
    return [(r, c) for r in rows for c in cols]


def test_rounds_reverse_the_columns_within_each_row():
    keys = lambda figs: [(r.key, c.key) for r, c in figs]  # noqa: E731
    assert keys(rb.rounds(_figures(), reverse=False)) == [("rr16", "ours"), ("rr16", "a"), ("rr128", "ours"),
                                                          ("rr128", "a")]
    assert keys(rb.rounds(_figures(), reverse=True)) == [("rr16", "a"), ("rr16", "ours"), ("rr128", "a"),
                                                         ("rr128", "ours")]


def test_median_result_takes_each_number_from_the_good_rounds():
    got = rb.median_result([{"msgs_per_s": 10.0, "server_cpu_us_per_msg": 9.0}, {"error": "boom"},
                            {"msgs_per_s": 30.0, "server_cpu_us_per_msg": 5.0},
                            {"msgs_per_s": 20.0, "server_cpu_us_per_msg": 7.0}])
    assert (got["msgs_per_s"], got["server_cpu_us_per_msg"], got["rounds"]) == (20.0, 7.0, 3)
    assert rb.median_result([{"error": "boom"}]) == {"error": "boom"}


def test_a_ratio_is_the_median_of_the_per_round_ratios_with_its_range():
    ours = [8.0, 6.0, 11.0]  # server CPU us/msg per round
    a = [8.0, 5.0, 10.0]     # per-round ratios 1.0, 1.2, 1.1 (the ratio of medians would be 1.0)
    runs = {"rr16": {"ours": [{"server_cpu_us_per_msg": v, "msgs_per_s": 1.0} for v in ours],
                     "a": [{"server_cpu_us_per_msg": v, "msgs_per_s": 1.0} for v in a]}}
    results = {row: {col: rb.median_result(rs) for col, rs in cols.items()} for row, cols in runs.items()}
    line = next(x for x in rb.target_checks(results, None, runs) if "16 conns: server CPU/msg vs (a) " in x)
    assert "1.10x" in line and "median of 3 rounds, range 1.00x to 1.20x" in line, line
    assert "(target <= 1.15x): met" in line, line


def test_the_floors_add_the_bare_crypto_to_the_plain_baselines_work():
    results = {"rr16": {"ours": {"server_cpu_us_per_msg": 6.6}, "a": {"server_cpu_us_per_msg": 6.0}},
               "sess": {"ours": {"server_cpu_us_per_session": 140.0}, "a": {"server_cpu_us_per_session": 35.0}}}
    lines = rb.target_checks(results, {"x25519_us": 70.0, "aead64_us": 0.3})
    msg = next(x for x in lines if "16 conns: floor of that ratio" in x)
    assert "1.05x" in msg and "(a)'s 6.00 us + a bare AES-256-GCM seal+open of 64 B, 0.30 us" in msg, msg
    sess = next(x for x in lines if "new sessions: floor of that ratio" in x)
    assert "1.50x" in sess and "(a)'s 35.0 us" in sess, sess
    goal = next(x for x in lines if "X25519 work, goal" in x)
    assert "2.00x" in goal and "MISSED" in goal, goal
    assert not any("floor" in x for x in rb.target_checks(results, None)), "no floor without engine figures"
