"""The OpenAPI v1.0 subset of a Yeastar P-Series Cloud Edition PBX.

Like the real PBX, every answer is HTTP 200 with ``errcode``/``errmsg`` (0 / SUCCESS on success);
only the injected faults of ``/_sim/faults`` produce HTTP 503.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from simulators.clock import Clock
from simulators.yeastar.state import (
    ACCESS_DENIED,
    INTERFACE_NOT_EXISTED,
    PARAMETER_ERROR,
    SUCCESS,
    OpenApiFault,
    YeastarState,
)

if TYPE_CHECKING:
    from simulators.yeastar.server import YeastarSimConfig

PREFIX = "/openapi/v1.0"
PARAMETER_SYNTAX_ERROR = (40001, "PARAMETER SYNTAX ERROR")
_SORTABLE = {"id", "number", "caller_id_name", "email_addr", "mobile_number", "presence_status"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def answer(code: tuple[int, str] = SUCCESS, **body: Any) -> web.Response:
    return web.json_response({"errcode": code[0], "errmsg": code[1], **body})


class OpenApi:
    def __init__(
        self, config: YeastarSimConfig, state: YeastarState, clock: Clock, persist: Callable[[], None]
    ) -> None:
        self._config = config
        self._state = state
        self._clock = clock
        self._persist = persist

    def add_routes(self, app: web.Application) -> None:
        app.middlewares.append(self._middleware)
        app.router.add_post(f"{PREFIX}/get_token", self.get_token)
        app.router.add_post(f"{PREFIX}/refresh_token", self.refresh_token)
        app.router.add_get(f"{PREFIX}/del_token", self.del_token)
        app.router.add_get(f"{PREFIX}/extension/list", self.extension_list)
        app.router.add_get(f"{PREFIX}/system/information", self.system_information)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/openapi/"):
            return await handler(request)
        if self._state.fail_next > 0:
            self._state.fail_next -= 1
            return web.json_response({"errcode": -2, "errmsg": "INTERNAL SERVER ERROR"}, status=503)
        # The guide requires "User-Agent: OpenAPI" on every request.
        if request.headers.get("User-Agent", "") != "OpenAPI":
            return answer(ACCESS_DENIED)
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return answer(INTERFACE_NOT_EXISTED)
        except web.HTTPMethodNotAllowed:
            return answer(INTERFACE_NOT_EXISTED)
        except OpenApiFault as fault:
            # Failed logins and blocks change state too.
            self._persist()
            return answer((fault.errcode, fault.errmsg), **fault.extra)

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.text() or "{}")
        except ValueError:
            raise OpenApiFault(PARAMETER_SYNTAX_ERROR) from None
        if not isinstance(body, dict):
            raise OpenApiFault(PARAMETER_SYNTAX_ERROR)
        return body

    @staticmethod
    def _ip(request: web.Request) -> str:
        return request.remote or "unknown"

    async def _authorize(self, request: web.Request) -> None:
        token = request.query.get("access_token", "")
        self._state.check_access(token, await self._clock.now())

    async def get_token(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise OpenApiFault(
                PARAMETER_ERROR, invalid_param_list=[{"field": "username or password", "validation_type": "required"}]
            )
        issued = self._state.get_token(username, password, self._ip(request), await self._clock.now())
        self._persist()
        return answer(**issued)

    async def refresh_token(self, request: web.Request) -> web.Response:
        refresh = (await self._body(request)).get("refresh_token")
        if not isinstance(refresh, str):
            raise OpenApiFault(
                PARAMETER_ERROR, invalid_param_list=[{"field": "refresh_token", "validation_type": "required"}]
            )
        issued = self._state.refresh_token(refresh, self._ip(request), await self._clock.now())
        self._persist()
        return answer(**issued)

    async def del_token(self, request: web.Request) -> web.Response:
        token = request.query.get("access_token", "")
        self._state.del_token(token, await self._clock.now())
        self._persist()
        return answer()

    async def extension_list(self, request: web.Request) -> web.Response:
        await self._authorize(request)
        try:
            page = int(request.query.get("page", "1"))
            page_size = int(request.query.get("page_size", "20"))
        except ValueError:
            raise OpenApiFault(PARAMETER_ERROR) from None
        sort_by = request.query.get("sort_by", "id")
        order_by = request.query.get("order_by", "asc")
        if page < 1 or page_size < 1 or sort_by not in _SORTABLE or order_by not in ("asc", "desc"):
            raise OpenApiFault(PARAMETER_ERROR)
        rows = sorted(
            (e.to_api() for e in self._state.extensions),
            key=lambda row: row[sort_by],
            reverse=order_by == "desc",
        )
        start = (page - 1) * page_size
        return answer(total_number=len(rows), data=rows[start : start + page_size])

    async def system_information(self, request: web.Request) -> web.Response:
        await self._authorize(request)
        now = await self._clock.now()
        return answer(
            data={
                "device_name": "PBX",
                "model_name": "P-Series Cloud Edition",
                "sn": "3631A2124SIM",
                "firmware_version": self._config.firmware_version,
                "system_time": now.strftime("%Y/%m/%d %H:%M:%S"),
                "up_time": int(now.timestamp()) % 86400,
                "system_date_format": "YYYY/MM/DD",
                "system_time_format": "hh:mm:ss",
                "timestamp": int(now.timestamp()),
            }
        )
