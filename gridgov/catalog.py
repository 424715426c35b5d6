"""The matter list (事项清单) and the department kinds: validate, load, export, resolve.

Two data files ship in gridgov/data:

- departments.json names the kinds of unit a county has (县直部门) and each town has (镇属站所),
  with name templates; `load_departments` turns them into Department rows for one county.
- matters.json is the default matter list; `load_matters` upserts it (or an administrator's file
  of the same shape, e.g. one downloaded with `export_matters` and edited).

A matter names department *kinds*; `resolve_unit` picks the unit of a kind for an event's place.
Everything here flushes and never commits.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from gridgov.models import (
    Department,
    Level,
    Matter,
    MatterAssist,
    MatterCategory,
    MatterTimeLimit,
    Region,
    Stage,
    TimeUnit,
    Urgency,
)
from gridgov.settings_store import get_text, put_text

DATA_DIR = Path(__file__).parent / "data"
DEPARTMENTS_PATH = DATA_DIR / "departments.json"
MATTERS_PATH = DATA_DIR / "matters.json"

VERSION_SETTING = "catalog.matters.version"
SOURCE_SETTING = "catalog.matters.source"

HANDLING_LEVELS = ("village", "town", "county")
LEVEL_LABELS = {"village": "村（社区）", "town": "镇（街道）", "county": "县"}
UNIT_LABELS = {"hours": "自然小时", "working_hours": "工作小时", "working_days": "工作日"}

MAX_WORKING_DAYS = 15
"""The longest limit of any stage, with approval (PRODUCT.md §4)."""
WORKING_HOURS_PER_DAY = 8
HOURS_PER_DAY = 24
MAX_ASSISTING = 5

_KIND = re.compile(r"[a-z][a-z0-9_]{1,21}\Z")
"""A kind fits the 32-character department code `<9-digit town>-<kind>`."""
_CATEGORY_CODE = re.compile(r"\d{2}\Z")
_MATTER_CODE = re.compile(r"\d{4}\Z")

_COUNTY_FIELDS = frozenset({"county", "county_short", "city"})
_TOWN_FIELDS = _COUNTY_FIELDS | {"town", "town_short"}
_MATTER_KEYS = frozenset(
    {
        "code",
        "name",
        "description",
        "handling_level",
        "lead_kind",
        "assisting_kinds",
        "self_handle_allowed",
        "photo_required",
        "active",
        "limits",
    }
)
_REQUIRED_MATTER_KEYS = ("code", "name", "handling_level", "lead_kind", "limits")


class CatalogError(ValueError):
    """A catalog file that cannot be loaded; `messages` says why, in Chinese, for the admin."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


# ---------------------------------------------------------------- files


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a UTF-8 JSON file; CatalogError if it cannot be read or parsed."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogError([f"无法读取文件 {path.name}：{exc}"]) from exc


def format_json(data: Any, width: int = 160) -> str:
    """Return `data` as JSON text, each object or list on one line when it fits in `width`.

    The shipped files are written this way, and downloads use it so that an administrator
    edits the same layout (one limit row per urgency, one department per line).
    """
    return _format(data, 0, width) + "\n"


def _format(value: Any, indent: int, width: int) -> str:
    flat = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, dict | list) or not value or indent + len(flat) <= width:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = [
            f"{pad}{json.dumps(k, ensure_ascii=False)}: {_format(v, indent + 2, width)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + _format(v, indent + 2, width) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


# ---------------------------------------------------------------- departments


def validate_departments(data: Any) -> list[str]:
    """Return what is wrong with a departments file (empty when it is fine)."""
    if not isinstance(data, dict):
        return ["部门文件必须是一个 JSON 对象"]
    errors: list[str] = []
    seen: set[str] = set()
    for level, fields in (("county", _COUNTY_FIELDS), ("town", _TOWN_FIELDS)):
        entries = data.get(level)
        if not isinstance(entries, list) or not entries:
            errors.append(f"部门文件缺少“{level}”列表")
            continue
        for i, entry in enumerate(entries, 1):
            where = f"{level} 第{i}项"
            if not isinstance(entry, dict):
                errors.append(f"{where}必须是对象")
                continue
            kind, name = entry.get("kind"), entry.get("name")
            if not isinstance(kind, str) or not _KIND.match(kind):
                errors.append(f"{where}的类型代码“{kind}”不合规（小写字母、数字、下划线，2–22位）")
            elif kind in seen:
                errors.append(f"部门类型“{kind}”重复（县、镇两级的类型代码也不能相同）")
            else:
                seen.add(kind)
            if not isinstance(name, str) or not name.strip():
                errors.append(f"{where}缺少名称模板")
                continue
            try:
                used = {f for _, f, _, _ in string.Formatter().parse(name) if f is not None}
            except ValueError:
                errors.append(f"{where}的名称模板“{name}”括号不匹配")
                continue
            unknown = used - fields
            if unknown:
                errors.append(
                    f"{where}的名称模板“{name}”含未知占位符："
                    + "、".join(sorted(f"{{{f}}}" for f in unknown))
                )
    cities = data.get("cities", {})
    if not isinstance(cities, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in cities.items()
    ):
        errors.append("“cities”必须是 {四位代码: 市名} 对象")
    return errors


def department_kinds(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Return every department kind of the departments file with its level, county or town."""
    data = _departments_data(path)
    return {e["kind"]: level for level in ("county", "town") for e in data[level]}


def kind_labels(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Return a short Chinese label of every department kind (e.g. 'police' → '公安局')."""
    data = _departments_data(path)
    return {
        e["kind"]: e.get("label", e["kind"]) for level in ("county", "town") for e in data[level]
    }


def _departments_data(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    data = read_json(DEPARTMENTS_PATH if path is None else path)
    errors = validate_departments(data)
    if errors:
        raise CatalogError(errors)
    return data


def _short_name(name: str, suffixes: tuple[str, ...]) -> str:
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix) + 1:
            return name[: -len(suffix)]
    return name


def load_departments(
    session: Session, county_code: str, path: str | os.PathLike[str] | None = None
) -> int:
    """Create or update the departments of a county and its towns; return how many the file defines.

    Codes are `<county>-<kind>` and `<town>-<kind>`. Existing rows keep their id and their
    `active` flag (an administrator may have switched a unit off); rows not in the file stay.
    """
    data = _departments_data(path)
    county = session.get(Region, county_code)
    if county is None or county.level != Level.COUNTY:
        raise CatalogError([f"未找到县级区划 {county_code}，请先导入区划"])
    towns = session.scalars(
        select(Region)
        .where(Region.parent_code == county_code, Region.level == Level.TOWN)
        .order_by(Region.code)
    ).all()
    fields = {
        "county": county.name,
        "county_short": _short_name(county.name, ("自治县", "县", "区", "市")),
        "city": data.get("cities", {}).get(county_code[:4], "市"),
    }
    wanted: list[tuple[str, str, str, str, str]] = [
        (f"{county_code}-{e['kind']}", e["name"].format(**fields), e["kind"], "county", county_code)
        for e in data["county"]
    ]
    for town in towns:
        town_fields = fields | {
            "town": town.name,
            "town_short": _short_name(town.name, ("街道", "镇", "乡")),
        }
        wanted += [
            (
                f"{town.code}-{e['kind']}",
                e["name"].format(**town_fields),
                e["kind"],
                "town",
                town.code,
            )
            for e in data["town"]
        ]
    existing = {
        d.code: d
        for d in session.scalars(
            select(Department).where(Department.code.in_([w[0] for w in wanted]))
        )
    }
    for code, name, kind, level, region_code in wanted:
        dept = existing.get(code)
        if dept is None:
            session.add(
                Department(
                    code=code,
                    name=name,
                    kind=kind,
                    level=level,
                    region_code=region_code,
                    active=True,
                )
            )
        else:
            dept.name, dept.kind, dept.level, dept.region_code = name, kind, level, region_code
    session.flush()
    return len(wanted)


def resolve_unit(session: Session, kind: str, region_code: str) -> Department | None:
    """Return the active unit of `kind` for an event in `region_code` (town, village or grid).

    The event's town office of that kind comes first; otherwise the county department of that
    kind. None when neither exists (the dispatcher then picks a unit by hand).
    """
    level = Level.of_code(region_code)
    if level != Level.COUNTY:
        unit = _active_unit(session, kind, Level.TOWN, region_code[: Level.TOWN.code_length])
        if unit is not None:
            return unit
    return _active_unit(session, kind, Level.COUNTY, region_code[: Level.COUNTY.code_length])


def _active_unit(session: Session, kind: str, level: str, region_code: str) -> Department | None:
    return session.scalars(
        select(Department)
        .where(
            Department.kind == kind,
            Department.level == level,
            Department.region_code == region_code,
            Department.active.is_(True),
        )
        .order_by(Department.code)
        .limit(1)
    ).first()


# ---------------------------------------------------------------- matters


def validate_matters(data: Any, kinds: Mapping[str, str]) -> list[str]:
    """Return what is wrong with a matter-list file (empty when it is fine).

    `kinds` maps every known department kind to its level ('county' or 'town'): a matter
    handled in a village or town is led by a town office, a county matter by a county bureau.
    """
    if not isinstance(data, dict):
        return ["事项清单必须是一个 JSON 对象"]
    errors: list[str] = []
    for key in ("version", "source"):
        if key in data and not isinstance(data[key], str):
            errors.append(f"“{key}”必须是字符串")
    categories = data.get("categories")
    if not isinstance(categories, list) or not categories:
        return [*errors, "事项清单缺少“categories”（大类）列表"]
    category_codes: set[str] = set()
    matter_codes: set[str] = set()
    matter_names: dict[str, str] = {}
    for i, category in enumerate(categories, 1):
        if not isinstance(category, dict):
            errors.append(f"第{i}个大类必须是对象")
            continue
        code = category.get("code")
        if not isinstance(code, str) or not _CATEGORY_CODE.match(code):
            errors.append(f"第{i}个大类的代码“{code}”不是两位数字")
            code = None
        elif code in category_codes:
            errors.append(f"大类代码“{code}”重复")
        else:
            category_codes.add(code)
        name = category.get("name")
        if not _text(name, 64):
            errors.append(f"大类“{code or i}”缺少名称或名称超过64字")
        unknown = set(category) - {"code", "name", "matters"}
        if unknown:
            errors.append(f"大类“{code or i}”含未知字段：{'、'.join(sorted(unknown))}")
        matters = category.get("matters", [])
        if not isinstance(matters, list):
            errors.append(f"大类“{code or i}”的“matters”必须是列表")
            continue
        for j, matter in enumerate(matters, 1):
            where = f"大类“{code or i}”第{j}个事项"
            if not isinstance(matter, dict):
                errors.append(f"{where}必须是对象")
                continue
            errors += _matter_errors(matter, code, where, kinds, matter_codes, matter_names)
    return errors


def _text(value: Any, max_length: int) -> bool:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= max_length


def _matter_errors(
    matter: dict[str, Any],
    category_code: str | None,
    where: str,
    kinds: Mapping[str, str],
    codes: set[str],
    names: dict[str, str],
) -> list[str]:
    errors: list[str] = []
    missing = [k for k in _REQUIRED_MATTER_KEYS if k not in matter]
    if missing:
        errors.append(f"{where}缺少字段：{'、'.join(missing)}")
    unknown = set(matter) - _MATTER_KEYS
    if unknown:
        errors.append(f"{where}含未知字段：{'、'.join(sorted(unknown))}")

    code = matter.get("code")
    if not isinstance(code, str) or not _MATTER_CODE.match(code):
        errors.append(f"{where}的代码“{code}”不是四位数字")
    else:
        where = f"事项 {code}"
        if category_code is not None and not code.startswith(category_code):
            errors.append(f"{where}的代码应以所属大类代码“{category_code}”开头")
        if code in codes:
            errors.append(f"事项代码“{code}”重复")
        codes.add(code)

    name = matter.get("name")
    if "name" in matter and not _text(name, 100):
        errors.append(f"{where}的名称为空或超过100字")
    elif isinstance(name, str):
        if name in names:
            errors.append(f"{where}的名称“{name}”与事项 {names[name]} 重复")
        names.setdefault(name, str(code))
    if not isinstance(matter.get("description", ""), str):
        errors.append(f"{where}的说明必须是字符串")
    for flag in ("self_handle_allowed", "photo_required", "active"):
        if flag in matter and not isinstance(matter[flag], bool):
            errors.append(f"{where}的“{flag}”必须是 true 或 false")

    level = matter.get("handling_level")
    if "handling_level" in matter and level not in HANDLING_LEVELS:
        errors.append(f"{where}的处置层级“{level}”无效（应为 village、town 或 county）")
    lead = matter.get("lead_kind")
    if "lead_kind" in matter:
        if not isinstance(lead, str) or lead not in kinds:
            errors.append(f"{where}的主办部门类型“{lead}”未在部门清单中定义")
        elif level in HANDLING_LEVELS:
            expected = "county" if level == "county" else "town"
            if kinds[lead] != expected:
                errors.append(
                    f"{where}在{LEVEL_LABELS[level]}级处置，主办部门类型“{lead}”却是"
                    f"{'县直部门' if kinds[lead] == 'county' else '镇属站所'}"
                )
    assisting = matter.get("assisting_kinds", [])
    if not isinstance(assisting, list) or not all(isinstance(k, str) for k in assisting):
        errors.append(f"{where}的协办部门类型必须是字符串列表")
    else:
        for kind in assisting:
            if kind not in kinds:
                errors.append(f"{where}的协办部门类型“{kind}”未在部门清单中定义")
        if len(set(assisting)) != len(assisting):
            errors.append(f"{where}的协办部门类型有重复")
        if lead in assisting:
            errors.append(f"{where}的主办部门类型“{lead}”不能同时是协办")
        if len(assisting) > MAX_ASSISTING:
            errors.append(f"{where}的协办部门超过{MAX_ASSISTING}个")
    if "limits" in matter:
        errors += _limit_errors(matter["limits"], where)
    return errors


def _limit_errors(limits: Any, where: str) -> list[str]:
    if not isinstance(limits, dict):
        return [f"{where}的时限“limits”必须是对象"]
    errors: list[str] = []
    unknown = set(limits) - set(Urgency)
    if unknown:
        errors.append(f"{where}的时限含未知紧急程度：{'、'.join(sorted(unknown))}")
    for urgency in Urgency:
        row = limits.get(urgency.value)
        if not isinstance(row, dict):
            errors.append(f"{where}缺少{urgency.label}事项的时限")
            continue
        unknown = set(row) - set(Stage)
        if unknown:
            errors.append(f"{where}的{urgency.label}时限含未知环节：{'、'.join(sorted(unknown))}")
        for stage in Stage:
            label = f"{where}的时限（{urgency.label}·{stage.label}）"
            if stage.value not in row:
                errors.append(f"{where}缺少时限：{urgency.label}·{stage.label}")
                continue
            errors += _one_limit_errors(row[stage.value], stage, label)
    return errors


def _one_limit_errors(limit: Any, stage: Stage, label: str) -> list[str]:
    if (
        not isinstance(limit, list)
        or len(limit) != 2
        or not isinstance(limit[0], int)
        or isinstance(limit[0], bool)
        or not isinstance(limit[1], str)
        or limit[1] not in set(TimeUnit)
    ):
        return [f"{label}应写成 [整数, 单位]，单位为 hours、working_hours 或 working_days"]
    amount, unit = limit
    if amount < 1:
        return [f"{label}必须至少为1"]
    days = _in_days(amount, unit)
    if stage in (Stage.ACCEPT, Stage.DISPATCH) and days > 1:
        return [f"{label}为{amount}{UNIT_LABELS[unit]}，受理、分拨不应超过1个工作日"]
    if days > MAX_WORKING_DAYS:
        return [f"{label}为{amount}{UNIT_LABELS[unit]}，超过最长{MAX_WORKING_DAYS}个工作日"]
    return []


def _in_days(amount: int, unit: str) -> float:
    """Return a limit in working days, roughly: for bounds only, never for deadlines."""
    if unit == TimeUnit.WORKING_DAYS:
        return amount
    if unit == TimeUnit.WORKING_HOURS:
        return amount / WORKING_HOURS_PER_DAY
    return amount / HOURS_PER_DAY


def load_matters(
    session: Session,
    path: str | os.PathLike[str] | None = None,
    *,
    departments_path: str | os.PathLike[str] | None = None,
) -> int:
    """Validate and upsert a matter-list file (the shipped default when `path` is None).

    Return the number of matters in the file. See `load_matters_data`.
    """
    data = read_json(MATTERS_PATH if path is None else path)
    return load_matters_data(session, data, departments_path=departments_path)


def load_matters_data(
    session: Session,
    data: Any,
    *,
    departments_path: str | os.PathLike[str] | None = None,
) -> int:
    """Validate and upsert parsed matter-list data; return the number of matters in it.

    Nothing is written unless the whole file is valid (CatalogError lists every problem).
    Categories, matters, assisting kinds and limits in the file replace what the database
    holds for the same codes; matters absent from the file stay as they are (to retire one,
    mark it `"active": false`), because past events refer to them.
    """
    errors = validate_matters(data, department_kinds(departments_path))
    if errors:
        raise CatalogError(errors)
    categories = {c.code: c for c in session.scalars(select(MatterCategory))}
    matters = {
        m.code: m
        for m in session.scalars(
            select(Matter).options(selectinload(Matter.assisting), selectinload(Matter.limits))
        )
    }
    count = 0
    for sort, entry in enumerate(data["categories"], 1):
        category = categories.get(entry["code"])
        if category is None:
            category = MatterCategory(code=entry["code"])
            session.add(category)
        category.name, category.sort = entry["name"], sort
        for item in entry.get("matters", []):
            matter = matters.get(item["code"])
            if matter is None:
                matter = Matter(code=item["code"])
                session.add(matter)
            _update_matter(matter, category, item)
            count += 1
    put_text(session, VERSION_SETTING, data.get("version", ""))
    put_text(session, SOURCE_SETTING, data.get("source", ""))
    session.flush()
    return count


def _update_matter(matter: Matter, category: MatterCategory, item: dict[str, Any]) -> None:
    matter.category = category
    matter.name = item["name"]
    matter.description = item.get("description", "")
    matter.handling_level = item["handling_level"]
    matter.lead_kind = item["lead_kind"]
    matter.self_handle_allowed = item.get("self_handle_allowed", False)
    matter.photo_required = item.get("photo_required", False)
    matter.active = item.get("active", True)

    kinds = item.get("assisting_kinds", [])
    for assist in list(matter.assisting):
        if assist.kind not in kinds:
            matter.assisting.remove(assist)
    have = set(matter.assisting_kinds)
    matter.assisting += [MatterAssist(kind=k) for k in kinds if k not in have]

    existing = {(lim.urgency, lim.stage): lim for lim in matter.limits}
    for urgency in Urgency:
        for stage in Stage:
            amount, unit = item["limits"][urgency.value][stage.value]
            limit = existing.get((urgency.value, stage.value))
            if limit is None:
                matter.limits.append(
                    MatterTimeLimit(
                        urgency=urgency.value, stage=stage.value, amount=amount, unit=unit
                    )
                )
            else:
                limit.amount, limit.unit = amount, unit


def export_matters(session: Session) -> dict[str, Any]:
    """Return the matter list in the shape of matters.json, ready to edit and load again."""
    categories = session.scalars(
        select(MatterCategory)
        .options(
            selectinload(MatterCategory.matters).selectinload(Matter.assisting),
            selectinload(MatterCategory.matters).selectinload(Matter.limits),
        )
        .order_by(MatterCategory.sort, MatterCategory.code)
    ).all()
    return {
        "version": get_text(session, VERSION_SETTING),
        "source": get_text(session, SOURCE_SETTING),
        "categories": [
            {
                "code": c.code,
                "name": c.name,
                "matters": [_export_matter(m) for m in sorted(c.matters, key=_code)],
            }
            for c in categories
        ],
    }


def _code(matter: Matter) -> str:
    return matter.code


def _export_matter(matter: Matter) -> dict[str, Any]:
    limits = {(lim.urgency, lim.stage): [lim.amount, lim.unit] for lim in matter.limits}
    out: dict[str, Any] = {
        "code": matter.code,
        "name": matter.name,
        "description": matter.description,
        "handling_level": matter.handling_level,
        "lead_kind": matter.lead_kind,
        "assisting_kinds": sorted(matter.assisting_kinds),
        "self_handle_allowed": matter.self_handle_allowed,
        "photo_required": matter.photo_required,
    }
    if not matter.active:
        out["active"] = False
    out["limits"] = {
        u.value: {
            s.value: limits[(u.value, s.value)] for s in Stage if (u.value, s.value) in limits
        }
        for u in Urgency
    }
    return out
