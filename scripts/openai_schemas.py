#!/usr/bin/env python3
"""Extracts the schemas of OpenAI's chat completion answers, chunks, errors and model lists from
OpenAI's published OpenAPI document (github.com/openai/openai-openapi, `openapi.json`) into the
JSON Schema fixture `functions/invoke-with-cache/tests/fixtures/openai-chat-schemas.json`, which
`tests/client_apis.rs` holds the OpenAI-compatible route's answers to.

  python3 scripts/openai_schemas.py path/to/openapi.json COMMIT > functions/invoke-with-cache/tests/fixtures/openai-chat-schemas.json
"""

import json
import sys

ROOTS = [
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "ErrorResponse",
    "ListModelsResponse",
]


def refs(node, found):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                found.add(value.rsplit("/", 1)[-1])
            else:
                refs(value, found)
    elif isinstance(node, list):
        for value in node:
            refs(value, found)


def rewrite(node):
    """References to `#/$defs/`, and the document's OpenAPI 3.0 `nullable: true` as JSON Schema
    says it (a `null` type, a `null` among the enum's values)."""
    if isinstance(node, list):
        return [rewrite(value) for value in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: (value.replace("#/components/schemas/", "#/$defs/") if key == "$ref" else rewrite(value))
        for key, value in node.items()
        if key != "nullable"
    }
    if node.get("nullable") is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = out["enum"] + [None]
        elif "type" not in out:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def main():
    document = json.load(open(sys.argv[1]))
    commit = sys.argv[2] if len(sys.argv) > 2 else "unknown"
    schemas = document["components"]["schemas"]
    needed, todo = set(ROOTS), list(ROOTS)
    while todo:
        found = set()
        refs(schemas[todo.pop()], found)
        for name in found - needed:
            needed.add(name)
            todo.append(name)
    fixture = {
        "$comment": f"From github.com/openai/openai-openapi openapi.json at {commit} (OpenAPI {document['openapi']}, API {document['info']['version']}); made by scripts/openai_schemas.py",
        "$defs": {name: rewrite(schemas[name]) for name in sorted(needed)},
    }
    json.dump(fixture, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
