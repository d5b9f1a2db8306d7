"""Per-bank brains: rules written one bank at a time — the teaching path.

The model's brains are vectorised (``act(observations[b, d]) -> actions[b, 4]``,
one call for all banks that use the brain). A rule is often easier to read for
one bank::

    from finsim_mesa.agents.rules import PerBankBrain

    class SellWhenWeak(PerBankBrain):
        def decide(self, bank):
            if bank.observation["capital_ratio"] < 0.08:   # close to the requirement
                return (0.0, 0.5, 1.0, 0.0)                 # hoard some, sell
            return (0.5, 0.0, 0.0, 0.0)                     # else lend half

    model = FinancialModel(brain=SellWhenWeak(), rng=1)

or, with a plain function, ``PerBankBrain(my_rule)``. ``decide`` gets the
:class:`~finsim_mesa.agents.bank.Bank` agent: its balance sheet (``bank.cash``,
``bank.capital_ratio``, …), ``bank.observation`` (this step's observation by
column name), ``bank.neighbors()`` (its counterparties on the network) and
``bank.last_action``. It returns (lend, hoard, sell, borrow), each in [0, 1].

A per-bank brain runs a Python call per bank per step: slower than a
vectorised brain, with identical results for the same rule
(``tests/test_rules.py`` checks a rule against its vectorised twin).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from finsim_mesa.agents.brains import Brain
from finsim_mesa.errors import BrainError

if TYPE_CHECKING:
    from finsim_mesa.agents.bank import Bank

__all__ = ["PerBankBrain"]

Rule = Callable[["Bank"], Sequence[float]]


class PerBankBrain(Brain):
    """A brain that decides for one bank at a time.

    Args:
        decide: a function ``decide(bank) -> (lend, hoard, sell, borrow)``;
            leave it out in a subclass that defines the method.
        name: display name (default: the function's or the class's name).
    """

    name = "per_bank"
    per_bank = True  # the model passes the bank agents (see BrainSet.decide)

    def __init__(self, decide: Rule | None = None, name: str | None = None) -> None:
        if decide is not None and not callable(decide):
            raise TypeError(f"decide must be a function of the bank, got {decide!r}")
        self._rule = decide
        self.name = name or (getattr(decide, "__name__", None) if decide else None) \
            or type(self).__name__

    def decide(self, bank: Bank) -> Sequence[float]:
        """This bank's action (lend, hoard, sell, borrow), each in [0, 1]."""
        if self._rule is None:
            raise NotImplementedError(f"{type(self).__name__}: define decide(self, bank) or "
                                      "pass a function PerBankBrain(decide)")
        return self._rule(bank)

    def act_banks(self, banks: Sequence[Bank], observations: np.ndarray) -> np.ndarray:
        """Actions of ``banks``, shape (len(banks), 4): :meth:`decide` for each.

        Raises:
            BrainError: a decision that is not four numbers, naming the bank.
        """
        out = np.empty((len(banks), 4))
        for r, bank in enumerate(banks):
            a = self.decide(bank)
            try:
                out[r] = np.asarray(a, dtype=float).reshape(4)
            except (TypeError, ValueError):
                raise BrainError(f"brain '{self.name}' decided {a!r} for bank {bank.bank_id}; "
                                 "return four numbers (lend, hoard, sell, borrow)") from None
        return out

    def act(self, observations: np.ndarray) -> Any:
        """Not available: a per-bank brain needs the banks (the model calls
        :meth:`act_banks`)."""
        raise BrainError(f"brain '{self.name}' decides per bank: it runs inside a "
                         "FinancialModel, which passes it the bank agents")
