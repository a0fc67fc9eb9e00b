"""OpenAPI helpers for routes that read their body themselves (several content types on one route)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its ``$defs`` inlined.

    A schema placed in ``openapi_extra`` is not registered under
    ``components``, so its ``#/$defs/...`` references would dangle in the
    OpenAPI document; inlining keeps it self-contained.
    """
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


PROBLEM_JSON = "application/problem+json"
_PROBLEM_REF = "#/components/schemas/ProblemDetails"
_FASTAPI_VALIDATION_REF = "#/components/schemas/HTTPValidationError"


def problems_as_problem_json(spec: dict[str, Any]) -> dict[str, Any]:
    """Make the document say what the service sends for errors: ``application/problem+json`` ProblemDetails.

    FastAPI documents its 422 as ``application/json`` HTTPValidationError and a ``responses=`` model as
    ``application/json``; every error here is a problem document (fathom.service.problems). Error responses
    declared with a description only get the ProblemDetails schema too, so clients (and schemathesis)
    can check them. Error responses with another schema (``/v1/retrieve``'s 503 answer) are left alone.
    """
    for item in spec.get("paths", {}).values():
        for operation in item.values():
            for status, response in operation.get("responses", {}).items():
                if not str(status).startswith(("4", "5")):
                    continue
                content = response.get("content") or {}
                schema = (content.get("application/json") or {}).get("schema") or {}
                if not content or schema.get("$ref") in (_PROBLEM_REF, _FASTAPI_VALIDATION_REF):
                    examples = (content.get("application/json") or {}).get("examples")
                    body: dict[str, Any] = {"schema": {"$ref": _PROBLEM_REF}}
                    if examples:
                        body["examples"] = examples
                    response["content"] = {PROBLEM_JSON: body}
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    if "ProblemDetails" not in schemas:
        from fathom.service.problems import ProblemDetails

        schemas["ProblemDetails"] = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    if _FASTAPI_VALIDATION_REF not in str(spec.get("paths")):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return spec


def install(app: Any) -> None:
    """Serve the post-processed document at /openapi.json (built once, like FastAPI's own)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problems_as_problem_json(build())
        return app.openapi_schema

    app.openapi = openapi
