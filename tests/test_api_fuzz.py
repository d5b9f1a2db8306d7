"""Property-based fuzz of the OpenAPI schema (schemathesis), stateless and
stateful: no request, valid or not, makes the service answer 5xx, and every
answer conforms to the schema (status declared, body and headers as
documented, content type); invalid requests are refused; unsupported methods
answer 405 with ``Allow``; where a request's validity does not depend on the
simulation's state or on another field, a request the schema allows is
accepted. The stateful phase follows the schema's links (the ``sim_id`` of a
new simulation into the operations that take one) through sequences of calls.

Each sequence starts from a fresh service with one small simulation, so
sequences do not depend on each other (hypothesis replays them to shrink).
"""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the REST API needs the 'api' extra")
schemathesis = pytest.importorskip("schemathesis", reason="fuzzing needs schemathesis (dev)")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.specs.openapi import checks as oc  # noqa: E402

from finsim_mesa.api import ApiLimits, create_app  # noqa: E402
from finsim_mesa.api.scenario_table import ScenarioTable  # noqa: E402
from finsim_mesa.api.sessions import SessionStore  # noqa: E402
from finsim_mesa.scenarios import list_scenarios  # noqa: E402

# small limits keep every fuzzed request cheap; training endpoints answer 503
# here (they are exercised for real in test_api.py)
LIMITS = ApiLimits(max_banks=12, max_steps_per_request=5, max_simulations=4,
                   max_lookahead_work=60, max_train_episodes=2, max_train_banks=4,
                   max_scenarios=8, max_streams=4, max_body_bytes=65_536,
                   max_episode_steps=10_000)
# building the service is pure (no simulation, no files, no threads), so the
# schema can be read at collection
APP = create_app("/nonexistent-finsim-models", LIMITS, learn=lambda: False)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)

# operations whose refusals can depend on the simulation (its bank ids, its
# scenario table, whether its episode is over) or on a combination of fields
# (ModelConfig's cross-field rules, n_banks against num_banks): a schema-valid
# request may be refused there with a 4xx and a message, so "valid data is
# accepted" is not checked on them (everything else is)
STATE_OR_CROSS_FIELD = {"/simulation/init", "/scenarios/set", "/scenarios/shock", "/what_if",
                        "/train/start", "/models/load"}


def fresh_service() -> None:
    """A new store and scenario table with one simulation (6 banks, 2 steps)."""
    APP.state.store = store = SessionStore(LIMITS)
    APP.state.scenarios = ScenarioTable(list_scenarios(), LIMITS.max_scenarios)
    session = store.create({"n_banks": 6, "steps": 10_000, "agent_collect_every": 0}, seed=1)
    session.advance(2)


def no_server_error(ctx, response, case) -> None:
    """5xx never, but for the designed 503 of training without the learn extra."""
    if response.status_code == 503:
        assert case.path.startswith(("/train", "/models")), case.path
        assert "learn" in response.json()["detail"], response.text
    else:
        assert response.status_code < 500, (case.method, case.path, response.text)
    if response.status_code >= 400 and case.method != "HEAD":
        assert response.json().get("detail"), response.text  # a message, not a bare code


CHECKS = [no_server_error, oc.status_code_conformance, oc.content_type_conformance,
          oc.response_schema_conformance, oc.response_headers_conformance,
          oc.negative_data_rejection, oc.unsupported_method, oc.allow_header_conformance]


def checks_for(case) -> list:
    extra = [] if case.path in STATE_OR_CROSS_FIELD else [oc.positive_data_acceptance]
    return CHECKS + extra


@pytest.fixture(autouse=True)
def fresh():
    fresh_service()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
          database=None)
def test_no_server_errors_and_conformance(case):
    response = case.call()
    case.validate_response(response, checks=checks_for(case))


class APIWorkflow(schema.as_state_machine()):
    """Sequences of calls linked by the schema (init -> step, run, what-if, ...)."""

    def setup(self) -> None:
        fresh_service()

    def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
        case.validate_response(response, checks=checks_for(case), recorder=self.recorder)


TestAPIWorkflow = APIWorkflow.TestCase
TestAPIWorkflow.settings = settings(max_examples=30, stateful_step_count=6, deadline=None,
                                    suppress_health_check=list(HealthCheck), database=None)


def test_links_lead_from_a_new_simulation_to_every_operation_on_one():
    doc = APP.openapi()
    links = doc["paths"]["/simulation/init"]["post"]["responses"]["200"]["links"]
    takes_sim = {op["operationId"] for item in doc["paths"].values() for op in item.values()
                 if any(p["name"] == "sim_id" for p in op.get("parameters", []))}
    assert set(links) == takes_sim and len(takes_sim) >= 15
    for link in links.values():
        assert link["parameters"] == {"query.sim_id": "$response.body#/sim_id"}
