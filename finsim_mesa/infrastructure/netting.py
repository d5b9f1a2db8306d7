"""Exact multilateral netting of gross bilateral obligations through a CCP.

Money in currency units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["NettingResult", "multilateral_netting"]


@dataclass(frozen=True)
class NettingResult:
    """Multilateral netting through a CCP.

    Attributes:
        net: shape (n,), each member's net position vs the CCP (money):
            positive = the CCP owes the member, negative = the member owes the CCP.
        gross: total gross obligations ``Σ_ij G[i, j]`` before netting.
        bilateral: total after bilateral netting, ``Σ_{i<j} |G[i, j] − G[j, i]|``.
        multilateral: total payments after multilateral netting, ``Σ_i max(0, −net_i)``.
    """

    net: np.ndarray
    gross: float
    bilateral: float
    multilateral: float

    @property
    def efficiency(self) -> float:
        """Share of gross obligations removed by multilateral netting (0 if none)."""
        return 1.0 - self.multilateral / self.gross if self.gross > 0 else 0.0

    @property
    def bilateral_efficiency(self) -> float:
        """Share removed by bilateral netting alone, for comparison."""
        return 1.0 - self.bilateral / self.gross if self.gross > 0 else 0.0


def multilateral_netting(gross: np.ndarray | sp.spmatrix) -> NettingResult:
    """Net the gross obligations ``gross[i, j]`` (what *i* owes *j*) through a CCP.

    After novation every member faces only the CCP, so its obligations reduce to
    one net amount: what it is owed minus what it owes. The CCP's book balances
    (net positions sum to zero).

    Raises:
        ValueError: not square, negative or non-finite entries.
    """
    G = sp.csr_matrix(gross, dtype=float) if sp.issparse(gross) else \
        sp.csr_matrix(np.asarray(gross, dtype=float))
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(f"gross positions must be a square (n, n) matrix, got {G.shape}")
    if not np.all(np.isfinite(G.data)) or (G.data < 0).any():
        raise ValueError("gross positions must be finite and non-negative")
    net = np.asarray(G.sum(axis=0)).ravel() - np.asarray(G.sum(axis=1)).ravel()
    bilateral = 0.5 * float(abs(G - G.T).sum())  # each pair counted twice
    return NettingResult(net, float(G.sum()), bilateral, float(np.maximum(-net, 0.0).sum()))
