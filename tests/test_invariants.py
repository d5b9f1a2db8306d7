"""Accounting identities and money conservation after every step, over many
random configurations (property-based)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finsim_mesa import FinancialModel
from finsim_mesa.agents.brains import BRAINS
from finsim_mesa.config import TOPOLOGIES
from finsim_mesa.scenarios import list_scenarios

configs = st.fixed_dictionaries({
    "n_banks": st.integers(4, 40),
    "topology": st.sampled_from(TOPOLOGIES),
    "scenario": st.sampled_from(sorted(list_scenarios())),
    "brain": st.sampled_from(sorted(BRAINS)),
    "capital_ratio": st.floats(0.07, 0.25),
    "interbank_share": st.floats(0.0, 0.4),
    "liquidity_share": st.floats(0.0, 0.3),
    "marketable_share": st.floats(0.0, 1.0),
    "size_dispersion": st.floats(0.0, 2.0),
    "loan_maturity": st.integers(1, 6),
    "n_assets": st.integers(1, 3),
    "price_impact": st.floats(0.0, 3.0),
    "default_cost_alpha": st.floats(0.3, 1.0),
    "default_cost_beta": st.floats(0.3, 1.0),
    "liquidation_discount": st.floats(0.0, 0.6),
    "forced_deleveraging": st.booleans(),
    "n_exchanges": st.integers(0, 2),
    "n_ccps": st.integers(0, 1),
    "exchange_capacity": st.floats(0.0002, 0.02),
    "ccp_clearing_share": st.floats(0.0, 1.0),
    "initial_margin_rate": st.floats(0.0, 0.3),
    "default_fund_rate": st.floats(0.0, 0.05),
    "rng": st.integers(0, 2**32 - 1),
})


def valid_config(params: dict) -> dict:
    """A drawn config made consistent: capital requirement half the capital ratio,
    liquid + interbank shares within 0.95, BA edges below the bank count, no CCP
    without an exchange."""
    params = dict(params)
    params["capital_requirement"] = params["capital_ratio"] / 2
    params["liquidity_share"] = min(params["liquidity_share"], 0.95 - params["interbank_share"])
    if params["topology"] == "barabasi_albert":
        params["edges_per_node"] = min(2, params["n_banks"] - 1)
    if params["n_exchanges"] == 0:
        params["n_ccps"] = 0
    return params


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_identities_hold_after_every_step(params):
    params = valid_config(params)
    m = FinancialModel(steps=25, **params)
    m.check()
    for _ in range(25):
        m.step()
        m.check()  # assets - liabilities = equity; money conserved; no negative stocks
        L = m.ledger
        # defaulted and resolved banks hold nothing and owe nothing
        gone = L.resolved
        assert np.all(L.cash[gone] == 0) and np.all(L.deposits[gone] <= 1e-9)
        assert not np.isin(np.flatnonzero(gone), L.loans.lender).any()
        assert not np.isin(np.flatnonzero(gone), L.loans.borrower).any()
        assert (L.loans.principal >= -1e-12).all()
        obs = m.decisions.observations
        assert np.all(np.isfinite(obs)) and np.all(np.isfinite(m.reward.per_bank))
        if not m.running:
            break


def test_conservation_is_a_real_check():
    """Corrupting the ledger behind its back is caught."""
    import pytest

    from finsim_mesa.errors import AccountingError

    m = FinancialModel(n_banks=10, rng=1)
    m.step()
    m.ledger.cash[3] += 1.0  # money from nowhere: breaks both identities
    with pytest.raises(AccountingError):
        m.check()
    m = FinancialModel(n_banks=10, rng=1)
    m.ledger.equity[2] += 1.0
    with pytest.raises(AccountingError, match="bank 2"):
        m.check()
