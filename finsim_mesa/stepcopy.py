"""A step's copy of the ledger, the loan book, the market and both generators in
one ``bytes`` object (issue 15).

:func:`~finsim_mesa.state.snapshot_model`'s quick copy (``shallow_logs``, taken by
the step's transaction before every step and dropped after it unless the step
fails) took these four parts one by one: two :class:`~finsim_mesa.packing.Packed`
copies (the ledger's arrays, the book's rows), four array copies (the market),
three ``bytes`` copies (the generators, :mod:`finsim_mesa.pyrandom`) and five
dicts. :class:`StepNumbers` joins all their numbers into one Packed copy and keeps
the few other values (the link table's copy, the external flows, scalars) in one
tuple; :meth:`StepNumbers.parts` gives the four parts in the forms their own
``restore`` takes only if the step fails. Inside running steps each object the
copy made cost the step about three times its own time in a loop (helper-80's
ablation at 30 banks), so fewer objects pay more than their count suggests.

Used where it knows the parts: an exact :class:`~finsim_mesa.ledger.Ledger`,
:class:`~finsim_mesa.loans.LoanBook` and :class:`~finsim_mesa.market.Market`,
generators :func:`pyrandom.live_bytes` can read, up to about
:data:`~finsim_mesa.packing.PACK_MAX_BYTES` of arrays (beyond, each array is
copied on its own, as :func:`~finsim_mesa.packing.pack` does), and parts that are
all NumPy arrays of numbers or bool in native byte order (a list, tuple,
``array.array``, scalar, object array or other dtype put in their place by a user:
the parts one by one, which refuse the step or roll it back as before; ``bytes`` of
objects would not give them back); otherwise the snapshot takes each part as before.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

import numpy as np

from finsim_mesa import packing, pyrandom
from finsim_mesa.ledger import Ledger
from finsim_mesa.loans import LoanBook
from finsim_mesa.market import Market

__all__ = ["StepNumbers"]

_LEDGER, _MARKET = attrgetter(*Ledger._ARRAYS), attrgetter(*Market._ARRAYS)
_ROWS_AT = len(Ledger._ARRAYS)  # where each part starts in the Packed
_MARKET_AT = _ROWS_AT + len(LoanBook._ROWS)
_RAW_AT = _MARKET_AT + len(Market._ARRAYS)  # then the generators' three memoryviews
_ARRAY, _DTYPE = {np.ndarray}, attrgetter("dtype")
# the dtypes of numbers (and bool) in native byte order, which the bytes copy applies to:
# any other (objects: their bytes are pointers; structured, text, dates, swapped bytes)
# takes the parts one by one (one pass over the dtypes, no set of them built)
_NUMBERS = frozenset(np.dtype(code) for code in "?bhilqpBHILQPefdgFDG")


class StepNumbers:
    """The ledger (its arrays, loan book and external flows), the market and the
    model's two generators as they were, for a step's transaction."""

    __slots__ = ("_packed", "_rest")

    @classmethod
    def of(cls, model: Any) -> StepNumbers | None:
        """``model``'s numbers now, or None where this class does not apply (see the
        module's notes): the snapshot then takes the parts one by one."""
        ledger, market = model.ledger, model.market
        book, raw = ledger.loans, pyrandom.live_bytes(model.random, model.rng.bit_generator)
        if (raw is None or type(ledger) is not Ledger or type(book) is not LoanBook
                or type(market) is not Market or (ledger.cash.nbytes * _ROWS_AT
                                                  + book.lender.nbytes * len(LoanBook._ROWS)
                                                  > packing.PACK_MAX_BYTES)):
            return None
        rows, links = book.save(copy=False)  # (the rows themselves: packed here at once)
        arrays = (*_LEDGER(ledger), *rows, *_MARKET(market))
        if not (_ARRAY.issuperset(map(type, arrays)) and _NUMBERS.issuperset(map(_DTYPE, arrays))):
            return None  # (not all arrays of numbers: see the module's notes)
        out = object.__new__(cls)
        out._packed = packing.Packed((*arrays, *raw))
        out._rest = (links, dict(ledger.external_in), dict(ledger.external_out),
                     ledger.initial_scale, ledger.initial_cash_total, market.last_return,
                     market.rate, model.random.gauss_next)
        return out

    def parts(self) -> dict[str, Any]:
        """``ledger``, ``market``, ``rng`` and ``random`` as the quick snapshot holds them
        (``Ledger.snapshot(quick=True)``, ``Market.snapshot()``, ``pyrandom.save_bits``,
        ``pyrandom.save``), new each call: their ``restore`` copies them again."""
        at = self._packed.at
        links, external_in, external_out, scale, cash, last_return, rate, gauss = self._rest
        ledger = {name: at(i) for i, name in enumerate(Ledger._ARRAYS)}
        ledger.update(loans=(tuple(map(at, range(_ROWS_AT, _MARKET_AT))), links),
                      external_in=external_in, external_out=external_out,
                      initial_scale=scale, initial_cash_total=cash)
        market = {name: at(_MARKET_AT + i) for i, name in enumerate(Market._ARRAYS)}
        market.update(last_return=last_return, rate=rate)
        state, pcg, extra = map(at, range(_RAW_AT, _RAW_AT + 3))
        return {"ledger": ledger, "market": market, "rng": pyrandom.RawBits(pcg, extra),
                "random": pyrandom.RawState(state, gauss)}
