"""The work menu marks exactly one item: the page itself, else its folder."""

from __future__ import annotations

import pytest

from gridgov.models import Role
from gridgov.web.menu import MENU, active_item, menu_for

CENTRE = menu_for(Role.COUNTY_DISPATCHER)


@pytest.mark.parametrize(
    ("path", "active"),
    [
        ("/desk/", "/desk/"),
        ("/desk/events", "/desk/events"),
        ("/desk/new", "/desk/new"),
        ("/desk/dispatch", "/desk/"),
        ("/map/", "/map/"),
        ("/events/12", None),
    ],
)
def test_one_active_item(path: str, active: str | None) -> None:
    assert active_item(CENTRE, path) == active


def test_every_role_has_a_menu_except_none_missing() -> None:
    assert set(MENU) == set(Role)
    assert all(MENU[role] for role in Role)
