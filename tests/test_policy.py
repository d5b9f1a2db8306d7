"""The numpy actor brain and the shipped policy (brain="mappo"): no torch needed,
except for the comparison with the torch actor."""

import json
import shutil

import numpy as np
import pytest

from finsim_mesa import FinancialModel
from finsim_mesa.agents.actor import SHIPPED, ActorBrain, MappoBrain, load_actor_folder
from finsim_mesa.errors import CheckpointError, FinsimError
from finsim_mesa.observation import observation_names


def test_numpy_actor_matches_the_torch_actor():
    """A second implementation: torch's Beta mean and concentrations."""
    torch = pytest.importorskip("torch")
    from finsim_mesa.learning.mappo import Actor

    torch.manual_seed(0)
    for normalize in (False, True):
        actor = Actor(16, 32, normalize_obs=normalize).eval()
        if normalize:
            actor.update_obs_stats(np.random.default_rng(1).normal(0.3, 2.0, (500, 16)))
        with torch.no_grad():  # a head that is not near zero: the test must see it
            actor.head.weight.normal_(0, 0.5)
        state = {k: v.numpy() for k, v in actor.state_dict().items() if k != "obs_count"}
        brain = ActorBrain(state)
        obs = np.random.default_rng(2).normal(0, 3, (64, 16))
        with torch.no_grad():
            d = actor.distribution(torch.as_tensor(np.clip(obs, -10, 10), dtype=torch.float32))
        a, b = brain.distribution(obs)
        np.testing.assert_allclose(a, d.concentration1.numpy(), rtol=1e-5)
        np.testing.assert_allclose(b, d.concentration0.numpy(), rtol=1e-5)
        np.testing.assert_allclose(brain.act(obs), d.mean.numpy(), rtol=1e-5, atol=1e-6)


def test_shipped_policy_is_small_and_documents_its_training():
    size = sum(p.stat().st_size for p in SHIPPED.iterdir())
    assert size < 1_000_000
    meta = json.loads((SHIPPED / "meta.json").read_text())
    assert meta["command"].startswith("finsim train")
    assert meta["obs_fields"][: meta["obs_dim"]] == meta["obs_fields"]
    assert len(meta["check"]["seeds"]) == len(meta["check"]["scores"]) >= 2


def test_shipped_policy_reproduces_its_recorded_scores():
    """What CI checks: the policy loads, acts, and scores the check seeds as
    recorded when it was exported."""
    from finsim_mesa.learning.ship import check_scores

    meta = json.loads((SHIPPED / "meta.json").read_text())
    got = check_scores(MappoBrain(), meta["env"], tuple(meta["check"]["seeds"]))
    np.testing.assert_allclose(got, meta["check"]["scores"], rtol=1e-6, atol=1e-9)


def test_mappo_by_name_in_a_model_and_reads_the_state():
    m = FinancialModel(n_banks=30, steps=5, brain="mappo", rng=4)
    m.run_for(5)
    assert m.t == 5 and isinstance(m.brains.groups[0][0], MappoBrain)
    brain = MappoBrain()
    brain.setup(m)
    obs = m.observe()
    a = brain.act(obs)
    assert a.shape == (30, 4) and np.all((a > 0) & (a < 1))
    # the actions depend on the observation (not a constant by construction)
    calm, crisis = obs.copy(), obs.copy()
    col = observation_names(m.config, m.market.names).index("market_stress")
    calm[:, col], crisis[:, col] = 0.0, 0.8
    assert not np.allclose(brain.act(calm), brain.act(crisis), atol=1e-7)


def test_mappo_reads_columns_by_name_in_a_multi_asset_model():
    m = FinancialModel(n_banks=20, steps=3, n_assets=3, brain="mappo", rng=1)
    names = observation_names(m.config, m.market.names)
    assert len(names) > 16  # price_<class> columns appended
    m.run_for(3)
    brain = MappoBrain()
    brain.setup(m)
    obs = m.observe()
    np.testing.assert_array_equal(brain.act(obs), brain.act(np.hstack([obs[:, :16],
                                                                       obs[:, 16:] * 7])))


def test_a_policy_needs_the_columns_it_was_trained_on():
    """The shipped policy (16 bank columns) acts in a model with the
    infrastructure layer (it picks its columns by name); a policy trained with
    the layer (24 columns) cannot act without it: a clear error."""
    m = FinancialModel(n_banks=20, steps=3, n_exchanges=2, n_ccps=1, brain="mappo", rng=1)
    m.run_for(3)
    infra = observation_names(m.config, m.market.names)
    assert len(infra) == 24
    rng = np.random.default_rng(0)
    w = {"body.0.weight": rng.normal(size=(8, 24)), "body.0.bias": np.zeros(8),
         "body.2.weight": rng.normal(size=(8, 8)), "body.2.bias": np.zeros(8),
         "head.weight": rng.normal(size=(8, 8)), "head.bias": np.zeros(8)}
    with pytest.raises(FinsimError, match=r"posted_margin.*infrastructure layer on"):
        FinancialModel(n_banks=20, steps=3, brain=ActorBrain(w, infra), rng=1)


def test_damaged_policy_folders_give_clear_errors(tmp_path):
    folder = tmp_path / "p"
    shutil.copytree(SHIPPED, folder)
    assert load_actor_folder(folder).obs_dim == 16
    (folder / "weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read the policy"):
        load_actor_folder(folder)
    shutil.copy(SHIPPED / "weights.safetensors", folder)
    meta = json.loads((folder / "meta.json").read_text())
    meta["obs_fields"] = meta["obs_fields"][:5]
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="observation fields"):
        load_actor_folder(folder)
    (folder / "meta.json").unlink()
    with pytest.raises(CheckpointError, match=r"meta\.json is missing"):
        load_actor_folder(folder)
    with pytest.raises(CheckpointError, match="lack"):
        ActorBrain({"body.0.weight": np.zeros((4, 16))})


def test_mappo_in_a_sweep_and_the_cli(capsys):
    from finsim_mesa.cli import main
    from finsim_mesa.sweeps import run_sweep

    df = run_sweep({"brain": ["mappo", "passive"], "n_banks": 10}, seeds=[0], steps=3,
                   progress=False)
    assert set(df.brain) == {"mappo", "passive"}
    final = df[df.step == 3].set_index("brain")
    assert final.loc["mappo", "total_equity"] != final.loc["passive", "total_equity"]
    assert main(["simulate", "--brain", "mappo", "--banks", "12", "--steps", "3"]) == 0
    assert "12 banks" in capsys.readouterr().out


def test_mappo_through_the_rest_api(tmp_path):
    """brain="mappo" in the API: the same metrics as the model run directly."""
    pytest.importorskip("fastapi", reason="the REST API needs the 'api' extra")
    from fastapi.testclient import TestClient

    from finsim_mesa.api import create_app

    with TestClient(create_app(models_dir=str(tmp_path / "models"))) as c:
        r = c.post("/simulation/init", json={"num_banks": 20, "scenario": "systemic",
                                             "seed": 5, "brain": "mappo"})
        assert r.status_code == 200, r.text
        body = c.post("/simulation/run?num_steps=20").json()
    m = FinancialModel(n_banks=20, scenario="systemic", brain="mappo", rng=5,
                       agent_collect_every=0)
    m.run_for(20)
    assert body["metrics"]["total_equity"] == pytest.approx(m.measures.total_equity,
                                                            rel=1e-12)


def test_partial_dependence_sees_what_a_brain_reads():
    """A hand-written brain whose hoard is the market_stress column and whose
    other actions are constant: the table shows exactly the column's 5-95%
    range on hoard and 0 elsewhere; a constant brain moves 0 everywhere."""
    from finsim_mesa.agents.brains import ConstantBrain
    from finsim_mesa.dependence import gather_observations, partial_dependence
    from finsim_mesa.observation import OBS

    class Reader:
        name = "reader"

        def act(self, obs):
            a = np.full((len(obs), 4), 0.3)
            a[:, 1] = np.clip(obs[:, OBS["market_stress"]], 0, 1)
            return a

    X, names = gather_observations(Reader(), [10_000, 10_001], steps=10)
    assert X.shape[1] == len(names) == 16
    pd_ = partial_dependence(Reader(), X, names).set_index("field")
    lo, hi = np.percentile(X[:, OBS["market_stress"]], [5, 95])
    assert pd_.loc["market_stress", "hoard"] == pytest.approx(np.clip(hi, 0, 1)
                                                              - np.clip(lo, 0, 1))
    rest = pd_.drop(index="market_stress")[["lend", "hoard", "sell", "borrow"]]
    assert np.abs(rest.to_numpy()).max() == 0.0
    const = partial_dependence(ConstantBrain([0, 1, 0, 0]), X, names)
    assert np.abs(const[["lend", "hoard", "sell", "borrow"]].to_numpy()).max() == 0.0
