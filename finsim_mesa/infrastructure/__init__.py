"""Market infrastructure: exchanges and central counterparties as Mesa agents.

* :mod:`.exchange` — :class:`Exchange` (agent) and :class:`ExchangeQueue`
  (capacity, FIFO queue, delays, expiry, congestion fees);
* :mod:`.ccp` — :class:`CentralCounterparty` (agent): margin, netting, default
  waterfall;
* :mod:`.router` — banks → exchanges → CCPs → banks, and the audit of every
  money movement between institutions;
* :mod:`.waterfall`, :mod:`.netting` — the pure mechanics, tested on their own;
* :mod:`.layer` — set-up and the layer's work in the settle and clear stages.
"""

from finsim_mesa.infrastructure.ccp import CentralCounterparty
from finsim_mesa.infrastructure.exchange import Exchange, ExchangeQueue, ExchangeStats
from finsim_mesa.infrastructure.netting import NettingResult, multilateral_netting
from finsim_mesa.infrastructure.router import (
    AUDIT_COLUMNS,
    InfrastructureRouter,
    assign_venues,
)
from finsim_mesa.infrastructure.waterfall import (
    WATERFALL_LAYERS,
    WaterfallResult,
    default_waterfall,
)

__all__ = [
    "AUDIT_COLUMNS",
    "WATERFALL_LAYERS",
    "CentralCounterparty",
    "Exchange",
    "ExchangeQueue",
    "ExchangeStats",
    "InfrastructureRouter",
    "NettingResult",
    "WaterfallResult",
    "assign_venues",
    "default_waterfall",
    "multilateral_netting",
]
