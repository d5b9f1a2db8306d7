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
