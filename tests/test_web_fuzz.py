"""Every route of the explainer under hostile input: never a 5xx, always a sentence.

Two sources of bad requests, both bounded so that the file runs in well under a minute:

- schema-derived: schemathesis reads the app's own OpenAPI schema and sends, to every route,
  bodies, paths and query strings that fit it (positive) and that break it (negative);
- hand-made: hypothesis takes a valid body for each route and puts a hostile value (huge or
  negative numbers, NaN, deep nesting, long strings, wrong types, huge declared shapes) into
  one of its fields, or sends arbitrary bytes as the body.

Each answer must be below 500, and a 4xx must carry a ``detail`` that is one string; the
app must still answer afterwards.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from convlens.explain import encode
from convlens.models import pretrained
from convlens.web.app import create_app
from convlens.web.samples import bundled_samples

MODEL = pretrained()
APP = create_app(MODEL, bundled_samples(MODEL)[:4], save_dir="/nonexistent/convlens-fuzz")
CLIENT = TestClient(APP, raise_server_exceptions=False)
JSON = {"Content-Type": "application/json"}

schema = schemathesis.openapi.from_asgi("/api/openapi.json", APP)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=25,
    deterministic=True,  # the same requests on every run
    database="none",  # and no .hypothesis folder left behind
)
schema.config.phases.update(phases=["examples", "fuzzing"])


@pytest.fixture(scope="module", autouse=True)
def no_sessions_left():
    yield
    APP.state.sessions.close()


def assert_answered_with_a_sentence(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail, response.text[:300]


@schema.parametrize()
def test_schema_derived_requests_never_break_the_server(case):
    response = case.call()
    assert_answered_with_a_sentence(response)


IMAGE = encode(np.zeros((1, 28, 28), np.float32))
VALID = {
    "/api/trace": {"sample": 0, "target": 3},
    "/api/explain": {"sample": 0, "layer": 3, "index": [1, 2, 2], "target": 1},
    "/api/sandbox": {
        "input_size": [7, 7],
        "kernel_size": [3, 3],
        "stride": [1, 1],
        "dilation": [1, 1],
        "padding": "same",
        "anchor": [1, 1],
        "mode": "convolution",
        "delta": "ones",
    },
    "/api/training/none/update": {"layer": 0, "parameter": "weight", "index": [0, 0, 0, 0]},
    "/api/training/none/step": {"steps": 1},
}
VALID["/api/explain#image"] = {**VALID["/api/explain"], "image": IMAGE}
HUGE = [10**30, -(10**30), 2**63, 2**31, 2**31 - 1, 10**6, 1000, 33, -1, 0, 1e308, 3e38, 1e-320]
HOSTILE = st.one_of(
    st.sampled_from(HUGE),
    st.sampled_from([math.nan, math.inf, "same", "ones", "", "x" * 10_000, None, True, {}, []]),
    st.lists(st.sampled_from(HUGE), min_size=0, max_size=4),
    st.lists(st.integers(-(10**7), 10**7), min_size=2, max_size=2),
    st.lists(st.lists(st.sampled_from([*HUGE, 1, 2]), max_size=3), max_size=3),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(),
    st.text(max_size=20),
    st.recursive(st.integers(-3, 40), lambda inner: st.lists(inner, max_size=3), max_leaves=20),
    st.fixed_dictionaries(
        {"shape": st.lists(st.sampled_from([*HUGE[:4], 0, 1, 28]), max_size=9)},
        optional={"data": st.sampled_from(["", "AAAA", "***", IMAGE["data"][:-4], "=" * 8])},
    ),
)


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(data=st.data(), value=HOSTILE)
def test_a_hostile_value_in_any_field_gets_a_sentence(data, value):
    route = data.draw(st.sampled_from(sorted(VALID)))
    field = data.draw(st.sampled_from([*VALID[route], "training"]))
    body = {**VALID[route], field: value}
    raw = json.dumps(body).encode()  # NaN and Infinity as Python writes them
    response = CLIENT.post(route.split("#")[0], content=raw, headers=JSON)
    assert_answered_with_a_sentence(response)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(route=st.sampled_from(sorted(VALID)), body=st.binary(max_size=200))
def test_arbitrary_bytes_as_a_body_get_a_sentence(route, body):
    response = CLIENT.post(route.split("#")[0], content=body, headers=JSON)
    assert_answered_with_a_sentence(response)


def test_the_issues_hostile_sandbox_settings_answer_quickly_with_a_sentence():
    """The eleven kinds of body that gave 500 before, and the 31-second kernel."""
    for settings_ in [
        {"kernel_size": [1000, 1000], "padding": "same"},
        {"kernel_size": [10**12, 3]},
        {"stride": [10**30, 1]},
        {"stride": [2**62, 2**62]},
        {"dilation": [10**9, 1]},
        {"dilation": [32, 32], "kernel_size": [32, 32], "padding": "full"},
        {"padding": 10**9},
        {"padding": -(10**9)},
        {"padding": [[10**9, 0], [0, 0]]},
        {"padding": [2**40, 1]},
        {"padding": [[1, 2, 3], [1, 2]]},
        {"anchor": [2**40, 0]},
        {"input_size": [32, 32], "kernel_size": [32, 32], "padding": "full", "delta": "ones"},
    ]:
        response = CLIENT.post("/api/sandbox", json=settings_)
        assert response.status_code == 422, (settings_, response.text)
        assert isinstance(response.json()["detail"], str)


def test_an_answer_that_is_not_finite_is_refused_by_name():
    huge = encode(np.full((1, 28, 28), 3e38, np.float32))
    answer = CLIENT.post("/api/trace", json={"image": huge, "target": 1})
    assert answer.status_code == 422
    assert "layer 0's output is" in answer.json()["detail"]
    broken = pretrained()
    broken[0].weight.data[0, 0, 0, 0] = np.nan
    client = TestClient(create_app(broken, bundled_samples(broken)[:1], save_dir="/nonexistent"))
    answer = client.post("/api/trace", json={"sample": 0})
    assert answer.status_code == 422 and "not finite" in answer.json()["detail"]


def test_validation_errors_are_one_sentence_naming_the_field():
    cases = {
        "/api/sandbox": ({"kernel_size": [3, "x"]}, "'kernel_size[1]' should be a valid integer"),
        "/api/trace": ({"image": {"shape": [1, 28, 28]}}, "'image.data' is required"),
        "/api/explain": ({"sample": 0, "layer": 0}, "'index' is required"),
    }
    for route, (body, words) in cases.items():
        answer = CLIENT.post(route, json=body)
        assert answer.status_code == 422 and answer.json()["detail"].startswith(words), answer.text
    padding = CLIENT.post("/api/sandbox", json={"padding": {"top": 1}}).json()["detail"]
    assert padding.startswith("'padding' must be an int, [rows, columns]")
    broken = CLIENT.post("/api/trace", content=b"{", headers={"Content-Type": "application/json"})
    assert broken.json()["detail"].startswith("the request body is not valid JSON")


def test_the_server_is_still_up():
    assert CLIENT.get("/api/model").status_code == 200
    assert CLIENT.post("/api/trace", json={"sample": 0}).status_code == 200
