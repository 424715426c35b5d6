"""The shipped matter list and department kinds; loading, validation, export, unit resolution."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

import gridgov.models  # noqa: F401  (registers every table)
from gridgov.catalog import (
    DEPARTMENTS_PATH,
    MATTERS_PATH,
    CatalogError,
    department_kinds,
    export_matters,
    format_json,
    kind_labels,
    load_departments,
    load_matters,
    load_matters_data,
    read_json,
    resolve_unit,
    validate_matters,
)
from gridgov.db import Base, make_engine
from gridgov.models import Department, Matter, MatterAssist, MatterCategory, MatterTimeLimit, Region

COUNTY = "441523"
HETIAN = "441523100"
LUOXI = "441523105"

CATEGORY_NAMES = [
    "矛盾纠纷",
    "社会治安",
    "安全生产",
    "消防",
    "市容环境卫生",
    "违法建设",
    "生态环境",
    "河湖水利",
    "林业与森林防火",
    "地质灾害与三防",
    "道路交通与设施",
    "民生服务",
    "特殊人群服务",
    "公共卫生",
    "其他",
]


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        session.add_all(
            [
                Region(code=COUNTY, level="county", name="陆河县"),
                Region(code=HETIAN, level="town", name="河田镇", parent_code=COUNTY),
                Region(code=LUOXI, level="town", name="螺溪镇", parent_code=COUNTY),
            ]
        )
        session.flush()
        yield session


@pytest.fixture
def loaded(session: Session) -> Session:
    load_departments(session, COUNTY)
    load_matters(session)
    return session


def shipped() -> dict[str, Any]:
    return read_json(MATTERS_PATH)


def all_matters(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for c in data["categories"] for m in c["matters"]]


def count(session: Session, model: type[Base]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


# ---------------------------------------------------------------- the shipped files


def test_shipped_departments_have_enough_kinds_on_both_levels() -> None:
    data = read_json(DEPARTMENTS_PATH)
    kinds = department_kinds()
    county = [k for k, level in kinds.items() if level == "county"]
    town = [k for k, level in kinds.items() if level == "town"]
    assert len(county) == len(data["county"]) >= 18
    assert len(town) == len(data["town"]) >= 10
    assert {"zhengfa", "police", "fire", "ecology"} <= set(county)
    assert {"town_zongzhi", "police_station", "justice_office"} <= set(town)
    assert kind_labels()["police_station"] == "派出所"


def test_shipped_list_covers_every_category() -> None:
    data = shipped()
    assert validate_matters(data, department_kinds()) == []
    assert data["version"] and data["source"]
    assert [c["code"] for c in data["categories"]] == [f"{i:02d}" for i in range(1, 16)]
    assert [c["name"] for c in data["categories"]] == CATEGORY_NAMES
    assert all(c["matters"] for c in data["categories"])
    matters = all_matters(data)
    assert len(matters) >= 40
    names = {m["name"] for m in matters}
    assert {"邻里纠纷", "违章搭建", "消防通道占用", "污水直排", "山体滑坡隐患", "其他事项"} <= names
    assert all(len(m["assisting_kinds"]) <= 3 for m in matters)
    assert any(m["self_handle_allowed"] for m in matters)
    assert any(m["photo_required"] for m in matters)
    by_name = {m["name"]: m for m in matters}
    assert by_name["乱堆乱放"]["self_handle_allowed"] is True
    assert by_name["违章搭建"]["photo_required"] is True
    assert by_name["违章搭建"]["self_handle_allowed"] is False


def test_shipped_limits_follow_the_product_rules() -> None:
    for m in all_matters(shipped()):
        limits = m["limits"]
        for stage in ("accept", "dispatch"):
            assert limits["urgent"][stage] == [1, "hours"], m["code"]
            assert limits["pressing"][stage] == [1, "working_hours"], m["code"]
            assert limits["normal"][stage] == [1, "working_hours"], m["code"]
        for urgency in ("urgent", "pressing", "normal"):
            assert limits[urgency]["verify"] == [1, "working_days"], m["code"]
        assert limits["urgent"]["handle"] in ([2, "hours"], [2, "working_hours"]), m["code"]
        amount, unit = limits["normal"]["handle"]
        assert unit == "working_days" and 1 <= amount <= 15, m["code"]
    by_name = {m["name"]: m for m in all_matters(shipped())}
    assert by_name["火灾险情"]["limits"]["urgent"]["handle"] == [2, "hours"]
    assert by_name["乱堆乱放"]["limits"]["urgent"]["handle"] == [2, "working_hours"]


def test_shipped_matters_file_is_in_canonical_layout() -> None:
    assert format_json(shipped()) == MATTERS_PATH.read_text(encoding="utf-8")
    assert format_json(read_json(DEPARTMENTS_PATH)) == DEPARTMENTS_PATH.read_text(encoding="utf-8")


# ---------------------------------------------------------------- departments


def test_load_departments_creates_the_county_bureaus_and_town_offices(session: Session) -> None:
    data = read_json(DEPARTMENTS_PATH)
    expected = len(data["county"]) + 2 * len(data["town"])
    assert load_departments(session, COUNTY) == expected
    assert count(session, Department) == expected
    names = {d.code: d.name for d in session.scalars(select(Department))}
    assert names[f"{COUNTY}-police"] == "陆河县公安局"
    assert names[f"{COUNTY}-ecology"] == "汕尾市生态环境局陆河分局"
    assert names[f"{HETIAN}-police_station"] == "陆河县公安局河田派出所"
    assert names[f"{LUOXI}-town_zongzhi"] == "螺溪镇综治中心"
    town_office = session.scalars(
        select(Department).where(Department.code == f"{LUOXI}-justice_office")
    ).one()
    assert (town_office.level, town_office.region_code, town_office.active) == ("town", LUOXI, True)


def test_load_departments_is_idempotent_and_keeps_administrator_changes(session: Session) -> None:
    load_departments(session, COUNTY)
    ids = {d.code: d.id for d in session.scalars(select(Department))}
    off = session.scalars(select(Department).where(Department.code == f"{HETIAN}-water_station"))
    off.one().active = False
    session.add(
        Department(
            code="441523-extra", name="额外单位", kind="extra", level="county", region_code=COUNTY
        )
    )
    session.get_one(Region, LUOXI).name = "螺溪镇（新）"
    session.flush()

    load_departments(session, COUNTY)

    after = {d.code: d for d in session.scalars(select(Department))}
    assert {code: after[code].id for code in ids} == ids
    assert len(after) == len(ids) + 1
    assert after[f"{HETIAN}-water_station"].active is False
    assert after["441523-extra"].name == "额外单位"
    assert after[f"{LUOXI}-town_zongzhi"].name == "螺溪镇（新）综治中心"


def test_load_departments_needs_the_county_region(session: Session) -> None:
    with pytest.raises(CatalogError) as caught:
        load_departments(session, "441427")
    assert "441427" in caught.value.messages[0]
    assert count(session, Department) == 0


# ---------------------------------------------------------------- matters


def test_load_matters_writes_categories_matters_assists_and_limits(session: Session) -> None:
    data = shipped()
    matters = all_matters(data)
    assert load_matters(session) == len(matters)
    assert count(session, MatterCategory) == 15
    assert count(session, Matter) == len(matters)
    assert count(session, MatterTimeLimit) == 12 * len(matters)
    assert count(session, MatterAssist) == sum(len(m["assisting_kinds"]) for m in matters)
    for matter in session.scalars(select(Matter)):
        assert len(matter.limits) == 12, matter.code
    assert all(len(c.matters) > 0 for c in session.scalars(select(MatterCategory)))


def test_every_kind_in_the_list_resolves_to_a_unit(loaded: Session) -> None:
    kinds = department_kinds()
    village = f"{LUOXI}201"
    for matter in loaded.scalars(select(Matter)):
        for kind in [matter.lead_kind, *matter.assisting_kinds]:
            unit = resolve_unit(loaded, kind, village)
            assert unit is not None, (matter.code, kind)
            assert unit.kind == kind
            assert unit.level == kinds[kind]
            assert unit.region_code == (LUOXI if kinds[kind] == "town" else COUNTY)


def test_loading_twice_changes_nothing(loaded: Session, engine: Engine) -> None:
    before = export_matters(loaded)
    rows = {m: count(loaded, m) for m in (MatterCategory, Matter, MatterAssist, MatterTimeLimit)}
    writes: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            writes.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        loaded.expire_all()
        load_matters(loaded)
        load_departments(loaded, COUNTY)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert writes == []
    assert {m: count(loaded, m) for m in rows} == rows
    assert export_matters(loaded) == before


def _unknown_lead(data: dict[str, Any]) -> None:
    all_matters(data)[0]["lead_kind"] = "no_such_unit"


def _unknown_assist(data: dict[str, Any]) -> None:
    all_matters(data)[1]["assisting_kinds"] = ["police_station", "bureau_of_magic"]


def _missing_limit(data: dict[str, Any]) -> None:
    del all_matters(data)[2]["limits"]["pressing"]["handle"]


def _duplicate_code(data: dict[str, Any]) -> None:
    data["categories"][0]["matters"][1]["code"] = data["categories"][0]["matters"][0]["code"]


def _too_long(data: dict[str, Any]) -> None:
    all_matters(data)[3]["limits"]["normal"]["handle"] = [16, "working_days"]


def _slow_accept(data: dict[str, Any]) -> None:
    all_matters(data)[3]["limits"]["normal"]["accept"] = [2, "working_days"]


def _wrong_level(data: dict[str, Any]) -> None:
    matter = all_matters(data)[0]
    matter["handling_level"], matter["lead_kind"] = "county", "town_zongzhi"


def _foreign_prefix(data: dict[str, Any]) -> None:
    data["categories"][1]["matters"][0]["code"] = "0199"


def _typo_field(data: dict[str, Any]) -> None:
    all_matters(data)[0]["lead_knd"] = "police"


def _not_a_number(data: dict[str, Any]) -> None:
    all_matters(data)[0]["limits"]["urgent"]["handle"] = ["2", "hours"]


def _wrong_types(data: dict[str, Any]) -> None:
    matter = all_matters(data)[0]
    matter["lead_kind"] = ["police"]
    matter["limits"]["normal"]["verify"] = [1, ["working_days"]]
    matter["photo_required"] = "yes"


INVALID = [
    (_unknown_lead, "主办部门类型“no_such_unit”未在部门清单中定义"),
    (_unknown_assist, "协办部门类型“bureau_of_magic”未在部门清单中定义"),
    (_missing_limit, "缺少时限：较急·处置"),
    (_duplicate_code, "事项代码“0101”重复"),
    (_too_long, "超过最长15个工作日"),
    (_slow_accept, "受理、分拨不应超过1个工作日"),
    (_wrong_level, "却是镇属站所"),
    (_foreign_prefix, "应以所属大类代码“02”开头"),
    (_typo_field, "含未知字段：lead_knd"),
    (_not_a_number, "应写成 [整数, 单位]"),
    (_wrong_types, "“photo_required”必须是 true 或 false"),
]


@pytest.mark.parametrize(("spoil", "message"), INVALID, ids=[f.__name__ for f, _ in INVALID])
def test_an_invalid_file_is_refused_and_writes_nothing(
    session: Session, tmp_path: Any, spoil: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = shipped()
    spoil(data)
    path = tmp_path / "matters.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        load_matters(session, path)
    assert any(message in m for m in caught.value.messages), caught.value.messages
    assert isinstance(caught.value, ValueError)
    assert not session.new and not session.dirty
    assert count(session, MatterCategory) == count(session, Matter) == 0


def test_an_invalid_file_leaves_a_loaded_list_alone(loaded: Session) -> None:
    before = export_matters(loaded)
    data = shipped()
    all_matters(data)[0]["name"] = "改过的名称"
    _missing_limit(data)
    with pytest.raises(CatalogError):
        load_matters_data(loaded, data)
    assert not loaded.dirty
    assert export_matters(loaded) == before


def test_an_unreadable_file_is_refused(session: Session, tmp_path: Any) -> None:
    path = tmp_path / "matters.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(CatalogError, match="无法读取"):
        load_matters(session, path)


def test_export_then_load_round_trips(loaded: Session, tmp_path: Any) -> None:
    exported = export_matters(loaded)
    assert exported == shipped()

    edited = copy.deepcopy(exported)
    first, second = all_matters(edited)[:2]
    first["name"] = "邻里纠纷（含宅基地）"
    first["assisting_kinds"] = ["police_station", "town_social"]
    first["limits"]["normal"]["handle"] = [2, "working_days"]
    second["active"] = False
    edited["version"] = "luhe-2026.1"
    path = tmp_path / "edited.json"
    path.write_text(format_json(edited), encoding="utf-8")

    assert load_matters(loaded, path) == len(all_matters(edited))
    loaded.expire_all()
    assert export_matters(loaded) == edited
    assert loaded.get_one(Matter, second["code"]).active is False


# ---------------------------------------------------------------- resolving units


RESOLVE = [
    ("police_station", HETIAN, f"{HETIAN}-police_station"),
    ("police_station", f"{LUOXI}201", f"{LUOXI}-police_station"),
    ("police_station", f"{LUOXI}201003", f"{LUOXI}-police_station"),
    ("town_zongzhi", f"{HETIAN}001", f"{HETIAN}-town_zongzhi"),
    ("police", f"{LUOXI}201003", f"{COUNTY}-police"),
    ("police", HETIAN, f"{COUNTY}-police"),
    ("zhengfa", COUNTY, f"{COUNTY}-zhengfa"),
    ("police_station", COUNTY, None),
    ("no_such_kind", HETIAN, None),
    ("police", "441427100", None),
]


@pytest.mark.parametrize(("kind", "region_code", "expected"), RESOLVE)
def test_resolve_unit(loaded: Session, kind: str, region_code: str, expected: str | None) -> None:
    unit = resolve_unit(loaded, kind, region_code)
    assert (unit.code if unit else None) == expected


def test_resolve_unit_skips_inactive_units(loaded: Session) -> None:
    office = loaded.scalars(
        select(Department).where(Department.code == f"{HETIAN}-forestry_station")
    )
    office.one().active = False
    loaded.flush()
    assert resolve_unit(loaded, "forestry_station", f"{HETIAN}201") is None
    assert (
        resolve_unit(loaded, "forestry_station", f"{LUOXI}201").code == f"{LUOXI}-forestry_station"
    )


@pytest.mark.parametrize("bad", ["", "4415", "44152310", "44152310A"])
def test_resolve_unit_rejects_malformed_codes(loaded: Session, bad: str) -> None:
    with pytest.raises(ValueError):
        resolve_unit(loaded, "police", bad)
