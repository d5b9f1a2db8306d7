"""The interbank loan book: one row per loan, as a struct of arrays.

Shapes: ``m`` outstanding loans. Money in currency units; rates per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["LoanBook"]


@dataclass
class LoanBook:
    """Outstanding interbank loans, one row per loan (struct of arrays, shape (m,)).

    ``principal + accrued`` is what the borrower owes the lender now;
    ``maturity`` is the step at which it is due; ``rate`` is per step; ``ccp``
    is the central counterparty that novated the loan (−1: bilateral). A
    cleared loan is one row for two legs: the borrower owes the CCP, the CCP
    owes the lender.
    """

    lender: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    borrower: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    principal: np.ndarray = field(default_factory=lambda: np.zeros(0))
    accrued: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rate: np.ndarray = field(default_factory=lambda: np.zeros(0))
    maturity: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ccp: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    _FIELDS = ("lender", "borrower", "principal", "accrued", "rate", "maturity", "ccp")

    def __len__(self) -> int:
        return int(self.lender.size)

    @property
    def owed(self) -> np.ndarray:
        """Amount owed on each loan now (principal + accrued interest), shape (m,)."""
        return self.principal + self.accrued

    def append(self, lender: np.ndarray, borrower: np.ndarray, amount: np.ndarray,
               rate: np.ndarray, maturity: np.ndarray, ccp: np.ndarray | None = None) -> None:
        """Add loans (arrays of equal length; ``ccp`` −1 or omitted = bilateral)."""
        ccp = np.full(len(amount), -1) if ccp is None else np.broadcast_to(ccp, len(amount))
        new = (lender, borrower, amount, np.zeros(len(amount)), rate, maturity, ccp)
        for name, arr in zip(self._FIELDS, new, strict=True):
            setattr(self, name, np.concatenate([getattr(self, name), np.asarray(arr)]).astype(
                getattr(self, name).dtype, copy=False))

    def consolidate(self, start: int) -> None:
        """Merge the loans from row ``start`` on that share lender, borrower and CCP
        into one loan each (principal and accrued interest add up; rows sorted by
        pair) — but only if every such group has one rate and one maturity; if
        any group mixes terms, the block is left exactly as it is.

        Loans made in one step between the same pair are alike (same rate and
        maturity), so merging them keeps the book at most (lending pairs ×
        maturity) rows long.
        """
        if len(self) - start < 2:
            return
        t = slice(start, None)
        n = int(max(self.lender[t].max(), self.borrower[t].max())) + 1
        c = int(self.ccp[t].max()) + 2
        key = (self.lender[t] * n + self.borrower[t]) * c + (self.ccp[t] + 1)
        uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        if uniq.size == key.size:
            return
        rate, mat = self.rate[t], self.maturity[t]
        if not (np.array_equal(rate, rate[first][inverse])
                and np.array_equal(mat, mat[first][inverse])):
            return  # pairs with different terms stay separate loans
        merged = {
            "lender": self.lender[t][first], "borrower": self.borrower[t][first],
            "rate": rate[first], "maturity": mat[first], "ccp": self.ccp[t][first],
            "principal": np.bincount(inverse, weights=self.principal[t]),
            "accrued": np.bincount(inverse, weights=self.accrued[t]),
        }
        for name in self._FIELDS:
            setattr(self, name, np.concatenate([getattr(self, name)[:start], merged[name]]))

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the loans where ``mask`` is True."""
        for name in self._FIELDS:
            setattr(self, name, getattr(self, name)[mask])

    def copy(self) -> LoanBook:
        """Deep copy of the arrays."""
        return LoanBook(*(getattr(self, name).copy() for name in self._FIELDS))
