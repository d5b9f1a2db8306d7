"""finsim-mesa: financial contagion and stability on Mesa.

>>> from finsim_mesa import FinancialModel
>>> model = FinancialModel(n_banks=20, scenario="asset_crash", rng=42)
>>> model.run_for(10)

Importing this package never imports torch (the learning code does, lazily).
"""

from finsim_mesa.agents.bank import Bank
from finsim_mesa.agents.brains import BRAINS, Brain, make_brain
from finsim_mesa.agents.rules import PerBankBrain
from finsim_mesa.clearing import ClearingResult, eisenberg_noe
from finsim_mesa.config import ModelConfig, load_config, make_config
from finsim_mesa.errors import AccountingError, BrainError, ConfigError, FinsimError, ShockError
from finsim_mesa.model import FinancialModel
from finsim_mesa.scenarios import Scenario, get_scenario, list_scenarios, register_scenario

__version__ = "0.1.0"

__all__ = [
    "BRAINS",
    "AccountingError",
    "Bank",
    "Brain",
    "BrainError",
    "ClearingResult",
    "ConfigError",
    "FinancialModel",
    "FinsimError",
    "ModelConfig",
    "PerBankBrain",
    "Scenario",
    "ShockError",
    "__version__",
    "eisenberg_noe",
    "get_scenario",
    "list_scenarios",
    "load_config",
    "make_brain",
    "make_config",
    "register_scenario",
]
