"""How the service fails: JSON ``{"error": "..."}`` with a fitting status, never a traceback.

Two ASGI middlewares and the app's exception handlers:

    Observe     outermost: counts every request by endpoint and status, and turns an unexpected
                exception into a logged 500 so a bad request never takes a worker down
    BodyLimit   413 for a body over ``MAX_BODY`` bytes, by Content-Length and as it streams
    handlers    FastAPI's 422 validation errors become 400 with a one-line message; HTTP
                errors and ``BrainrankError`` become JSON
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from brainrank.index.errors import BrainrankError, InputError

log = logging.getLogger("brainrank.serve")

MAX_BODY = 64 * 1024  # bytes


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _first_line(text: str) -> str:
    return " ".join(str(text).split())


def validation_message(exc: RequestValidationError) -> str:
    """One line naming the first problem of a request FastAPI could not validate."""
    errors = list(exc.errors())
    if not errors:
        return "the request is malformed"
    first = errors[0]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        message = f"the body is not valid JSON ({detail})" if detail else "the body is not JSON"
    else:
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        if first.get("type") == "missing" and not where:
            message = "the request needs a JSON object body"
        else:
            message = f"{where or 'body'}: {first.get('msg', 'is invalid')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return _first_line(message)


def install_handlers(app: FastAPI) -> None:
    """Errors as ``{"error": ...}``: 400 for bad input, HTTP errors with their own status."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return error_response(400, validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, _first_line(exc.detail), exc.headers)

    @app.exception_handler(InputError)
    async def _input(request: Request, exc: InputError):
        return error_response(400, _first_line(str(exc)))

    @app.exception_handler(BrainrankError)
    async def _broken(request: Request, exc: BrainrankError):
        # A broken artifact or config: the operator's to fix, and the message says how.
        log.warning("%s %s failed: %s", request.method, request.url.path, exc)
        return error_response(500, _first_line(str(exc)))


class BodyLimit:
    """Answers 413 to a request body over ``limit`` bytes, declared or streamed."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return await error_response(400, "Content-Length is not a number")(
                    scope, receive, send
                )
            if size > self.limit:
                return await self._too_large(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # FastAPI passes an HTTPException from reading the body on to its handler.
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counted, send)

    def _message(self) -> str:
        return f"the request body is over the limit of {self.limit // 1024} KB"

    async def _too_large(self, scope, receive, send):
        await error_response(413, self._message(), {"Connection": "close"})(scope, receive, send)


class Observe:
    """Counts requests by endpoint and status; an unexpected error becomes a logged 500."""

    def __init__(self, app, record: Callable[[str, int], None], endpoints: Callable[[], set]):
        self.app, self.record, self.endpoints = app, record, endpoints

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status, started = 500, False

        async def watched(message):
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            status = 500
            if not started:
                body = json.dumps({"error": "internal error; the server log has the details"})
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": body.encode()})
        finally:
            self.record(self._endpoint(scope), status)

    def _endpoint(self, scope) -> str:
        """The route's template (``/documents/{doc_id:path}``), so ids never become labels."""
        route = scope.get("route")
        if route is not None and getattr(route, "path", None):
            return route.path
        path = scope.get("path", "")
        return path if path in self.endpoints() else "other"
