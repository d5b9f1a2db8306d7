"""The exchange queue's shortcuts (constant columns without np.full's Python
layer, statistics without the frozen dataclass's setattr, shared empty
columns) against a plain first-in first-out reference written from the
documented rules, over random order streams, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from finsim_mesa.infrastructure.exchange import ExchangeQueue, ExchangeStats, _full, _stats


@pytest.mark.parametrize("value", [0, 7, -3, 2**40, 0.0, -0.0, 0.25, math.nan, math.inf,
                                   np.int64(4), np.float32(0.5), True, np.int8(-2)])
def test_full_is_numpys_full(value):
    for k in (0, 1, 5, 300):
        got, want = _full(k, value), np.full(k, value)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()


def test_stats_is_the_dataclass():
    kw = dict(step=3, demand=1.5, processed=1.0, processed_orders=2, waiting=0.5,
              waiting_orders=1, expired=0.0, expired_orders=0, utilisation=0.75,
              congested=False, fee_rate=0.001, fees=0.001, mean_delay=-0.0)
    got, want = _stats(**kw), ExchangeStats(**kw)
    assert got == want and repr(got) == repr(want) and hash(got) == hash(want)
    assert list(vars(got)) == list(vars(want))
    with pytest.raises(AttributeError):
        got.step = 4  # still frozen
    with pytest.raises(TypeError):
        _stats(step=1)


class Reference:
    """First-in first-out queue, order by order in plain Python (the rules of
    ExchangeQueue's docstring); sums as NumPy forms them where it matters."""

    def __init__(self, cap, thr, base, slope, wait):
        self.cap, self.thr, self.base, self.slope, self.wait = cap, thr, base, slope, wait
        self.orders, self.next_id = [], 0

    def submit(self, snd, rcv, amt, step, rate):
        for s, r, a, x in zip(snd, rcv, amt, rate, strict=True):
            self.orders.append((self.next_id, int(s), int(r), float(a), float(x), step, 0))
            self.next_id += 1

    def process(self, step):
        amounts = np.array([o[3] for o in self.orders])
        demand = float(amounts.sum()) if self.orders else 0.0
        util = demand / self.cap if self.orders else 0.0
        rate = self.base * (1.0 + self.slope * max(0.0, util - self.thr))
        running, done, gone, left = 0.0, [], [], []
        for o in self.orders:
            running += o[3]
            if running <= self.cap * (1 + 1e-12):  # (a prefix: amounts are positive)
                done.append(o)
            elif step - o[5] >= self.wait:
                gone.append(o)
            else:
                left.append(o)
        self.orders = left
        used = demand if not gone and not left else (
            float(np.array([o[3] for o in done]).sum()) if done else 0.0)
        delays = [step - o[5] for o in done]
        stats = ExchangeStats(
            step=step, demand=demand, processed=used, processed_orders=len(done),
            waiting=float(np.array([o[3] for o in left]).sum()) if left else 0.0,
            waiting_orders=len(left),
            expired=float(np.array([o[3] for o in gone]).sum()) if gone else 0.0,
            expired_orders=len(gone), utilisation=util, congested=util > self.thr,
            fee_rate=rate, fees=rate * used,
            mean_delay=sum(delays) / len(delays) if delays else 0.0)
        return done, gone, stats


def columns(rows):
    names = ("order_id", "sender", "receiver", "amount", "rate", "submitted", "kind")
    return {n: [r[i] for r in rows] for i, n in enumerate(names)}


@pytest.mark.parametrize("seed", range(6))
def test_queue_equals_a_plain_fifo(seed):
    rng = np.random.default_rng(seed)
    cap = float(rng.uniform(0.5, 5.0))
    args = (cap, 0.8, 0.0005, 4.0, int(rng.integers(0, 4)))
    q, ref = ExchangeQueue(*args), Reference(*args)
    for step in range(1, 40):
        k = int(rng.integers(0, 12)) if rng.random() < 0.8 else 0
        snd, rcv = rng.integers(0, 50, k), rng.integers(0, 50, k)
        amt = rng.uniform(0.01, 1.5, k)
        if rng.random() < 0.3:
            amt = amt * 1e-3  # everything fits
        rate = rng.uniform(0.0, 0.05, k)
        if k:
            q.submit(snd, rcv, amt, step, rate=rate, copy=bool(rng.random() < 0.5))
            ref.submit(snd, rcv, amt, step, rate)
        done, gone, stats = q.process(step)
        want_done, want_gone, want_stats = ref.process(step)
        assert stats == want_stats, step
        for got, want in ((done, want_done), (gone, want_gone)):
            w = columns(want)
            for name, col in got.items():
                assert col.tolist() == w[name], (step, name)
                assert col.dtype == (float if name in ("amount", "rate") else np.int64)
        assert q.backlog_orders == len(ref.orders)
        assert q.orders["amount"].tolist() == [o[3] for o in ref.orders]
