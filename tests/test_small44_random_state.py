"""helper-44 (issue 15): a step's transaction copies Mesa's ``model.random`` as
CPython's raw state (``pyrandom.save``), not ``getstate()``'s 625-int tuple. The
reference is ``random.Random.getstate`` / ``setstate`` itself: the raw copy stands
for the same state, puts back the same generator, and a failed step that drew
from, reseeded, set or replaced the generator in any way leaves it as
``getstate()`` saw it before the step.
"""

import copy
import random

import numpy as np
import pytest

from finsim_mesa import FinancialModel, pyrandom
from finsim_mesa.state import snapshot_model


def test_the_quick_copy_is_used_here():
    # (CPython 3.11 / 3.12, the project's two legs: if this fails the layout check
    # refused the quick copy, which is safe but slower)
    assert pyrandom.AT is not None
    assert type(pyrandom.save(random.Random(1))) is pyrandom.RawState


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**80 + 7, "text", None])
def test_raw_state_is_getstate(seed):
    r = random.Random(seed)
    rng = np.random.default_rng(0)
    for _ in range(40):
        for _ in range(int(rng.integers(0, 700))):  # every index, across a twist
            r.random()
        if rng.random() < 0.3:
            r.gauss(0.0, 1.0)  # gauss_next set (or used)
        saved, want = pyrandom.save(r), r.getstate()
        assert saved.as_tuple() == want
        draws = [r.random() for _ in range(5)], r.gauss(1.0, 2.0), r.getrandbits(3000)
        other = random.Random(99)
        pyrandom.put_back(r, saved)  # raw bytes back into the same generator
        pyrandom.put_back(other, saved)  # and into another one
        assert r.getstate() == want == other.getstate()
        assert ([r.random() for _ in range(5)], r.gauss(1.0, 2.0), r.getrandbits(3000)) == draws
        assert ([other.random() for _ in range(5)], other.gauss(1.0, 2.0),
                other.getrandbits(3000)) == draws


def test_other_generators_use_getstate():
    class Mine(random.Random):
        pass

    r = Mine(3)
    r.random()
    saved = pyrandom.save(r)
    assert type(saved) is tuple and saved == r.getstate()
    r.random()
    pyrandom.put_back(r, saved)
    assert r.getstate() == saved
    # a raw state put into a subclass goes through its setstate
    raw = pyrandom.save(random.Random(5))
    pyrandom.put_back(r, raw)
    assert r.getstate() == random.Random(5).getstate()


class _Fails:
    """A brain that does something to model.random, then raises."""

    def __init__(self, model, how):
        self.model, self.how = model, how

    def act(self, obs):
        r = self.model.random
        if self.how == "bound":
            draw = r.random
            for _ in range(1000):
                draw()
        elif self.how == "gauss":
            r.gauss(0.0, 1.0)
        elif self.how == "seed":
            r.seed(42)
        elif self.how == "setstate":
            r.setstate(random.Random(8).getstate())
        elif self.how == "replace":
            self.model.random = random.Random(9)
        elif self.how == "replace_subclass":
            self.model.random = type("R", (random.Random,), {})(9)
        raise RuntimeError("brain failed")


@pytest.mark.parametrize("how", ["bound", "gauss", "seed", "setstate", "replace",
                                 "replace_subclass"])
def test_failed_step_puts_the_generator_back(how):
    m = FinancialModel(n_banks=12, brain="rule_based", rng=4, steps=100)
    m.run_for(3)
    m.random.gauss(0.0, 1.0)  # a gauss_next to keep
    before = m.random.getstate()
    snap = copy.deepcopy(snapshot_model(m))
    m.set_brains(_Fails(m, how))
    with pytest.raises(RuntimeError, match="brain failed"):
        m.step()
    assert m.random.getstate() == before
    assert snapshot_model(m)["random"] == snap["random"] == before
    # and the run goes on as one that never tried the step
    twin = FinancialModel(n_banks=12, brain="rule_based", rng=4, steps=100)
    twin.run_for(3)
    twin.random.gauss(0.0, 1.0)
    m.set_brains("rule_based")
    m.step()
    twin.step()
    assert m.random.getstate() == twin.random.getstate()
    assert m.ledger.equity.tobytes() == twin.ledger.equity.tobytes()


def test_many_generators_and_reused_ids():
    # the kept views (at most 64) belong to their generators: a new generator,
    # perhaps at a freed one's address, gets its own state, never another's
    for i in range(300):
        r = random.Random(i)
        for _ in range(i % 7):
            r.random()
        assert pyrandom.save(r).as_tuple() == r.getstate()
        del r
    many = [random.Random(i) for i in range(100)]
    for _ in range(2):
        for i, r in enumerate(many):
            r.getrandbits(i + 1)
            assert pyrandom.save(r).as_tuple() == r.getstate()
    assert len(pyrandom._VIEWS) <= 64
