"""The slice of OData query handling Graph clients rely on: $filter (eq / any / date ranges joined by
``and``), $select, $top with ``@odata.nextLink`` paging."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from yarl import URL

from simulators.entra.errors import GraphError, bad_request

T = TypeVar("T")
Json = dict[str, Any]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 999

_QUOTED = r"'((?:[^']|'')*)'"
_EQ = re.compile(rf"^(\w+)\s+eq\s+{_QUOTED}$", re.IGNORECASE)
_ANY = re.compile(rf"^(\w+)/any\(\s*(\w+)\s*:\s*\2\s+eq\s+{_QUOTED}\s*\)$", re.IGNORECASE)
_COMPARE = re.compile(r"^(\w+)\s+(ge|gt|le|lt)\s+(\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d)?)$", re.IGNORECASE)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)


@dataclass(frozen=True)
class Clause:
    field: str
    op: str  # eq, any, ge, gt, le, lt
    value: str


def unsupported_query(prop: str, resource: str) -> GraphError:
    return GraphError(
        400,
        "Request_UnsupportedQuery",
        f"Unsupported or invalid query filter clause specified for property '{prop}' of resource '{resource}'.",
    )


def _split_and(text: str) -> list[str]:
    """Split on ``and`` outside quoted literals."""
    parts: list[str] = []
    start = 0
    literal_spans = [m.span() for m in re.finditer(_QUOTED, text)]
    for match in _AND.finditer(text):
        if not any(lo <= match.start() < hi for lo, hi in literal_spans):
            parts.append(text[start : match.start()])
            start = match.end()
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_filter(text: str | None, allowed: Collection[str], resource: str) -> list[Clause]:
    if not text:
        return []
    clauses: list[Clause] = []
    for part in _split_and(text.strip()):
        if m := _EQ.match(part):
            clause = Clause(m[1], "eq", m[2].replace("''", "'"))
        elif m := _ANY.match(part):
            clause = Clause(m[1], "any", m[3].replace("''", "'"))
        elif m := _COMPARE.match(part):
            clause = Clause(m[1], m[2].lower(), m[3])
        else:
            raise bad_request(f"Invalid filter clause: {part!r}", code="BadRequest")
        if clause.field not in allowed:
            raise unsupported_query(clause.field, resource)
        clauses.append(clause)
    return clauses


def eq_value(clauses: Sequence[Clause], field: str) -> str | None:
    """The value of a ``field eq '...'`` clause, used to answer from an index."""
    return next((c.value for c in clauses if c.field == field and c.op == "eq"), None)


def _matches(item: Json, clause: Clause) -> bool:
    value = item.get(clause.field)
    if clause.op == "eq":
        return value is not None and str(value).casefold() == clause.value.casefold()
    if clause.op == "any":
        return clause.value.casefold() in (str(v).casefold() for v in value or ())
    if value is None:
        return False
    left, right = datetime.fromisoformat(str(value)), datetime.fromisoformat(clause.value)
    return {"ge": left >= right, "gt": left > right, "le": left <= right, "lt": left < right}[clause.op]


def odata_context(request: web.Request, base_url: str, context: str) -> str:
    version = request.path.split("/")[1]  # v1.0 or beta
    return f"{base_url}/{version}/$metadata#{context}"


def select(request: web.Request, item: Json) -> Json:
    fields = request.query.get("$select")
    if not fields:
        return item
    wanted = {f.strip() for f in fields.split(",")}
    return {k: v for k, v in item.items() if k in wanted or k.startswith("@odata.")}


def _page_size(request: web.Request) -> int:
    raw = request.query.get("$top", str(DEFAULT_PAGE_SIZE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise bad_request(f"Invalid page size specified: '{raw}'. Must be between 1 and {MAX_PAGE_SIZE} inclusive.")
    return int(raw)


def _offset(request: web.Request) -> int:
    token = request.query.get("$skiptoken")
    if token is None:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
    except ValueError:
        raise bad_request("The specified page token value has expired or is invalid.") from None


def collection(
    request: web.Request,
    base_url: str,
    context: str,
    records: Sequence[T],
    to_json: Callable[[T], Json],
    *,
    clauses: Sequence[Clause] = (),
) -> web.Response:
    """One page of a Graph collection; JSON is only built for the page unless a filter needs it."""
    size, offset = _page_size(request), _offset(request)
    if clauses:
        items = [j for j in map(to_json, records) if all(_matches(j, c) for c in clauses)]
        window, total = items[offset : offset + size], len(items)
    else:
        window, total = [to_json(r) for r in records[offset : offset + size]], len(records)
    body: Json = {
        "@odata.context": odata_context(request, base_url, context),
        "value": [select(request, item) for item in window],
    }
    if offset + size < total:
        token = base64.urlsafe_b64encode(f"offset:{offset + size}".encode()).decode()
        next_url = URL(base_url + request.rel_url.path).with_query({**request.query, "$skiptoken": token})
        body["@odata.nextLink"] = str(next_url)
    return web.json_response(body)
