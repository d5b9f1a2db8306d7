"""Property-based fuzz of the OpenAPI schema (schemathesis): no request the
schema allows, nor one it does not, makes the service answer 5xx."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the REST API needs the 'api' extra")
schemathesis = pytest.importorskip("schemathesis", reason="fuzzing needs schemathesis (dev)")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from hypothesis import HealthCheck, settings  # noqa: E402

from finsim_mesa.api import ApiLimits, create_app  # noqa: E402

# small limits keep every fuzzed request cheap; training endpoints answer 503
# here (they are exercised for real in test_api.py)
LIMITS = ApiLimits(max_banks=12, max_steps_per_request=5, max_simulations=4,
                   max_lookahead_work=60, max_train_episodes=2, max_train_banks=4)
# building the service is pure (no simulation, no files, no threads), so the
# schema can be read at collection; the simulation is made by the fixture below
APP = create_app("/nonexistent-finsim-models", LIMITS, learn=lambda: False)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="session", autouse=True)
def seeded_simulation():
    """One simulation on APP, so plain endpoints have one to act on (once per
    process, as the fuzzed requests may fill the server's simulation limit)."""
    from fastapi.testclient import TestClient

    with TestClient(APP) as c:
        r = c.post("/simulation/init", json={"num_banks": 6, "seed": 1, "steps": 10_000})
        assert r.status_code == 200, r.text
        assert c.post("/simulation/run?num_steps=2").status_code == 200


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    response = case.call()
    if response.status_code == 503:  # the designed answer without torch, and only there
        assert case.path.startswith(("/train", "/models")), case.path
        assert "learn" in response.json()["detail"]
    else:
        assert response.status_code < 500, (case.method, case.path, response.text)
    if response.status_code >= 400:
        assert response.json().get("detail"), response.text  # a message, not a bare code
