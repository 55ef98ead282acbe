"""The attack lab: each attack breaks its INSECURE design and fails against the real seclink
programs, and the lab notices when either half behaves otherwise."""

import os
import subprocess
import sys

import pytest

from tools import programs
from tools.attacks import lab, weak


def test_the_lab_exits_0_and_each_attack_broke_its_design_and_held_on_seclink():
    result = subprocess.run([sys.executable, "-m", "tools.attacks"], cwd=programs.ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("=> BROKEN") == 4
    assert result.stdout.count("=> HELD") == 4
    assert "[RECV] #1 pay 900 to bob" in result.stdout  # attack 2: the flipped IV was accepted
    assert "protocol error: AUTH:" in result.stdout  # ... and the same flip refused by seclink


@pytest.fixture(scope="module")
def python_lab():
    """One lab against the Python server, for the in-process checks below."""
    the_lab = lab.Lab("Python", out=lambda line: None)
    yield the_lab
    programs.stop_all()


@pytest.mark.parametrize("number", [1, 2, 3, 4], ids=["xor", "cbc", "tls", "replay"])
def test_each_attack_behaves_as_taught_against_the_python_server(python_lab, number):
    assert lab.run_attack(python_lab, number)


def test_a_cbc_design_that_noticed_the_flip_makes_attack_2_fail(python_lab, monkeypatch):
    issued = set()
    seal, open_ = weak.CbcLink.seal, weak.CbcLink.open

    def sealed(self, message):
        body = seal(self, message)
        issued.add(body)
        return body

    def checked(self, body):  # a stand-in for a MAC: only bodies the client made are opened
        if body not in issued:
            raise ValueError("not a body the client sealed")
        return open_(self, body)

    monkeypatch.setattr(weak.CbcLink, "seal", sealed)
    monkeypatch.setattr(weak.CbcLink, "open", checked)
    assert not lab.run_attack(python_lab, 2)


def test_a_design_that_refused_duplicates_makes_attack_4_fail(python_lab, monkeypatch):
    seen = set()
    open_ = weak.NoCounterLink.open

    def once(self, body):
        if body in seen:
            raise ValueError("replayed")
        seen.add(body)
        return open_(self, body)

    monkeypatch.setattr(weak.NoCounterLink, "open", once)
    assert not lab.run_attack(python_lab, 4)


def test_a_man_in_the_middle_holding_the_real_key_makes_attack_3_fail(python_lab, monkeypatch):
    # If the attacker had the PSK, seclink could not hold: the lab must say so, not pass.
    monkeypatch.setattr(lab, "ATTACKER_PSK", lab.PSK)
    assert not lab.run_attack(python_lab, 3)


def test_a_fixed_xor_key_that_changed_per_message_makes_attack_1_fail(python_lab, monkeypatch):
    def fresh(self, message):  # a one-time pad per message: known plaintext reveals nothing else
        return weak.xor(message, os.urandom(len(message)))

    monkeypatch.setattr(weak.XorLink, "seal", fresh)
    assert not lab.run_attack(python_lab, 1)
