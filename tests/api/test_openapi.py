"""The OpenAPI document describes every /api/v1 route and every transition."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from gridgov.workflow.machine import TRANSITIONS


def test_openapi_lists_every_api_route(app: Flask, client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule == "/api/v1/openapi.json":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule[len("/api/v1") :])
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method))
    assert routes == documented


def test_openapi_action_enum_is_the_transition_table(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    op = spec["paths"]["/events/{event_id}/actions/{action}"]["post"]
    action_param = next(p for p in op["parameters"] if p["name"] == "action")
    assert action_param["schema"]["enum"] == list(TRANSITIONS)
    for name in TRANSITIONS:
        assert f"`{name}`" in op["description"]
