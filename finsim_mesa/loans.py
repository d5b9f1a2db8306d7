"""The interbank loan book: one row per loan, as a struct of arrays.

Shapes: ``m`` outstanding loans. Money in currency units; rates per step.

Every loan also carries a *link* id: its (lender, borrower) pair's row in the
book's :class:`LinkTable`, which only grows and is seeded with the network's
edges by the act stage. What each lender is owed on each edge is then a
``bincount`` over the loans (:meth:`LoanBook.held_on`, no sparse matrix to
build), and DebtRank reuses one sparsity pattern (:meth:`LoanBook.exposures`)
whose data it refills. The loans of one pair are summed in book order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter, is_

import numpy as np
import scipy.sparse as sp

from finsim_mesa.fastmath import count_nonzero, flatnonzero
from finsim_mesa.links import LinkTable
from finsim_mesa.packing import Packed, pack

__all__ = ["LinkTable", "LoanBook", "masked_terms", "row_indices"]

_count_nonzero = count_nonzero  # (below: an int array's min / max as a[a.argmin()]: no reduction)


def row_indices(rows: np.ndarray | slice) -> np.ndarray:
    """Loans given as a bool mask over a book, their indices or ``slice(0, k)``, as indices."""
    return (np.arange(rows.stop) if isinstance(rows, slice)
            else flatnonzero(rows) if rows.dtype == bool else rows)


def masked_terms(x: np.ndarray | float, rows: np.ndarray, m: int, name: str) -> np.ndarray:
    """``x`` for the loans ``rows`` (indices, in book order) of a book of ``m``
    loans, given as one number, one value per loan of the book (shape (m,)) or
    one per loan in ``rows``; shape (rows.size,), float."""
    a = np.asarray(x, dtype=float)
    if a.ndim == 0:
        return np.full(rows.size, float(a))
    if a.shape == (m,):
        return a[rows]
    if a.shape == (rows.size,):
        return a
    raise ValueError(f"{name} has shape {a.shape}: give one number, one per loan of the "
                     f"book ({m},) or one per loan rolled over ({rows.size},)")


class _Buffers:
    """Capacity buffers of a loan book: each row array is a view of its buffer
    from ``head`` on, so appending and merging loans write in place instead of
    reallocating the book, and dropping the first rows (the loans just repaid:
    the book is in maturity order) moves ``head`` instead of the rows. Not
    state: only the ``len(book)`` rows from ``head`` mean anything, and they
    are the book's row arrays."""

    __slots__ = ("arrays", "capacity", "head", "order", "views")

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.order: tuple[np.ndarray, ...] = ()  # the buffers in LoanBook._ROWS order
        self.views: tuple[np.ndarray, ...] = ()  # the views handed out, to spot replaced rows
        self.capacity = -1  # rows every buffer holds (-1: not all allocated yet)
        self.head = 0  # the buffer row of the book's row 0

    def __repr__(self) -> str:
        return "<loan book buffers>"


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
    _ROWS = (*_FIELDS, "link")  # per-loan arrays; ``link``: id in ``links`` (−1: not yet)

    def __post_init__(self) -> None:
        # derived, not fields: the state is the seven columns above (what
        # snapshots, fingerprints and comparisons walk)
        self.link = np.full(self.lender.size, -1, dtype=np.int64)
        self.links = LinkTable()
        self._spare = _Buffers()
        self._linked = (self.lender, self.borrower)  # the arrays ``link`` was made for

    def __len__(self) -> int:
        return int(self.lender.size)

    @property
    def owed(self) -> np.ndarray:
        """Amount owed on each loan now (principal + accrued interest), shape (m,)."""
        return self.principal + self.accrued

    def owed_at(self, rows: np.ndarray) -> np.ndarray:
        """``owed[rows]`` (``rows``: indices or a bool mask over the book) without
        computing it for the whole book: the same values, shape (len(rows),)."""
        return self.principal[rows] + self.accrued[rows]

    def append(self, lender: np.ndarray, borrower: np.ndarray, amount: np.ndarray,
               rate: np.ndarray, maturity: np.ndarray | int, ccp: np.ndarray | None = None,
               link: np.ndarray | None = None) -> None:
        """Add loans (arrays of equal length; ``maturity`` one step for all or one
        each; ``ccp`` −1 or omitted = bilateral; ``link``: their link ids if known)."""
        m, k = self.lender.size, len(amount)  # (len(self), without its call)
        head = self._room(m + k)[1]  # each column written into its buffer's new rows (a scalar
        s = slice(head + m, head + m + k)  # or a missing ccp / link broadcast by the assignment)
        new = (lender, borrower, amount, 0.0, rate, maturity, -1 if ccp is None else ccp,
               -1 if link is None else link)
        a, b, c, e, f, g, h, i = self._spare.order  # (the buffers in _ROWS order: eight plain
        a[s], b[s], c[s], e[s], f[s], g[s], h[s], i[s] = new  # stores, ~0.5 us less than a map)
        self._rows(m + k)

    def _room(self, size: int) -> tuple[dict[str, np.ndarray], int]:
        """The buffers, holding the current rows from the returned buffer row
        (the book's row 0) on and room for ``size`` rows after it (the rows
        moved to the buffers' start or the buffers grown by half when short of
        room; a row array replaced from outside is copied back in)."""
        spare = self._spare
        if (size <= spare.capacity - spare.head and len(spare.views) == len(self._ROWS)
                and all(map(is_, _row_arrays(self), spare.views))):
            # the usual case: every row array is its buffer's view (so the link
            # ids are the rows' own), with room
            return spare.arrays, spare.head
        self.link_ids(assign=False)
        m = len(self)
        # short of room after the head: the rows move to the start, and the buffers
        # grow unless that leaves room for half as many rows again (so that the
        # head can move on a few steps before the rows move back)
        short = size > spare.capacity - spare.head
        for name in self._ROWS:
            arr, buf = getattr(self, name), spare.arrays.get(name)
            if (buf is None or buf.size < size or buf.dtype != arr.dtype
                    or (short and buf.size < size + size // 2)):
                grown = np.empty(max(2 * size, 16), dtype=arr.dtype)
                grown[:m] = arr
                spare.arrays[name] = grown
            else:
                buf[:m] = arr  # NumPy copies overlaps safely (a view from head on)
        spare.head, spare.order = 0, tuple([spare.arrays[name] for name in self._ROWS])
        spare.capacity = min(b.size for b in spare.order)
        # the row arrays become the views of the rows where they are now: the old
        # views may overlap the moved rows, and an append that fails after this
        # (no _rows of its own) must leave the book as it was
        self._rows(m)
        return spare.arrays, 0

    def _rows(self, size: int) -> None:
        """The row arrays become the ``size`` buffer rows from ``head`` on."""
        spare, d = self._spare, self.__dict__
        s, (a, b, c, e, f, g, h, i) = slice(spare.head, spare.head + size), spare.order
        views = spare.views = (a[s], b[s], c[s], e[s], f[s], g[s], h[s], i[s])  # (no loop: ~0.4
        (d["lender"], d["borrower"], d["principal"], d["accrued"], d["rate"], d["maturity"],
         d["ccp"], d["link"]), d["_linked"] = views, views[:2]  # us less; _linked: the first two)

    def _drop_first(self, count: int) -> None:
        """Drop the first ``count`` rows: the view starts later (no rows move)."""
        self._room(len(self))  # the row arrays are the buffers' views
        self._spare.head += count
        self._rows(len(self) - count)

    def consolidate(self, start: int) -> None:
        """Merge the loans from row ``start`` on that share lender, borrower and CCP
        into one loan each (principal and accrued interest add up; rows sorted by
        pair) — but only if every such group has one rate and one maturity; if
        any group mixes terms, the block is left exactly as it is.

        Loans made in one step between the same pair are alike (same rate and
        maturity), so merging them keeps the book at most (lending pairs ×
        maturity) rows long.
        """
        if self.lender.size - start < 2:  # (len(self))
            return
        t = slice(start, None)
        groups = self._groups(t)
        if groups is None:
            return
        first, inverse = groups
        rate, mat = self.rate[t], self.maturity[t]
        rates = rate[first]  # each group's rate (its first row's), compared with its rows'
        # (np.array_equal without its Python layer: NaN differs too; one maturity for the
        # block, the usual case: no group mixes them; its min and max, not two gathers)
        if _count_nonzero(rate != rates[inverse]) or (
                mat[mat.argmin()] != mat[mat.argmax()]
                and _count_nonzero(mat != mat[first][inverse])):
            return  # pairs with different terms stay separate loans
        merged = (  # in _ROWS order: lender, borrower, principal, accrued, rate, maturity, ...
            self.lender[t][first], self.borrower[t][first],
            np.bincount(inverse, weights=self.principal[t]),
            np.bincount(inverse, weights=self.accrued[t]), rates, mat[first],
            self.ccp[t][first], self.link_ids(assign=False)[t][first])
        lo = self._room(len(self))[1] + start  # (the buffers in _ROWS order: _spare.order)
        a, b, c, e, f, g, h, i, s = *self._spare.order, slice(lo, lo + first.size)
        a[s], b[s], c[s], e[s], f[s], g[s], h[s], i[s] = merged  # (as in append)
        self._rows(start + first.size)

    def _groups(self, t: slice) -> tuple[np.ndarray, np.ndarray] | None:
        """The rows ``t`` grouped by (lender, borrower, CCP), groups in that order:
        (each group's first row, each row's group), as ``np.unique(key,
        return_index=True, return_inverse=True)`` of a key in that order gives
        them; None if every row is its own group."""
        link, ccp = self.link_ids(assign=False)[t], self.ccp[t]
        c = int(ccp[ccp.argmax()]) + 2  # (max and min by argmax / argmin: ~4x cheaper than
        c = 1 if c > 1 and int(ccp[ccp.argmin()]) == c - 2 else c  # the reductions here)
        # every row's link known (the act stage) and the table not much larger than
        # the block (the mark array is the table's size): no sort
        if int(link[link.argmin()]) >= 0 and len(self.links) * c <= 64 * link.size:
            # a pair's rank in (lender, borrower) order, so the key is in the same order
            key = self.links.ranks()[link]
            if c > 1:  # (c is 1 without CCPs or with one id for all: the key is the rank)
                key = key * c + (ccp + 1)
            mark = np.zeros(len(self.links) * c, dtype=bool)
            mark[key] = True
            keys = flatnonzero(mark)  # the groups' keys, in order
            if keys.size == key.size:
                return None
            slot = np.empty(mark.size, dtype=np.intp)
            slot[keys] = np.arange(keys.size)
            inverse = slot[key]
            (first := np.empty(keys.size, dtype=np.intp)).fill(key.size)  # (np.full's steps)
            np.minimum.at(first, inverse, np.arange(key.size))
            return first, inverse
        n = int(max(self.lender[t].max(), self.borrower[t].max())) + 1
        key = (self.lender[t] * n + self.borrower[t]) * c + (ccp + 1)
        # np.unique(key, return_index=True, return_inverse=True) in its own steps
        # (a stable sort, fast on the book's presorted runs; 2-3x less time)
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        head = np.empty(key.size, dtype=bool)
        head[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=head[1:])
        first = order[head]  # each group's first row
        if first.size == key.size:
            return None
        inverse = np.empty(key.size, dtype=np.intp)
        inverse[order] = np.cumsum(head) - 1
        return first, inverse

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the loans where ``mask`` (shape (m,), bool) is True."""
        mask = np.asarray(mask, dtype=bool)
        m, k = len(self), int(count_nonzero(mask))
        if mask.shape != (m,):
            raise IndexError(f"keep: a mask of shape {mask.shape} for a book of {m} loans")
        if k == m:
            return
        if count_nonzero(mask[m - k:]) == k:  # the first m - k rows go (the usual case:
            self._drop_first(m - k)  # the book is in maturity order, what is due comes first)
            return
        first = int(mask.argmax())  # the rows before the first kept one go without moving
        if first:  # (what is due; the others, e.g. a resolved bank's loans, are compacted)
            self._drop_first(first)
            mask, m = mask[first:], m - first
        head = self._room(m)[1]
        for buf in self._spare.order:  # compacted in place (the kept rows gathered first)
            buf[head:head + k] = buf[head:head + m][mask]
        self._rows(k)

    def remove(self, rows: np.ndarray | slice) -> None:
        """Remove the loans ``rows`` (increasing indices, or ``slice(0, k)`` as
        :func:`~finsim_mesa.fastmath.leading` gives the first ``k``): what
        :meth:`keep` of the other rows does."""
        if isinstance(rows, slice):
            if rows.stop:
                self._drop_first(rows.stop)
            return
        mask = np.ones(len(self), dtype=bool)
        mask[rows] = False
        self.keep(mask)

    def copy(self) -> LoanBook:
        """Deep copy of the arrays and the link table."""
        self.link_ids(assign=False)
        out = LoanBook.__new__(LoanBook)  # what __init__ and __post_init__ set, copied
        out.__dict__.update({name: getattr(self, name).copy() for name in self._FIELDS})
        out.link, out.links, out._spare = self.link.copy(), self.links.copy(), _Buffers()
        out._linked = (out.lender, out.borrower)
        return out

    def save(self, copy: bool = True) -> tuple[tuple[np.ndarray, ...], LinkTable]:
        """What a step's transaction keeps of the book: the row arrays (``link`` too) as
        :func:`~finsim_mesa.packing.pack` copies them (not ``copy``: themselves, for a caller
        copying them at once) and the link table's; :meth:`load` makes a book of it if needed."""
        self.link_ids(assign=False)
        return (pack if copy else tuple)(_row_arrays(self)), self.links.copy()

    @classmethod
    def load(cls, saved: LoanBook | tuple[Packed, LinkTable]) -> LoanBook:
        """A book of :meth:`save`'s rows, or a :meth:`copy` of a book (``saved`` stays valid)."""
        if isinstance(saved, LoanBook):
            return saved.copy()
        rows, links = saved
        out = cls.__new__(cls)  # what __init__ and __post_init__ set, as in copy()
        out.__dict__.update(zip(cls._ROWS, map(_copied, rows), strict=True))
        out.links, out._spare = links.copy(), _Buffers()
        out._linked = (out.lender, out.borrower)
        return out

    # ------------------------------------------------------------ links
    def link_ids(self, assign: bool = True) -> np.ndarray:
        """Each loan's link id, shape (m,); ``assign``: look up the missing ones
        (−1) first. Ids are reset if ``lender`` or ``borrower`` was replaced from
        outside (another array, of any size; a change written into them in place
        is not seen)."""
        linked = self._linked
        if (self.link.size != self.lender.size or self.lender is not linked[0]
                or self.borrower is not linked[1]):
            self.link = np.full(self.lender.size, -1, dtype=np.int64)
            self._linked = (self.lender, self.borrower)
        if assign and self.link.size and int(self.link[self.link.argmin()]) < 0:
            todo = self.link < 0
            self.link[todo] = self.links.ids(self.lender[todo], self.borrower[todo])
        return self.link

    def held_on(self, src: np.ndarray, dst: np.ndarray, subset: np.ndarray | None = None,
                owed: np.ndarray | None = None) -> np.ndarray:
        """What ``src[e]`` is owed by ``dst[e]`` now over all loans, shape (e,):
        ``exposure_matrix()[src, dst]`` without building it (the loans of a
        pair are summed in book order); with ``subset`` (edge indices) only for
        those edges, shape (subset.size,). ``owed``: :attr:`owed`, if the
        caller has it."""
        edges = self.links.edge_ids(src, dst)
        return self.held_on_links(edges if subset is None else edges[subset], owed)

    def held_on_links(self, ids: np.ndarray, owed: np.ndarray | None = None) -> np.ndarray:
        """What is owed now on each link ``ids[i]`` (link ids) over all loans,
        shape (ids.size,), the loans of a link summed in book order. ``owed``:
        :attr:`owed`, if the caller has it."""
        per_link = np.bincount(self.link_ids(), weights=self.owed if owed is None else owed,
                               minlength=len(self.links))
        return per_link[ids]

    def exposures(self, n: int, bilateral_only: bool = False
                  ) -> tuple[sp.csr_matrix, np.ndarray]:
        """The exposure matrix on the link table's fixed pattern: (n, n) CSR with
        ``[i, j]`` = what *j* owes *i* (explicit zeros on links without loans),
        and which stored entries carry a loan (shape (nnz,), CSR order). With
        ``bilateral_only`` loans novated to a CCP are left out."""
        owed, present = self._per_link(bilateral_only)
        return self.links.csr(n, owed), self.links.in_csr_order(present)

    def exposure_entries(self, bilateral_only: bool = False, present: bool = True
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """The stored entries of :meth:`exposures` without building the matrix:
        (rows = lenders, cols = borrowers, exposure (money), carries a loan),
        each shape (links,), in CSR order; the last is None unless ``present``."""
        owed, carries = self._per_link(bilateral_only, present)
        rows, cols = self.links.csr_entries()
        return (rows, cols, self.links.in_csr_order(owed).astype(float, copy=False),
                None if carries is None else self.links.in_csr_order(carries))

    def _per_link(self, bilateral_only: bool, present: bool = True
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        """(amount owed, whether it carries a loan: None unless ``present``) on
        each link, by link id."""
        link, owed = self.link_ids(), self.owed
        if bilateral_only:
            keep = self.ccp < 0
            link, owed = link[keep], owed[keep]
        size = len(self.links)
        carries = None
        if present:
            carries = np.zeros(size, dtype=bool)
            carries[link] = True
        return np.bincount(link, weights=owed, minlength=size), carries

    def __getstate__(self) -> dict:
        self.link_ids(assign=False)  # ids of replaced rows reset first
        return {k: v for k, v in self.__dict__.items() if k not in ("_spare", "_linked")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._spare = _Buffers()
        self._linked = (self.lender, self.borrower)
        if "links" not in state:  # pickled before link ids existed
            self.links = LinkTable()
            self.link = np.full(self.lender.size, -1, dtype=np.int64)


_row_arrays = attrgetter(*LoanBook._ROWS)  # a book's row arrays, as a tuple in _ROWS order
_copied = np.ndarray.copy  # (the rows are the buffers' views: ndarrays)
