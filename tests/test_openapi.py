"""The OpenAPI document describes every route the app serves, and its references resolve."""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import Route

from server.app import create_app
from tests.fixtures.live_server import make_settings


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def test_every_route_is_documented(tmp_path: Any) -> None:
    app = create_app(make_settings(tmp_path))
    document = app.state.openapi
    served = {
        (method.lower(), re.sub(r"{(\w+):\w+}", r"{\1}", route.path))
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ())
        if method != "HEAD"
    }
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert served == documented
    schemas = document["components"]["schemas"]
    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            assert op["operationId"] and op["responses"], (method, path)
            for name in re.findall(r"{(\w+)}", path):
                assert any(p["name"] == name and p["in"] == "path" for p in op["parameters"])
