"""Golden trajectories: the model's behaviour is bit-identical to the recorded one.

The fingerprints in ``tests/golden/golden.json`` were recorded before the
architecture refactor (issue 11) and must not change when code moves. They are
the same on both CI legs (Python 3.11 + Mesa 3.3 and Python 3.12 + newest Mesa).
Regenerate them (``python tests/golden/make_golden.py``) only for a change that
is meant to change results, and say so in the commit.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))
import make_golden

RECORDED = json.loads(make_golden.GOLDEN.read_text())


def test_every_case_is_recorded():
    assert set(RECORDED) == set(make_golden.CASES)


@pytest.mark.parametrize("name", sorted(make_golden.CASES))
def test_trajectory_is_bit_identical(name):
    got: dict[str, str] = {}

    def fingerprint(key, value):
        got[key] = value if isinstance(value, str) else make_golden.digest(value)

    make_golden.run_case(name, make_golden.CASES[name], fingerprint)
    want = RECORDED[name]
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    changed = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    assert not (missing or extra or changed), (
        f"{name}: changed {changed[:20]}, missing {missing[:20]}, new {extra[:20]}")


def test_digest_sees_the_last_bit_and_ignores_the_sign_of_zero():
    import numpy as np

    x = np.array([1.0, 0.0, np.nan])
    y = x.copy()
    y[0] = np.nextafter(1.0, 2.0)
    assert make_golden.digest(x) != make_golden.digest(y)
    assert make_golden.digest(x) == make_golden.digest(np.array([1.0, -0.0, np.nan]))
