"""The observation each bank sees: one row per bank, built for all banks at once.

``OBS_FIELDS`` lists the columns in order with their meaning and scale; brains
index columns by name through ``OBS``. With the infrastructure layer on, the
8 columns of ``INFRA_OBS_FIELDS`` follow (observation width 24).
"""

from __future__ import annotations

OBS_FIELDS: tuple[tuple[str, str], ...] = (
    ("capital_ratio", "equity / risk-weighted assets, clipped to [-1, 1]"),
    ("leverage", "equity / total assets, clipped to [-1, 1]"),
    ("cash_ratio", "cash / total assets, in [0, 1]"),
    ("liquidity_coverage", "cash / (interbank liabilities due in 2 steps + pending "
                           "withdrawals + 10% deposit run-off), clipped to [0, 5], divided by 5"),
    ("interbank_assets", "interbank loans receivable / total assets, in [0, 1]"),
    ("interbank_liabilities", "interbank loans payable / total assets, clipped to [0, 1]"),
    ("deposit_funding", "deposits / total assets, clipped to [0, 1]"),
    ("due_next", "interbank debt due next step / total assets, clipped to [0, 1]"),
    ("counterparty_stress", "exposure-weighted mean distress of the bank's borrowers, [0, 1]"),
    ("neighbour_defaults", "share of network neighbours in default, [0, 1]"),
    ("price", "asset price index / initial price, clipped to [0, 2]"),
    ("price_trend", "last step's log price change x 10, clipped to [-1, 1]"),
    ("interbank_rate", "interbank rate / (base rate + stress spread), in [0, 1]"),
    ("market_stress", "max(scenario stress level, system stress index), in [0, 1]"),
    ("own_distress", "1 - equity / initial equity, clipped to [0, 1]"),
    ("size", "log(total assets / initial mean total assets) / 3, clipped to [-1, 1]"),
)

INFRA_OBS_FIELDS: tuple[tuple[str, str], ...] = (
    ("exchange_congestion", "own exchange's utilisation last step (demand / capacity), "
                            "clipped to [0, 2], divided by 2"),
    ("exchange_fee_level", "(fee rate / base fee - 1) / fee slope: 0 calm, 1 at one unit of "
                           "utilisation above the threshold; clipped to [0, 1]"),
    ("queue_backlog", "money waiting at own exchange / its capacity, clipped to [0, 3], "
                      "divided by 3"),
    ("expected_delay", "mean wait of orders processed last step / max_order_wait, [0, 1]"),
    ("ccp_margin_rate", "margin per unit of cleared borrowing (initial margin scaled up as "
                        "the collateral price falls), [0, 1]"),
    ("posted_margin", "own margin posted at all CCPs / total assets, [0, 1]"),
    ("net_ccp_exposure", "(cleared lending - cleared borrowing) / total assets, [-1, 1]"),
    ("default_fund_health", "own CCP's default fund left / initial fund, [0, 1] "
                            "(1 without CCPs)"),
)

OBS: dict[str, int] = {name: i for i, (name, _) in enumerate(OBS_FIELDS + INFRA_OBS_FIELDS)}
OBS_DIM = len(OBS_FIELDS)
INFRA_OBS_DIM = len(INFRA_OBS_FIELDS)

ACTIONS: tuple[tuple[str, str], ...] = (
    ("lend", "offer this share of lendable cash (cash above the reserve target, times "
             "max_lend_fraction) to network neighbours that ask to borrow"),
    ("hoard", "refuse to roll over this share of the bank's interbank loans maturing now "
              "(the borrower must repay them), and raise the cash reserve target from "
              "reserve_ratio (0) to liquidity_share (1) of total assets"),
    ("sell", "sell this share of max_sell_fraction of illiquid holdings at the market price "
             "less sale_discount"),
    ("borrow", "ask neighbours for this share of max_borrow_fraction x total assets"),
)
ACTION_NAMES = tuple(a for a, _ in ACTIONS)
