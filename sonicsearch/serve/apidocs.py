"""``/docs``: the API reference as one plain HTML page, made from the app's OpenAPI
document. No script and no CDN: it reads the same offline as online (the raw document
is at ``/openapi.json``)."""

from __future__ import annotations

import re
from html import escape as _escape
from typing import Any

_METHODS = ("get", "post", "put", "patch", "delete")


def render(spec: dict[str, Any]) -> str:
    """The page for an OpenAPI 3 document."""
    info = spec.get("info", {})
    title = escape(f"{info.get('title', 'API')} {info.get('version', '')}".strip())
    ops = [_operation(method, path, op) for path, item in spec.get("paths", {}).items()
           for method, op in item.items() if method in _METHODS]
    schemas = spec.get("components", {}).get("schemas", {})
    error = _fields(schemas.get("ErrorBody", {}))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} API</title>
<link rel="icon" href="/favicon.ico" type="image/svg+xml">
<link rel="stylesheet" href="/static/style.css"></head>
<body class="apidocs"><header><h1>{title} API</h1>
<a class="muted" href="/openapi.json">openapi.json</a><a class="muted" href="/">search page</a>
</header><main>
<section class="card"><p>{escape(info.get('description', ''))}</p></section>
{''.join(ops)}
<section class="card"><h2>Errors</h2><p>Every 4xx and 5xx answer has this JSON body.</p>
{error}</section>
</main></body></html>
"""


def _operation(method: str, path: str, op: dict[str, Any]) -> str:
    rows = [(p["name"], p.get("in", ""), _type(p.get("schema", {})),
             p.get("required", False), p.get("description")
             or p.get("schema", {}).get("description", ""))
            for p in op.get("parameters", [])]
    body = op.get("requestBody", {}).get("content", {})
    uploads = f"<p>Body: {', '.join(f'<code>{escape(t)}</code>' for t in body)}</p>" \
        if body else ""
    answers = ", ".join(f"<code>{escape(code)}</code> {escape(r.get('description', ''))}"
                        for code, r in op.get("responses", {}).items())
    return (f'<section class="card"><h2><code>{method.upper()} {escape(path)}</code></h2>'
            f"<p>{escape(op.get('summary', ''))}</p>{_table(rows)}{uploads}"
            f'<p class="small muted">Answers: {answers}</p></section>\n')


def _fields(schema: dict[str, Any]) -> str:
    need = set(schema.get("required", []))
    return _table([(name, "", _type(prop), name in need, prop.get("description", ""))
                   for name, prop in schema.get("properties", {}).items()])


def _table(rows: list[tuple[str, str, str, bool, str]]) -> str:
    if not rows:
        return ""
    cells = "".join(f"<tr><td><code>{escape(name)}</code>{' *' if need else ''}</td>"
                    f"<td>{escape(where)}</td><td>{escape(kind)}</td>"
                    f"<td>{escape(text)}</td></tr>" for name, where, kind, need, text in rows)
    return ('<table class="params"><tr><th>name</th><th>in</th><th>type</th><th>meaning</th>'
            f"</tr>{cells}</table>")


def escape(text: str) -> str:
    """HTML-escaped, with `code` spans (the descriptions' one bit of Markdown) kept."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _escape(text))


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}))}"
    kind = str(schema.get("type", "any"))
    return f"{kind} (default {schema['default']})" if "default" in schema else kind
