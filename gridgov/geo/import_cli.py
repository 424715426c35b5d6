"""CLI commands of this subsystem (registered by gridgov.cli)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import click
from flask import current_app
from flask.cli import with_appcontext

from gridgov.db import Database
from gridgov.geo.importer import import_grid_file
from gridgov.geo.regions_import import Source, forget_cached_geometry, import_region_files

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


class _Report(Protocol):
    @property
    def ok(self) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...

    def to_text(self) -> str: ...


def _import_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the options both imports take: encoding, JSON output, check only."""
    for option in reversed(
        (
            click.option(
                "--encoding", default=None, help="Shapefile attribute encoding, e.g. GBK."
            ),
            click.option("--json", "as_json", is_flag=True, help="Print the report as JSON."),
            click.option("--dry-run", is_flag=True, help="Check only; store nothing."),
        )
    ):
        command = option(command)
    return command


def _finish(report: _Report, as_json: bool) -> None:
    """Print the report as text or JSON; exit 1 when it refused the import."""
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(report.to_text())
    if not report.ok:
        raise click.exceptions.Exit(1)


@click.command("import-grids")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--crs", default=None, help="The file's CRS, e.g. EPSG:4526 (overrides the file's).")
@click.option("--layer", default=None, help="GeoPackage layer to read (default: the first).")
@click.option("--county", default=None, help="6-digit county code (default: from the grid codes).")
@click.option("--name", default=None, help="Name of the new grid set.")
@_import_options
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
    _finish(report, as_json)


@click.command("import-regions")
@click.argument("gpkg", required=False, type=_FILE)
@click.option("--county-file", type=_FILE, help="County boundary file (default: GPKG).")
@click.option("--towns", type=_FILE, help="Towns (乡镇/街道) file (default: GPKG).")
@click.option("--villages", type=_FILE, help="Villages (村/社区) file (default: GPKG).")
@click.option("--grids", type=_FILE, help="Grid file to import with the regions, atomically.")
@click.option("--county-layer", default=None, help="Layer of the county file (default: county).")
@click.option("--towns-layer", default=None, help="Layer of the towns file (default: towns).")
@click.option(
    "--villages-layer", default=None, help="Layer of the villages file (default: villages)."
)
@click.option("--grids-layer", default=None, help="Layer of the grid file (default: grids).")
@click.option("--county", default=None, help="6-digit county code (picks or names the feature).")
@click.option("--name", default=None, help="County name (overrides the file's).")
@click.option("--crs", default=None, help="The files' CRS, e.g. EPSG:4526 (overrides theirs).")
@_import_options
@with_appcontext
def import_regions_command(
    gpkg: Path | None,
    county_file: Path | None,
    towns: Path | None,
    villages: Path | None,
    grids: Path | None,
    county_layer: str | None,
    towns_layer: str | None,
    villages_layer: str | None,
    grids_layer: str | None,
    county: str | None,
    name: str | None,
    crs: str | None,
    encoding: str | None,
    as_json: bool,
    dry_run: bool,
) -> None:
    """Check a county's boundary, towns and villages and store them (refused on any error).

    Give one GeoPackage with the layers county, towns and villages (GPKG), or a file for
    each (--county-file, --towns, --villages); a file given for a role replaces GPKG there.
    """
    sources: dict[str, Source] = {}
    for role, path, layer in (
        ("county", county_file, county_layer),
        ("towns", towns, towns_layer),
        ("villages", villages, villages_layer),
    ):
        chosen = path or gpkg
        if chosen is None:
            option = "--county-file" if role == "county" else f"--{role}"
            raise click.UsageError(f"缺少{role}图层：请给出 GeoPackage，或用 {option} 指定文件")
        default = role if chosen == gpkg and path is None else None
        sources[role] = Source(chosen, layer or default)
    if grids is not None or grids_layer is not None:
        chosen = grids or gpkg
        if chosen is None:
            raise click.UsageError("--grids-layer 需要 GeoPackage 或 --grids 文件")
        sources["grids"] = Source(chosen, grids_layer or ("grids" if grids is None else None))
    db: Database = current_app.extensions["gridgov.db"]
    with db.session() as session:
        report = import_region_files(
            session,
            county_file=sources["county"],
            towns=sources["towns"],
            villages=sources["villages"],
            grids=sources.get("grids"),
            county=county,
            name=name,
            crs=crs,
            encoding=encoding,
            dry_run=dry_run,
        )
    if report.changed:
        forget_cached_geometry()
    _finish(report, as_json)


commands: list[click.Command] = [import_grids_command, import_regions_command]
