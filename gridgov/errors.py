"""Domain errors that carry their HTTP status, a machine code and a Chinese message."""

from __future__ import annotations

from typing import Any


class GridGovError(Exception):
    """Base of every error a user or API client is meant to see."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class BadRequest(GridGovError):
    status = 400
    code = "bad_request"


class Unauthorized(GridGovError):
    status = 401
    code = "unauthorized"


class Forbidden(GridGovError):
    status = 403
    code = "forbidden"


class NotFound(GridGovError):
    status = 404
    code = "not_found"


class Conflict(GridGovError):
    status = 409
    code = "conflict"


class Unprocessable(GridGovError):
    status = 422
    code = "unprocessable"
