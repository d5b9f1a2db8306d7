"""The update's reported KL divergence covers the rows it trains on only.

Padded banks (mixture episodes of fewer banks than the widest), defaulted and
frozen banks carry placeholder actions whose log-probability under the policy
has nothing to do with the stored one; they are masked out of the losses, and
were not out of ``approx_kl``, which then read 5-14 where the policy had hardly
moved.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the learn extra (torch) is not installed")

from finsim_mesa.learning.mappo import MAPPO, MAPPOConfig  # noqa: E402


def _batch(agent: MAPPO, T: int, n: int, d: int, rng: np.random.Generator) -> dict:
    obs = rng.normal(size=(T, n, d)).astype(np.float32)
    acts, logps = zip(*(agent.act(o) for o in obs), strict=True)
    return {"obs": obs, "actions": np.stack(acts), "logp": np.stack(logps),
            "advantages": rng.normal(size=(T, n)).astype(np.float32),
            "returns": rng.normal(size=(T, n)).astype(np.float32),
            "alive": np.ones((T, n), dtype=bool), "train_mask": np.ones((T, n), dtype=bool)}


def _reference_kl(agent: MAPPO, batch: dict, rows: np.ndarray) -> float:
    """k3 = (r - 1) - log r averaged over ``rows`` (a (T, n) mask), before any step."""
    with torch.no_grad():
        dist = agent.actor.distribution(torch.as_tensor(batch["obs"][rows]))
        logp = dist.log_prob(torch.as_tensor(batch["actions"][rows]).clamp(1e-6, 1 - 1e-6))
        ratio = torch.exp(logp.sum(-1) - torch.as_tensor(batch["logp"][rows]))
        return float(((ratio - 1) - torch.log(ratio)).mean())


@pytest.mark.parametrize("stale", [False, True])
def test_approx_kl_leaves_out_masked_rows(stale):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    T, n, d = 6, 5, 7
    # one epoch, one minibatch: the ratio is taken before the optimiser's step
    agent = MAPPO(n, d, MAPPOConfig(update_epochs=1, minibatches=1, hidden=16))
    batch = _batch(agent, T, n, d, rng)
    batch["train_mask"][:, 3:] = False  # padded banks: placeholder actions and logp
    batch["alive"][:, 3:] = False
    batch["actions"][:, 3:] = 0.0
    batch["logp"][:, 3:] = 0.0
    batch["logp"][0, 4] = 1e4  # its ratio underflows to 0: an infinite term, left out
    if stale:  # trained rows whose stored logp no longer fits the policy: KL > 0
        batch["logp"][:, :3] += rng.normal(scale=0.5, size=(T, 3)).astype(np.float32)
    rows = batch["train_mask"].copy()
    want = _reference_kl(agent, batch, rows)
    placeholders = _reference_kl(agent, batch, ~rows)  # what used to dominate the figure
    got = agent.update(batch)["approx_kl"]
    assert got == pytest.approx(want, rel=1e-5, abs=1e-7)
    if stale:
        assert want > 0.01
    else:
        assert abs(got) < 1e-6  # the same policy that sampled: ratio 1 on every trained row
    assert placeholders > 1.0  # inf here
    assert np.isfinite(got)


def test_a_placeholder_rows_stored_logp_does_not_reach_the_update(monkeypatch):
    """A row not trained on (padded, defaulted, frozen) may carry any stored
    log-probability: the losses and the weights after the update are those of
    the same batch with that log-probability set to 0 (before: ratio
    exp(logp + 1e4) = inf, inf x 0 = NaN, 'gradient norm is not finite').
    The minibatches are shuffled with a seed taken from the stored
    log-probabilities; here every shuffle gets the same generator, so that the
    three updates see their rows in the same order."""
    real = np.random.default_rng
    monkeypatch.setattr(np.random, "default_rng", lambda seed=None: real(0))
    T, n, d = 5, 4, 6
    results = []
    for stored in (0.0, -1e4, 1e4):
        torch.manual_seed(4)
        agent = MAPPO(n, d, MAPPOConfig(update_epochs=2, minibatches=2, hidden=16))
        batch = _batch(agent, T, n, d, np.random.default_rng())
        batch["train_mask"][:, 2:] = False
        batch["alive"][:, 2:] = False
        batch["actions"][:, 2:] = 0.0
        batch["logp"][:, 2:] = stored
        stats = agent.update(batch)
        results.append((stats, [p.detach().clone() for p in agent.actor.parameters()]))
    (ref_stats, ref_w), *others = results
    assert all(np.isfinite(v) for v in ref_stats.values())
    for stats, w in others:
        assert stats == ref_stats
        for a, b in zip(w, ref_w, strict=True):
            assert torch.equal(a, b)
