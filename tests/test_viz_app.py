"""The Solara app module without a browser: page, parameters, components."""

import pytest

solara = pytest.importorskip("solara")

from finsim_mesa.viz import app  # noqa: E402


def test_app_params_build_valid_models():
    defaults = {k: v["value"] for k, v in app.model_params.items()}
    m = app.FinancialModelViz(**defaults)
    assert m.n_banks == 30 and m.router is None
    on = app.FinancialModelViz(**(defaults | {"infrastructure": True}))
    assert len(on.exchanges) == 2 and len(on.ccps) == 1
    for key in ("topology", "scenario", "brain"):
        for value in app.model_params[key]["values"]:
            app.FinancialModelViz(**(defaults | {key: value, "n_banks": 10}))


def test_page_object_exists():
    assert app.page is not None
    assert app.make_page() is not None
