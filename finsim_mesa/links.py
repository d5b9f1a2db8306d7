"""The loan book's link table: each directed (lender, borrower) pair a fixed id,
and the pairs' CSR pattern, so that per-pair sums are ``bincount``s and the
exposure matrix keeps one sparsity pattern (see :mod:`finsim_mesa.loans`)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["LinkTable"]


class LinkTable:
    """Directed (lender, borrower) pairs, each with a fixed id (ids are handed
    out as pairs are added, a batch in pair order, and never change), and their
    CSR pattern (rows = lenders, sorted columns), rebuilt only when pairs are
    added."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)  # lender << 32 | borrower, by id
        self._sorted = self.keys  # the keys sorted; _ids[k]: the id of _sorted[k]
        self._ids = np.zeros(0, dtype=np.int64)
        self._pattern: tuple[int, sp.csr_matrix] | None = None  # (n, pattern with zeros)
        self._edges: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._entries: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._ranks: tuple[np.ndarray, np.ndarray] | None = None  # (_ids, ranks)
        self._by_column: tuple[np.ndarray, int, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.keys.size)

    def copy(self) -> LinkTable:
        """An independent table: its arrays are never changed in place (adding
        pairs replaces them), so they are shared, caches included."""
        out = LinkTable.__new__(LinkTable)
        out.__dict__.update(self.__dict__)
        return out

    def ids(self, lender: np.ndarray, borrower: np.ndarray) -> np.ndarray:
        """The id of each (lender, borrower) pair, shape (p,); new pairs are
        added. Bank indices must be below 2**31."""
        keys = (np.asarray(lender, dtype=np.int64) << 32) | np.asarray(borrower, dtype=np.int64)
        if keys.size == 0:
            return np.zeros(0, dtype=np.int64)
        if self._sorted.size:
            pos = np.minimum(np.searchsorted(self._sorted, keys), self._sorted.size - 1)
            found = self._sorted[pos] == keys
            if np.count_nonzero(found) == found.size:
                return self._ids[pos]
            keys_new = keys[~found]
        else:
            keys_new = keys
        self.keys = np.concatenate([self.keys, np.unique(keys_new)])
        self._ids = np.argsort(self.keys, kind="stable")
        self._sorted = self.keys[self._ids]
        self._pattern = None
        return self.ids(lender, borrower)

    def edge_ids(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """:meth:`ids` of the network's directed edges ``src[e] → dst[e]``,
        computed once for the same arrays (ids never change)."""
        if self._edges is None or self._edges[0] is not src or self._edges[1] is not dst:
            self._edges = (src, dst, self.ids(src, dst))
        return self._edges[2]

    def csr(self, n: int, by_id: np.ndarray) -> sp.csr_matrix:
        """(n, n) CSR with one stored entry per link (explicit zeros included):
        link ``i``'s entry is ``by_id[i]``. The pattern arrays are shared
        between calls (read-only use)."""
        if self._pattern is None or self._pattern[0] != n:
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(self._sorted >> 32, minlength=n), out=indptr[1:])
            template = sp.csr_matrix((np.zeros(len(self)), self._sorted & 0xFFFFFFFF, indptr),
                                     shape=(n, n))
            template.has_sorted_indices = True
            self._pattern = (n, template)
        out = sp.csr_matrix(self._pattern[1], copy=False)  # a new matrix on the same pattern
        out.data = self.in_csr_order(by_id).astype(float, copy=False)
        return out

    def ranks(self) -> np.ndarray:
        """Each link's position in (lender, borrower) order, by id, shape (links,)."""
        cached = getattr(self, "_ranks", None)  # absent in tables pickled before it
        if cached is None or cached[0] is not self._ids:
            rank = np.empty(self._ids.size, dtype=np.int64)
            rank[self._ids] = np.arange(self._ids.size)
            self._ranks = (self._ids, rank)
        return self._ranks[1]

    def in_csr_order(self, by_id: np.ndarray) -> np.ndarray:
        """Values given per link id, reordered as the stored entries of :meth:`csr`."""
        return by_id[self._ids]

    def by_column(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The stored entries of :meth:`csr` grouped by column (borrower): (their
        positions in CSR order, column by column, shape (links,); pointers, shape
        (n + 1,): column j's are ``[ptr[j], ptr[j + 1])``). Shared between calls."""
        cached = getattr(self, "_by_column", None)  # absent in tables pickled before it
        if cached is None or cached[0] is not self._sorted or cached[1] != n:
            cols = self.csr_entries()[1]
            ptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(cols, minlength=n), out=ptr[1:])
            self._by_column = (self._sorted, n, np.argsort(cols, kind="stable"), ptr)
        return self._by_column[2], self._by_column[3]

    def csr_entries(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of :meth:`csr`'s stored entries, in CSR order, shape (links,)
        each (lenders, borrowers); shared between calls (read-only use)."""
        cached = getattr(self, "_entries", None)  # absent in tables pickled before it
        if cached is None or cached[0] is not self._sorted:
            self._entries = (self._sorted, self._sorted >> 32, self._sorted & 0xFFFFFFFF)
        return self._entries[1], self._entries[2]
