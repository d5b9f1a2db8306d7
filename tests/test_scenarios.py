"""Scenarios: built-ins, user YAML, the shock engine and run-time shocks."""

import numpy as np
import pytest

from finsim_mesa import ConfigError, FinancialModel, ShockError, get_scenario, list_scenarios
from finsim_mesa.scenarios import Scenario, register_scenario

BUILTIN = ("normal", "liquidity_crisis", "asset_crash", "systemic")


def test_builtins_are_documented():
    scs = list_scenarios()
    for name in BUILTIN:
        assert name in scs
        assert len(scs[name].description) > 40


def test_user_yaml_scenario(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ndescription: a crash at step 2\nprice_volatility: 0\n"
                    "crash_step: 2\ncrash_magnitude: 0.3\n")
    m = FinancialModel(n_banks=10, scenario=str(path), brain="passive", rng=1)
    assert m.scenario_name == "mine"
    m.step()
    p1 = m.ledger.prices[0]
    m.step()
    # the crash lowers the price by 30% (plus this step's fire-sale impact)
    assert m.ledger.prices[0] <= 0.7 * p1 + 1e-12
    assert any(s["kind"] == "price_crash" and s["step"] == 2 for s in m.shock_log)


@pytest.mark.parametrize(("content", "needle"), [
    ("name: x\ncrash_magnitude: 1.5\n", "crash_magnitude"),
    ("name: x\nfunding_stres: 0.1\n", "unknown field"),
    ("name: x\nfunding_start: 10\nfunding_end: 5\n", "funding_end"),
    ("[1, 2]\n", "mapping"),
])
def test_bad_scenario_file(tmp_path, content, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=needle):
        get_scenario(str(path))


def test_register_scenario_and_duplicate(monkeypatch):
    import finsim_mesa.scenarios as registry

    # a private copy of the registry: the scenario must not leak into other tests
    # (the Solara controls list every registered scenario)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    sc = register_scenario({"name": "test_only_calm", "price_volatility": 0.0}, overwrite=True)
    assert get_scenario("test_only_calm") is sc
    with pytest.raises(ConfigError, match="already exists"):
        register_scenario(Scenario(name="normal"))


def test_systemic_defaults_the_largest_banks_at_its_step():
    m = FinancialModel(n_banks=30, scenario="systemic", brain="passive", rng=4)
    size = m.sheets.total_assets.copy()
    m.run_for(15)
    forced = [s for s in m.shock_log if s["kind"] == "default"]
    assert forced and forced[0]["step"] == 15
    assert sorted(forced[0]["banks"]) == sorted(np.argsort(size)[-2:].tolist())
    assert m.ledger.defaulted[forced[0]["banks"]].all()


def test_funding_run_withdraws_deposits():
    sc = Scenario(name="run_only", funding_stress=0.2, funding_stress_probability=1.0,
                  price_volatility=0.0)
    m = FinancialModel(n_banks=10, scenario=sc, brain="passive", rng=2)
    dep0 = m.ledger.deposits.sum()
    out0 = m.ledger.external_out["external_creditors"]
    m.step()
    paid = m.ledger.external_out["external_creditors"] - out0
    # the run is set in the shock stage (before interest is capitalised in the
    # settle stage): every bank pays out 20% of its deposits at the step's start
    assert paid == pytest.approx(0.2 * dep0, rel=1e-12)
    # interest is capitalised on all deposits (settle), then the run leaves (clear)
    assert m.ledger.deposits.sum() == pytest.approx(dep0 * (1 + m.config.deposit_rate - 0.2))


def test_apply_shock_kinds_and_effects():
    m = FinancialModel(n_banks=12, scenario="normal", brain="passive", rng=3)
    p0 = m.ledger.prices.copy()
    m.apply_shock("price_crash", 0.2)
    np.testing.assert_allclose(m.ledger.prices, 0.8 * p0)
    eq = m.ledger.equity[[1, 2]].copy()
    m.apply_shock("loss", 0.5, banks=[1, 2])
    np.testing.assert_allclose(m.ledger.equity[[1, 2]], 0.5 * eq)
    m.apply_shock("default", banks=[5])
    assert m.ledger.defaulted[5] and m.banks[5].defaulted
    m.apply_shock("funding_withdrawal", 0.5, banks=[0])
    m.step()
    assert m.ledger.resolved[5]  # resolved in the next clearing
    m.check()


@pytest.mark.parametrize(("args", "needle"), [
    (("meteor", 0.1), "unknown"),
    (("price_crash", 1.0), "out of range"),
    (("price_crash", float("nan")), "out of range"),
    (("loss", 0.1), "needs banks"),
    (("default",), "needs banks"),
    (("funding_withdrawal", "lots"), "must be a number"),
])
def test_bad_shocks_are_clear_errors_and_change_nothing(args, needle):
    m = FinancialModel(n_banks=8, brain="passive", rng=1)
    before = m.ledger.snapshot()
    with pytest.raises(ShockError, match=needle):
        m.apply_shock(*args)
    assert np.array_equal(before["cash"], m.ledger.cash)
    assert np.array_equal(before["prices"], m.ledger.prices)


def test_bad_bank_ids():
    m = FinancialModel(n_banks=8, brain="passive", rng=1)
    with pytest.raises(ShockError, match=r"0\.\.7"):
        m.apply_shock("loss", 0.1, banks=[8])
    with pytest.raises(ShockError, match="non-empty"):
        m.apply_shock("loss", 0.1, banks=[])
    assert not m.ledger.defaulted.any()
