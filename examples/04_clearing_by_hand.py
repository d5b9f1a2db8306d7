"""Eisenberg–Noe clearing on a three-bank example you can check by hand.

    python examples/04_clearing_by_hand.py

Bank 0 owes bank 1 4 and outsiders 17; bank 1 owes bank 2 3 and outsiders 18;
bank 2 owes bank 0 2 and outsiders 8. After a 10% shock to outside assets,
bank 0 has 0.9 * 20 = 18 of its own plus the 2 bank 2 pays it: 20 < 4 + 17 = 21,
so it defaults (it pays 20 pro rata); the others pay in full.
"""

import numpy as np

from finsim_mesa import eisenberg_noe

L = np.array([[0, 4, 0], [0, 0, 3], [2, 0, 0]], dtype=float)
e = 0.9 * np.array([20.0, 20.0, 10.0])
result = eisenberg_noe(L, e, external_liabilities=np.array([17.0, 18.0, 8.0]))
print("payments  ", result.payments)        # [20, 21, 10]
print("defaulted ", result.defaulted)       # [True, False, False]
print("recovery  ", result.recovery.round(3))
print("rounds    ", result.rounds)
