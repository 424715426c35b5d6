"""CLI commands of the demo seeder (registered by gridgov.cli)."""

from __future__ import annotations

import time
import unicodedata

import click
from flask import current_app
from flask.cli import with_appcontext

from gridgov.demo import DEMO_PASSWORD
from gridgov.errors import GridGovError


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(_width(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(_pad(cell, w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


@click.command("seed-demo")
@click.option("--county", default="441523", show_default=True, help="County code to seed.")
@click.option(
    "--events", "event_count", default=3000, show_default=True, type=click.IntRange(1, 1_000_000)
)
@click.option("--days", default=120, show_default=True, type=click.IntRange(1, 3650))
@click.option("--seed", default=1, show_default=True, type=int, help="Random seed.")
@click.option(
    "--password", default=DEMO_PASSWORD, show_default=True, help="Password of new accounts."
)
@with_appcontext
def seed_demo_command(county: str, event_count: int, days: int, seed: int, password: str) -> None:
    """Create demo accounts and months of events driven through the real workflow."""
    from gridgov.auth import check_password
    from gridgov.models import User
    from gridgov.photos import PhotoStore
    from gridgov.seed import (
        GENERATED_PREFIXES,
        demo_accounts,
        generated_accounts,
        seed_demo,
        state_labels,
    )

    if not password:
        raise click.UsageError("--password must not be empty")
    settings = current_app.extensions["gridgov.settings"]
    store = PhotoStore(settings.upload_folder)
    started = time.perf_counter()
    try:
        with current_app.extensions["gridgov.db"].session() as session:
            summary = seed_demo(
                session, county, event_count, days, seed, store=store, password=password
            )
            accounts = demo_accounts(session)
            generated = generated_accounts(session, county)
            # One Argon2 check per distinct hash (normally one): is the password shown right?
            known = {
                h: check_password(User(password_hash=h), password)
                for h in {a["password_hash"] for a in accounts}
            }
    except (GridGovError, LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    elapsed = time.perf_counter() - started

    labels = state_labels()
    if summary["created"]:
        click.echo(
            f"已生成演示数据：{summary['events']} 件事件，{summary['actions']} 条办理记录，"
            f"{summary['photos']} 张照片（用时 {elapsed:.1f} 秒）"
        )
    else:
        click.echo(f"县 {county} 已有演示数据，未重复生成（{summary['events']} 件事件）")
    click.echo("")
    state_rows = [[labels[s], s, str(n)] for s, n in summary["states"].items()]
    for line in _table(["状态", "state", "件数"], state_rows):
        click.echo(line)
    click.echo(
        f"按时办结 {summary['closed_on_time']}，超期办结 {summary['closed_late']}，"
        f"在办超期 {summary['open_overdue']}，"
        f"返工 {summary['reworked']}，退回 {summary['returned']}，延期 {summary['extended']}，"
        f"自办自结 {summary['self_handled']}"
    )
    click.echo("")
    click.echo("演示账号：")
    rows = [
        [
            a["username"],
            a["role"],
            a["unit"],
            password if known[a["password_hash"]] else "（原密码）",
        ]
        for a in accounts
    ]
    for line in _table(["用户名", "角色", "单位", "密码"], rows):
        click.echo(line)
    more = [
        f"{GENERATED_PREFIXES[prefix][1]} {n} 个（{GENERATED_PREFIXES[prefix][2]}）"
        for prefix, n in generated.items()
        if n
    ]
    if more:
        click.echo(f"另有生成账号 {sum(generated.values())} 个，密码相同：" + "，".join(more))


commands: list[click.Command] = [seed_demo_command]
