"""The JSON API under /api/v1: each route parses the request and calls one domain function."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from gridgov import regions as region_service
from gridgov.web import get_session

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.get("/health")
def health() -> Any:
    return jsonify({"status": "ok"})


@bp.get("/regions/<code>")
def region(code: str) -> Any:
    return jsonify(region_service.describe(get_session(), code))
