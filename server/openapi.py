"""Build the OpenAPI 3.1 document from the operation table that also builds the routes."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.schemas import Problem

Endpoint = Callable[[Request], Awaitable[Response]]
_CONVERTER = re.compile(r"{(\w+):\w+}")
_REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["query", "header", "path"]
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Reply:
    description: str
    model: type[BaseModel] | None = None
    media_type: str = "application/json"
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # Starlette form, e.g. /api/diagrams/{diagram_id}/versions/{rev:int}
    endpoint: Endpoint
    operation_id: str
    summary: str
    tag: str
    replies: dict[int, Reply]
    body: type[BaseModel] | None = None
    accepts_xml: bool = False
    params: tuple[Param, ...] = ()
    authenticated: bool = True
    errors: tuple[int, ...] = field(default=())


def routes_for(operations: list[Operation]) -> list[Route]:
    return [Route(op.path, op.endpoint, methods=[op.method]) for op in operations]


def build_document(operations: list[Operation], *, title: str, version: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        path = _CONVERTER.sub(r"{\1}", op.path)
        paths.setdefault(path, {})[op.method.lower()] = _operation(op, path, schemas)
    _add_schema(Problem, schemas, "serialization")
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _operation(op: Operation, path: str, schemas: dict[str, Any]) -> dict[str, Any]:
    params = [_param(p) for p in op.params]
    for name in re.findall(r"{(\w+)}", path):
        if not any(p.name == name and p.where == "path" for p in op.params):
            kind = "integer" if f"{{{name}:int}}" in op.path else "string"
            params.append({"name": name, "in": "path", "required": True, "schema": {"type": kind}})
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": params,
        "responses": {},
    }
    if op.authenticated:
        doc["security"] = [{"bearer": []}]
    if op.body is not None:
        content: dict[str, Any] = {
            "application/json": {"schema": _add_schema(op.body, schemas, "validation")}
        }
        if op.accepts_xml:
            xml_schema = {"type": "string", "contentMediaType": "application/xml"}
            content["application/xml"] = {"schema": xml_schema}
        doc["requestBody"] = {"required": True, "content": content}
    for status, reply in sorted(op.replies.items()):
        entry: dict[str, Any] = {"description": reply.description}
        if reply.model is not None:
            schema = _add_schema(reply.model, schemas, "serialization")
            entry["content"] = {reply.media_type: {"schema": schema}}
        elif reply.media_type != "application/json":
            entry["content"] = {reply.media_type: {"schema": {"type": "string"}}}
        if reply.headers:
            entry["headers"] = {h: {"schema": {"type": "string"}} for h in reply.headers}
        doc["responses"][str(status)] = entry
    for status in op.errors:
        doc["responses"][str(status)] = {
            "description": "problem details (RFC 9457)",
            "content": {
                "application/problem+json": {"schema": {"$ref": _REF.format(model="Problem")}}
            },
        }
    return doc


def _param(param: Param) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": param.where,
        "required": param.required or param.where == "path",
        "description": param.description,
        "schema": param.schema,
    }


def _add_schema(
    model: type[BaseModel], schemas: dict[str, Any], mode: Literal["validation", "serialization"]
) -> dict[str, str]:
    schema = model.model_json_schema(by_alias=True, ref_template=_REF, mode=mode)
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault(model.__name__, schema)
    return {"$ref": _REF.format(model=model.__name__)}
