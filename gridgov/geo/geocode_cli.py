"""CLI commands of this subsystem (registered by gridgov.cli)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from gridgov.cli import app_db, echo_json
from gridgov.errors import GridGovError


@click.command(
    "geocode",
    # Longitudes and latitudes may be negative: let "-12.5" through as an argument.
    context_settings={"ignore_unknown_options": True},
)
@click.argument("lng", required=False)
@click.argument("lat", required=False)
@click.option(
    "--crs",
    default="wgs84",
    show_default=True,
    help="Coordinate system of LNG LAT: wgs84, gcj02 (Amap/Tencent), bd09 (Baidu), cgcs2000.",
)
@click.option(
    "--tolerance",
    type=float,
    default=None,
    help="Snap points up to this many metres outside every grid [default: settings].",
)
@click.option("--text", "text", default=None, help="A place name, e.g. 螺溪镇欧田村委会附近.")
@with_appcontext
def geocode_command(
    lng: str | None, lat: str | None, crs: str, tolerance: float | None, text: str | None
) -> None:
    """Print the grid, village, town and county of a position or a place name."""
    from gridgov.geo.geocoder import geocode, geocode_text

    if text is None and (lng is None or lat is None):
        raise click.UsageError("give LNG LAT, or --text PLACE")
    if text is not None and lng is not None:
        raise click.UsageError("give either LNG LAT or --text, not both")
    if tolerance is None:
        tolerance = current_app.extensions["gridgov.settings"].snap_tolerance_m
    try:
        with app_db().session() as session:
            if text is not None:
                answer = geocode_text(session, text)
            else:
                answer = geocode(session, lng, lat, crs, tolerance).to_dict()
    except GridGovError as exc:
        echo_json(exc.to_dict())
        raise click.exceptions.Exit(1) from None
    echo_json(answer)


commands: list[click.Command] = [geocode_command]
