"""The attack lab: INSECURE teaching designs (weak.py) and real attacks on them and on seclink (lab.py)."""
