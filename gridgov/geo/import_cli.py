"""CLI commands of this subsystem (registered by gridgov.cli)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from gridgov.db import Database
from gridgov.geo.importer import import_grid_file


@click.command("import-grids")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--crs", default=None, help="The file's CRS, e.g. EPSG:4526 (overrides the file's).")
@click.option("--layer", default=None, help="GeoPackage layer to read (default: the first).")
@click.option("--county", default=None, help="6-digit county code (default: from the grid codes).")
@click.option("--name", default=None, help="Name of the new grid set.")
@click.option("--encoding", default=None, help="Attribute encoding of a Shapefile, e.g. GBK.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--dry-run", is_flag=True, help="Check only; store nothing.")
@with_appcontext
def import_grids_command(
    path: Path,
    crs: str | None,
    layer: str | None,
    county: str | None,
    name: str | None,
    encoding: str | None,
    as_json: bool,
    dry_run: bool,
) -> None:
    """Check a grid map and make it the county's active grid set (refused on any error)."""
    db: Database = current_app.extensions["gridgov.db"]
    with db.session() as session:
        report = import_grid_file(
            session,
            path,
            crs=crs,
            layer=layer,
            county=county,
            name=name,
            encoding=encoding,
            dry_run=dry_run,
        )
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(report.to_text())
    if not report.ok:
        raise click.exceptions.Exit(1)


commands: list[click.Command] = [import_grids_command]
