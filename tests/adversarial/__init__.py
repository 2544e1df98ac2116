"""The adversarial suite: the trust boundary tried as an attacker would (see harness.py)."""
