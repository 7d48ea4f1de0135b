"""HTTP errors in the caller's dialect: OpenAI's ``{"error": {message, type, param, code}}`` on ``/v1/*``, TEI's
``{"error", "error_type"}`` on TEI's routes."""

from __future__ import annotations

from starlette.responses import JSONResponse

# status -> (OpenAI error type, TEI error_type)
KINDS = {
    400: ("invalid_request_error", "Empty"),
    401: ("authentication_error", "Unauthorized"),
    404: ("invalid_request_error", "Validation"),
    408: ("invalid_request_error", "Validation"),
    413: ("invalid_request_error", "Validation"),
    422: ("invalid_request_error", "Validation"),
    429: ("rate_limit_error", "Overloaded"),
    500: ("server_error", "Backend"),
    503: ("service_unavailable", "Unhealthy"),
}
CODES = {401: "invalid_api_key", 404: "model_not_found", 408: "request_timeout", 413: "request_too_large", 429: "overloaded",
         503: "unavailable"}


class ClientGoneError(Exception):
    """The client disconnected before its vectors were ready; its work was dropped."""


class APIError(Exception):
    """An error a route returns to its caller (never a traceback)."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        assert status in KINDS, status
        self.status = status
        self.message = message
        self.param = param


def is_openai_path(path: str) -> bool:
    return path.startswith("/v1/")


def error_response(path: str, status: int, message: str, param: str | None = None) -> JSONResponse:
    openai_type, tei_type = KINDS[status]
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    if is_openai_path(path):
        body = {"error": {"message": message, "type": openai_type, "param": param, "code": CODES.get(status)}}
    else:
        body = {"error": message, "error_type": tei_type}
    return JSONResponse(body, status_code=status, headers=headers)
