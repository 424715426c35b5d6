"""HTML pages."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from gridgov import regions as region_service
from gridgov.web import get_session

bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> Any:
    counties = region_service.counties(get_session())
    return render_template("index.html", counties=counties)
