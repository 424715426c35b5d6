"""CLI commands of this subsystem (registered by gridgov.cli)."""

from __future__ import annotations

import click

commands: list[click.Command] = []
