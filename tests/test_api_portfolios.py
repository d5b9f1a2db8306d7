"""The REST API shows a simulation's asset classes (issue 13): GET /simulation
lists each class (name, prices, impact, depth, units held, liquidity rank) and
GET /metrics/bank/{id} a bank's holdings per class. References: the EBA 2018
table read directly (units held at step 0), a FinancialModel built and run
directly with the same seed, and the configuration's own defaults."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the REST API needs the 'api' extra")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from fastapi.testclient import TestClient  # noqa: E402

from finsim_mesa.api import create_app  # noqa: E402
from finsim_mesa.balance_sheets import read_table  # noqa: E402
from finsim_mesa.config import ModelConfig  # noqa: E402
from finsim_mesa.model import FinancialModel  # noqa: E402

KEYS = {"name", "initial_price", "price", "relative_price", "price_impact", "market_depth",
        "units_held", "liquidity_rank"}


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(models_dir=str(tmp_path / "models"))) as c:
        yield c


def ok(r):
    assert r.status_code == 200, r.text
    return r.json()


def test_an_eba_simulation_shows_its_two_classes_and_each_banks_holdings(client):
    info = ok(client.post("/simulation/init", json={"seed": 1, "config": {
        "balance_sheets": "eba2018"}}))
    assert info["balance_sheets"] == "eba2018" and info["n_banks"] == 48
    classes = info["asset_classes"]
    assert [c["name"] for c in classes] == ["corporate_bonds", "government_bonds"]
    assert all(set(c) == KEYS for c in classes)
    table = read_table("eba2018")  # at price 1 the table's amounts are the units held
    expected = [float(np.sum(table.debt_securities - table.government_bonds)),
                float(np.sum(table.government_bonds))]
    for c, units in zip(classes, expected, strict=True):
        assert c["units_held"] == pytest.approx(units, rel=1e-12)
        assert c["market_depth"] == pytest.approx(units, rel=1e-12)  # no depth given
        assert (c["initial_price"], c["price"], c["relative_price"]) == (1.0, 1.0, 1.0)
        assert c["price_impact"] == ModelConfig().price_impact
        assert c["liquidity_rank"] == 0
    ok(client.post("/simulation/run", params={"num_steps": 3}))
    m = FinancialModel(rng=1, balance_sheets="eba2018", agent_collect_every=0)
    m.run_for(3)
    classes = ok(client.get("/simulation"))["asset_classes"]
    prices = ok(client.get("/metrics"))["prices"]
    for j, c in enumerate(classes):
        assert c["price"] == m.market.prices[j] and c["price"] < 1.0  # sales moved it
        assert c["relative_price"] == prices[c["name"]]
        assert c["units_held"] == pytest.approx(m.ledger.holdings[:, j].sum(), rel=1e-12)
    for bank in (0, 7, 47):
        got = ok(client.get(f"/metrics/bank/{bank}"))
        holdings = got["holdings"]
        assert list(holdings) == ["corporate_bonds", "government_bonds"]
        for j, name in enumerate(holdings):
            assert holdings[name]["units"] == m.ledger.holdings[bank, j]
            assert holdings[name]["value"] == pytest.approx(
                m.ledger.holdings[bank, j] * m.market.prices[j], rel=1e-12)
        total = sum(h["value"] for h in holdings.values())
        assert total == pytest.approx(got["balance_sheet"]["securities"], rel=1e-9, abs=1e-9)


def test_generated_classes_are_named_and_unranked(client):
    info = ok(client.post("/simulation/init", json={"seed": 2, "n_banks": 12, "config": {
        "n_assets": 3, "price_impact": 0.07}}))
    assert info["balance_sheets"] is None
    assert info["deleveraging_rule"] == ModelConfig().deleveraging_rule
    assert info["sale_order"] == ModelConfig().sale_order
    classes = info["asset_classes"]
    assert [c["name"] for c in classes] == ["asset_0", "asset_1", "asset_2"]
    assert [c["price_impact"] for c in classes] == [0.07] * 3
    assert [c["liquidity_rank"] for c in classes] == [None] * 3
    m = FinancialModel(rng=2, n_banks=12, n_assets=3, price_impact=0.07,
                       agent_collect_every=0)
    held = m.ledger.holdings.sum(axis=0)
    assert [c["units_held"] for c in classes] == pytest.approx(held.tolist(), rel=1e-12)
    # the list in GET /simulations is the same
    listed = {s["sim_id"]: s for s in ok(client.get("/simulations"))}
    assert listed[info["sim_id"]]["asset_classes"] == classes


def test_the_schema_describes_classes_and_holdings(client):
    comps = ok(client.get("/openapi.json"))["components"]["schemas"]
    info = comps["SimulationInfo"]["properties"]["asset_classes"]
    assert info["items"] == {"$ref": "#/components/schemas/AssetClassInfo"}
    assert set(comps["AssetClassInfo"]["properties"]) == KEYS
    assert "holdings" in comps["BankResponse"]["required"]
