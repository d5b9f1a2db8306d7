"""helper-35: the fire-sale loop computes the lenders' interbank assets once
(no round changes the loan book); every round's risk-weighted assets are still
``Ledger.risk_weighted_assets`` computed afresh at that round, bit for bit."""

import pytest

from finsim_mesa import FinancialModel, market


@pytest.mark.parametrize("scenario,seed", [("systemic", 3), ("asset_crash", 4),
                                           ("liquidity_crisis", 5)])
def test_each_rounds_rwa_is_the_ledgers_own(monkeypatch, scenario, seed):
    m = FinancialModel(n_banks=300, scenario=scenario, rng=seed, steps=30,
                       capital_requirement=0.09)
    seen = []
    real = market.deleveraging_units

    def checked(eq, rwa, holdings, prices, target, breach, ranks):
        want = m.ledger.risk_weighted_assets(m.config.interbank_risk_weight)
        seen.append(rwa.tobytes() == want.tobytes())
        return real(eq, rwa, holdings, prices, target, breach, ranks)

    monkeypatch.setattr(market, "deleveraging_units", checked)
    rounds = []
    real_loop = market.fire_sale_loop

    def loop(*args, **kwargs):
        before = len(seen)
        out = real_loop(*args, **kwargs)
        rounds.append(len(seen) - before)  # rounds that read the risk-weighted assets
        return out

    monkeypatch.setattr(market, "fire_sale_loop", loop)
    m.run_for(30)
    assert seen and all(seen)
    assert max(rounds) >= 2  # rounds after the first read the kept sums
