"""Demo data for a sample county: accounts, and months of events driven through the real loop.

`seed_demo` creates the demo accounts (gridgov.demo) plus a grid worker for every village, an
operator for every town centre and a handler for every department the matter list resolves
to, then simulates `days` days of work: reports at plausible places and hours, each event
moved by the real operations (`report_event`, `perform`, `attach_photo`) at simulated times.
Histories, deadlines, overdue flags and every number the screens compute are therefore the
system's own. A deterministic RNG makes the same seed give the same events.

The simulation is a discrete-event loop: each event's life is a generator that yields the
moment of its next step; steps of all events run in time order, so an event merged as a
duplicate finds its original in the state it really had then. A step that would fall after
`now` is not taken, which leaves the newest events open where they are; a few recent events
are held in each open state on purpose so that every desk and the map show live work.

Flushes, never commits: the CLI commits once.
"""

from __future__ import annotations

import heapq
import io
import json
import math
import random
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import shapely
from PIL import Image, ImageDraw
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridgov.audit import Actor, set_actor
from gridgov.auth import hash_password
from gridgov.catalog import resolve_unit
from gridgov.db import utcnow
from gridgov.demo import ACCOUNTS, DEMO_PASSWORD, create_demo_users
from gridgov.events import Lookups, ReportInput, attach_photo, perform, report_event
from gridgov.models import (
    ROLE_LABELS,
    STATE_LABELS,
    Attachment,
    Department,
    Event,
    EventAction,
    EventState,
    Grid,
    GridSet,
    Level,
    Matter,
    Region,
    Role,
    Setting,
    Source,
    Urgency,
    User,
    UserGrid,
)
from gridgov.photos import PhotoStore
from gridgov.workflow.worktime import SHANGHAI

__all__ = [
    "GENERATED_PREFIXES",
    "OPEN_STATES",
    "SEEDED_SETTING",
    "demo_accounts",
    "demo_summary",
    "generated_accounts",
    "seed_demo",
]

SEEDED_SETTING = "demo.seeded.{county}"
"""Setting key marking a county as seeded (value: how it was seeded, as JSON)."""

GENERATED_PREFIXES = {
    "wg": (Role.GRID_WORKER, "网格员", "wg<村居代码>"),
    "zz": (Role.TOWN_OPERATOR, "镇综治中心操作员", "zz<镇街代码>"),
    "bm": (Role.DEPT_HANDLER, "职能部门处置员", "bm<部门代码>"),
    "dd": (Role.COUNTY_DISPATCHER, "县指挥中心调度员", "dd<县代码>"),
    "zb": (Role.COUNTY_SHIFT_LEAD, "县指挥中心值班长", "zb<县代码>"),
    "ld": (Role.LEADER, "领导", "ld<县代码>"),
}
"""Username prefixes of generated accounts: role, Chinese label, pattern."""

OPEN_STATES = (
    EventState.REPORTED,
    EventState.ACCEPTED,
    EventState.DISPATCHED,
    EventState.HANDLING,
    EventState.RETURNED,
    EventState.SHELVED,
    EventState.HANDLED,
    EventState.VERIFIED,
)
"""Every open state; recent events are held in each (newest first in this order)."""

# ---------------------------------------------------------------------------
# What grid workers, the hotline and citizens report (weights, not shares)

CATEGORY_WEIGHTS = {
    "01": 14,  # 矛盾纠纷
    "02": 6,  # 社会治安
    "03": 5,  # 安全生产
    "04": 6,  # 消防
    "05": 26,  # 市容环境卫生
    "06": 5,  # 违法建设
    "07": 5,  # 生态环境
    "08": 3,  # 河湖水利
    "09": 2,  # 林业与森林防火
    "10": 1,  # 地质灾害与三防: rare
    "11": 13,  # 道路交通与设施
    "12": 8,  # 民生服务
    "13": 2,  # 特殊人群服务
    "14": 3,  # 公共卫生
    "15": 1,  # 其他
}
MATTER_WEIGHTS = {
    "0101": 6, "0102": 2, "0103": 1.5, "0104": 1.5, "0105": 1, "0108": 0.3,
    "0201": 3, "0205": 3, "0206": 1.5, "0202": 0.5, "0207": 0.4,
    "0301": 3, "0305": 2, "0302": 0.5,
    "0401": 3, "0402": 4, "0403": 1.5, "0405": 2, "0404": 0.3,
    "0501": 6, "0502": 4, "0503": 4, "0504": 2, "0505": 5, "0506": 2, "0507": 1, "0508": 1,
    "0601": 4, "0602": 1, "0603": 1.5, "0604": 1,
    "0701": 2, "0702": 3, "0703": 3, "0704": 1.5, "0705": 1.5,
    "0801": 3, "0803": 2, "0805": 1.5, "0804": 0.7,
    "0901": 4, "0904": 1, "0902": 0.3,
    "1003": 3, "1001": 1, "1002": 0.5, "1004": 0.7, "1005": 0.5,
    "1101": 5, "1102": 5, "1103": 2.5, "1106": 4, "1104": 1.5, "1105": 2, "1107": 2,
    "1201": 3, "1208": 3, "1202": 2, "1204": 2, "1205": 2,
    "1302": 1.5, "1301": 1,
    "1402": 3, "1404": 2, "1401": 0.5,
}  # fmt: skip
"""Within a category, how often each matter comes up (default 1)."""
HOTLINE_WEIGHTS = {
    "0104": 4, "0105": 4, "0107": 5, "0506": 3, "0502": 2, "0702": 5, "0706": 2,
    "1101": 2, "1102": 2, "1107": 4, "1203": 3, "1204": 3, "1402": 2,
}  # fmt: skip
"""What the 12345 hotline gets more of than patrols: noise, wages, consumers, water."""
HAZARDS = frozenset(
    {"0204", "0302", "0303", "0404", "0804", "0902", "1001", "1002", "1003", "1004", "1005"}
)
"""Matters that are often urgent."""
COMPLEX = frozenset({"0103", "0106", "0108", "0601", "0602", "0603", "0604", "0802", "1207"})
"""Matters that are sometimes shelved (挂账) as unsolvable for now."""

REPORT_HOURS = {
    Source.GRID_WORKER: (
        0, 0, 0, 0, 0, 0, .2, 1, 4, 7, 8, 6, 2, 1.5, 4, 6, 6, 4, 1.5, .8, .5, .3, .1, 0,
    ),
    Source.HOTLINE: (
        .3, .2, .1, .1, .1, .2, .5, 2, 5, 7, 7, 6, 3, 3, 5, 6, 6, 5, 4, 4, 3, 2, 1, .5,
    ),
    Source.CITIZEN: (
        0, 0, 0, 0, 0, 0, 0, 0, 3, 6, 6, 4, .5, .5, 4, 5, 4, 1, 0, 0, 0, 0, 0, 0,
    ),
}  # fmt: skip
"""Relative report volume per hour of the day (Shanghai time), per source."""
OFF_DAY_WEIGHT = {Source.GRID_WORKER: 0.35, Source.HOTLINE: 0.7, Source.CITIZEN: 0.1}
"""Volume on weekends and holidays relative to a workday."""
SOURCE_WEIGHTS = {Source.GRID_WORKER: 0.76, Source.HOTLINE: 0.15, Source.CITIZEN: 0.09}

DUPLICATE_SHARE = 0.02
HELD_SHARE = 1 / 60
"""Share of events held on purpose in an open state (at least two per state)."""

SATISFACTION_WEIGHTS = {"satisfied": 0.82, "basically": 0.14, "unsatisfied": 0.04}

# ---------------------------------------------------------------------------
# Words

SURNAMES = "陈李黄张刘林吴罗叶彭曾朱钟赖温邱何谢郑蔡杨徐卓庄许"
GIVEN = "伟芳娜敏静强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志文丽玲辉红春海鹏燕梅莉晓锋婷"
VILLAGE_SPOTS = (
    "村口", "村道旁", "文化室附近", "小组祠堂前", "新村路段", "桥头", "菜地旁", "河堤边",
    "学校路口", "老屋片区", "村委会门前", "山脚下",
)  # fmt: skip
URBAN_SPOTS = (
    "商铺门前", "小区门口", "农贸市场周边", "十字路口", "人行道", "居民楼下", "学校门口",
    "公交站旁", "步行街", "公园入口",
)  # fmt: skip
DETAILS = {
    "0101": ("两户村民因排水沟走向发生争执，双方情绪激动。", "邻居因宅前通道堆放杂物产生矛盾。"),
    "0102": ("一对夫妻因赡养老人问题多次争吵，邻居反映。",),
    "0104": ("十余名工人反映工地拖欠工资两个月。", "饭店员工反映离职后工资未结清。"),
    "0201": ("夜间路段照明不足，近期有多起电动车被盗。",),
    "0205": ("出租屋新入住外来人员四名，未登记。",),
    "0402": ("居民楼道内有电动车飞线充电。", "楼梯间停放多辆电动车并私拉电线充电。"),
    "0401": ("消防通道被私家车长期占用。",),
    "0501": ("路边堆放建筑垃圾和废旧家具，影响通行。", "空地堆放杂物，存在蚊虫滋生。"),
    "0502": ("流动摊贩占道经营，造成行人绕行。", "商铺出店经营，货物摆上人行道。"),
    "0503": ("垃圾收集点满溢，两天未清运，异味明显。",),
    "0505": ("沟渠旁有暴露垃圾，面积约十平方米。", "房前屋后卫生死角，垃圾较多。"),
    "0601": ("有村民在自家楼顶加建铁皮房。", "路边新搭建简易棚，疑未办理手续。"),
    "0702": ("夜间烧烤店噪声较大，附近居民无法休息。", "工地夜间施工噪声扰民。"),
    "0703": ("农田里焚烧秸秆，烟雾较大。",),
    "0901": ("山边有人焚烧杂草，距林地较近。",),
    "1003": ("一处老旧土坯房墙体开裂，仍有老人居住。",),
    "1101": ("村道路面出现多处坑洼，雨天积水。", "水泥路面断裂下沉约二十厘米。"),
    "1102": ("连续五盏路灯不亮，夜间通行不便。", "路灯灯杆倾斜，存在倒伏风险。"),
    "1103": ("人行道上井盖缺失，已用树枝临时围挡。",),
    "1106": ("车辆乱停放，堵塞学校门口通道。",),
    "1201": ("一户低收入家庭因病致困，需要救助。",),
    "1208": ("独居高龄老人两天未见出门，电话无人接听。",),
}
CATEGORY_DETAILS = {
    "01": ("当事双方各执一词，需要介入调解。",),
    "02": ("群众反映存在治安隐患，需核实处理。",),
    "03": ("现场存在安全隐患，需责令整改。",),
    "04": ("存在消防安全隐患，需尽快整改。",),
    "05": ("影响市容环境，群众意见较大。",),
    "06": ("疑似违法建设，需核查处理。",),
    "07": ("影响周边环境，群众多次反映。",),
    "08": ("影响河道行洪和水环境，需处理。",),
    "09": ("涉及林业资源保护，需核查。",),
    "10": ("存在险情隐患，需尽快排查处置。",),
    "11": ("影响群众出行安全，需维修处理。",),
    "12": ("群众有实际困难，需协助办理。",),
    "13": ("需相关部门跟进关注。",),
    "14": ("涉及群众健康，需尽快核查。",),
    "15": ("群众反映情况，需核实处理。",),
}
COMMENTS = {
    "reject": ("不属于本中心受理范围，已告知反映人向有关部门反映。", "信息不全，无法核实。"),
    "void": ("经核实为误报。", "网格员重复提交的测试信息，作废。"),
    "withdraw_reporter": ("问题已由当事人自行解决，撤回上报。", "已现场劝导解决，撤回。"),
    "withdraw_centre": ("来电人表示问题已解决，申请撤单。", "反映人撤回诉求。"),
    "escalate": ("属县级部门职责，上报县指挥中心分拨。", "本镇无法处置，提请县级协调。"),
    "return_wrong": ("经核实不属于本单位职责，请重新分拨。", "非本单位管辖事项，申请退回。"),
    "return_unclear": ("地址不详，现场未找到，请核实后重新派遣。", "诉求不清，请补充后重新派遣。"),
    "extension": ("需协调多方共同处置，申请延期。", "涉及资金和材料审批，申请延期办理。"),
    "refuse": ("事项不复杂，请按原时限办结。",),
    "shelve": ("涉及历史遗留问题，需多部门协调，暂予挂账。", "当事人长期外出，暂无法处置，挂账。"),
    "resume": ("条件已具备，恢复办理。",),
    "assist": ("已派员配合现场处置。", "已提供相关资料，配合办理。"),
    "supervise": ("已超过办理时限，请加快办理并反馈。", "已超期，请今日内反馈办理进展。"),
    "instruct": ("请相关部门高度重视，尽快办结并举一反三。", "要求限时办结，确保群众满意。"),
    "handle": ("已到场处置完毕，现场已恢复。", "已组织人员整改完成。", "已调解，双方达成一致。"),
    "self_handle": ("现场劝导当事人清理完毕。", "已现场处置，拍照留存。"),
    "verify_fail": ("现场复核问题仍未彻底解决，请返工。", "整改不到位，请重新处置。"),
    "callback": ("电话回访反映人，表示问题已解决。", "已回访，反映人认可处理结果。"),
    "unsatisfied": ("处理速度较慢。", "希望后续加强巡查。"),
}  # fmt: skip

# ---------------------------------------------------------------------------
# Accounts


@dataclass
class _Cast:
    """Who acts in the simulation."""

    grid_workers: dict[str, list[User]]  # village code → reporters (demo accounts first)
    town_operators: dict[str, User]  # town code → operator
    dispatcher: User
    shift_lead: User
    leader: User
    handlers: dict[int, User]  # department id → handler
    units: dict[tuple[str, str], Department | None]  # (kind, town code) → resolved unit
    created: Counter[str] = field(default_factory=Counter)


def _person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.choice((1, 2))))


def _short(name: str) -> str:
    for suffix in ("社区居委会", "居委会", "村委会", "村民委员会"):
        if name.endswith(suffix):
            return name[: -len(suffix)] + ("社区" if "居委" in suffix else "村")
    return name


def _matter_kinds(matters: list[Matter]) -> list[str]:
    kinds = {m.lead_kind for m in matters} | {k for m in matters for k in m.assisting_kinds}
    return sorted(kinds | {"town_zongzhi", "zhengfa"})


def _create_cast(
    session: Session, county: Region, towns: list[Region], matters: list[Matter], password: str
) -> _Cast:
    """Create the demo accounts and the generated ones (idempotently); return who acts."""
    code = county.code
    demo: dict[str, User] = {}
    demo_towns = {a.region.split(":", 1)[1] for a in ACCOUNTS if ":" in a.region}
    if demo_towns <= {t.name for t in towns}:
        demo = create_demo_users(session, code, password)
    existing = {
        u.username: u
        for u in session.scalars(select(User).where(User.region_code.startswith(code)))
    }
    password_hash = hash_password(password)
    created: Counter[str] = Counter()
    rng = random.Random(f"people-{code}")

    def account(username: str, role: Role, region: str, title: str, **extra: Any) -> User:
        user = existing.get(username)
        if user is None:
            user = User(
                username=username,
                display_name=f"{_person(rng)}（{title}）"[:64],
                password_hash=password_hash,
                role=role.value,
                region_code=region,
                **extra,
            )
            session.add(user)
            existing[username] = user
            created[username[:2]] += 1
        return user

    def demo_or(username: str, role: Role, region: str) -> User | None:
        user = demo.get(username)
        return (
            user if user is not None and user.role == role and user.region_code == region else None
        )

    grids = _grid_codes_by_village(session, code)
    grid_workers: dict[str, list[User]] = {}
    town_operators: dict[str, User] = {}
    for town in towns:
        operator = account(f"zz{town.code}", Role.TOWN_OPERATOR, town.code, f"{town.name}综治中心")
        town_operators[town.code] = next(
            (
                u
                for u in demo.values()
                if u.role == Role.TOWN_OPERATOR and u.region_code == town.code
            ),
            operator,
        )
        for village in town.children:
            worker = account(
                f"wg{village.code}",
                Role.GRID_WORKER,
                village.code,
                f"{_short(village.name)}网格员",
                grids=[UserGrid(grid_code=g) for g in grids.get(village.code, [])],
            )
            local_demo = [
                u
                for u in demo.values()
                if u.role == Role.GRID_WORKER and u.region_code == village.code
            ]
            grid_workers[village.code] = [*local_demo, worker]
    dispatcher = demo_or("ddy", Role.COUNTY_DISPATCHER, code) or account(
        f"dd{code}", Role.COUNTY_DISPATCHER, code, f"{county.name}指挥中心调度员"
    )
    shift_lead = demo_or("zbz", Role.COUNTY_SHIFT_LEAD, code) or account(
        f"zb{code}", Role.COUNTY_SHIFT_LEAD, code, f"{county.name}指挥中心值班长"
    )
    leader = demo_or("ld", Role.LEADER, code) or account(
        f"ld{code}", Role.LEADER, code, f"{county.name}领导"
    )
    units = {
        (kind, town.code): resolve_unit(session, kind, town.code)
        for kind in _matter_kinds(matters)
        for town in towns
    }
    departments = {unit.id: unit for unit in units.values() if unit is not None}
    handlers: dict[int, User] = {}
    for dept in sorted(departments.values(), key=lambda d: d.code):
        handler = account(
            f"bm{dept.code}",
            Role.DEPT_HANDLER,
            dept.region_code,
            dept.name,
            department_id=dept.id,
        )
        handlers[dept.id] = next(
            (
                u
                for u in demo.values()
                if u.role == Role.DEPT_HANDLER and u.department_id == dept.id
            ),
            handler,
        )
    session.flush()
    return _Cast(
        grid_workers, town_operators, dispatcher, shift_lead, leader, handlers, units, created
    )


def _grid_codes_by_village(session: Session, county_code: str) -> dict[str, list[str]]:
    rows = session.execute(
        select(Grid.village_code, Grid.code)
        .join(GridSet, GridSet.id == Grid.grid_set_id)
        .where(GridSet.active.is_(True), GridSet.county_code == county_code)
        .order_by(Grid.code)
    )
    result: dict[str, list[str]] = {}
    for village, code in rows:
        result.setdefault(village, []).append(code)
    return result


# ---------------------------------------------------------------------------
# Places


@dataclass
class _Grid:
    id: int
    code: str
    name: str
    village: Region
    town: Region
    geom: BaseGeometry
    urban: bool

    def point(self, rng: random.Random) -> tuple[float, float]:
        """Return a random point strictly inside the grid (rejection sampling in its bbox)."""
        minx, miny, maxx, maxy = self.geom.bounds
        for _ in range(500):
            lng = round(rng.uniform(minx, maxx), 6)
            lat = round(rng.uniform(miny, maxy), 6)
            if self.geom.contains(Point(lng, lat)):
                return lng, lat
        inner = self.geom.representative_point()
        return inner.x, inner.y

    def near(
        self, rng: random.Random, lng: float, lat: float, metres: float
    ) -> tuple[float, float]:
        """Return a point within about `metres` of (lng, lat), still inside the grid."""
        for _ in range(50):
            dlat = rng.uniform(-metres, metres) / 111_000
            dlng = rng.uniform(-metres, metres) / (111_000 * math.cos(math.radians(lat)))
            x, y = round(lng + dlng, 6), round(lat + dlat, 6)
            if self.geom.contains(Point(x, y)):
                return x, y
        return lng, lat


def _places(session: Session, county_code: str) -> tuple[list[_Grid], list[float]]:
    """Return the county's grids and their weights (urban communities and big villages more)."""
    regions = {
        r.code: r
        for r in session.scalars(select(Region).where(Region.code.startswith(county_code)))
    }
    rows = session.execute(
        select(Grid.id, Grid.code, Grid.name, Grid.village_code, Grid.geom)
        .join(GridSet, GridSet.id == Grid.grid_set_id)
        .where(GridSet.active.is_(True), GridSet.county_code == county_code)
        .order_by(Grid.code)
    ).all()
    if not rows:
        raise LookupError(f"县 {county_code} 没有启用的网格，请先运行 gridgov init 导入")
    per_village = Counter(r.village_code for r in rows)
    grids, weights = [], []
    for r in rows:
        village = regions[r.village_code]
        shapely.prepare(r.geom)
        urban = "社区" in village.name or "居委" in village.name
        grids.append(
            _Grid(r.id, r.code, r.name, village, regions[r.village_code[:9]], r.geom, urban)
        )
        # A village's volume grows with its size (grids are drawn by population), a town
        # community's more: per grid, a big village's grids are as busy as a small one's.
        weights.append((4.0 if urban else 1.0) * (1 + 0.1 * per_village[r.village_code]))
    return grids, weights


# ---------------------------------------------------------------------------
# Photos


class _Photos:
    """A few small JPEGs drawn in memory: 'before' scenes in browns, 'after' in greens."""

    def __init__(self, count: int = 8) -> None:
        self.before = [self._draw(i, (120, 95, 70)) for i in range(count)]
        self.after = [self._draw(i, (80, 140, 90)) for i in range(count)]

    @staticmethod
    def _draw(i: int, base: tuple[int, int, int]) -> bytes:
        rng = random.Random(f"photo-{base}-{i}")
        image = Image.new("RGB", (96, 72), base)
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, 95, 24), fill=(150 + i * 10, 190, 225))  # sky
        for _ in range(4):
            x, y = rng.randrange(0, 80), rng.randrange(24, 60)
            shade = tuple(max(0, min(255, c + rng.randrange(-50, 50))) for c in base)
            draw.rectangle((x, y, x + rng.randrange(6, 20), y + rng.randrange(4, 12)), fill=shade)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=80)
        return out.getvalue()


# ---------------------------------------------------------------------------
# Plans


@dataclass(eq=False)
class _Plan:
    """What will happen to one event; decided up front by the RNG."""

    at: datetime
    source: Source
    grid: _Grid
    lng: float
    lat: float
    matter: Matter
    urgency: str
    rng: random.Random
    outcome: str = "close"  # close, self_handle, reject, void, withdraw, merge, shelve
    duplicate_of: _Plan | None = None
    returned: bool = False
    extension: str | None = None  # approve, refuse
    rework: bool = False
    late: bool = False
    resume: bool = True
    assist_note: bool = False
    instruct: bool = False
    satisfaction: str | None = None
    hold: EventState | None = None
    index: int = 0
    event: Event | None = None


def _choose(rng: random.Random, weights: dict[Any, float]) -> Any:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


class _Simulation:
    def __init__(
        self,
        session: Session,
        county: Region,
        cast: _Cast,
        matters: list[Matter],
        store: PhotoStore,
        now: datetime,
        seed: int,
    ) -> None:
        self.session = session
        self.county = county
        self.cast = cast
        self.matters = matters
        self.store = store
        self.lookups = Lookups.load(session)
        self.cal = self.lookups.calendar
        self.now = now
        self.seed = seed
        self.photos = _Photos()
        self.grids, self.grid_weights = _places(session, county.code)
        self.units = cast.units
        self.steps = 0

    # ------------------------------------------------------------------ plans

    def plans(self, count: int, days: int) -> list[_Plan]:
        rng = random.Random(self.seed)
        today = self.now.astimezone(SHANGHAI).date()
        dates = [today - timedelta(days=d) for d in range(days - 1, -1, -1)]
        day_weights = {
            source: [
                (1.0 if self.cal.is_workday(d) else OFF_DAY_WEIGHT[source])
                * (0.85 + 0.3 * i / max(days - 1, 1))  # the system is used a little more lately
                for i, d in enumerate(dates)
            ]
            for source in SOURCE_WEIGHTS
        }
        matter_weights = self._matter_weights()
        duplicates = round(count * DUPLICATE_SHARE) if count >= 20 else 0
        plans = []
        for _ in range(count - duplicates):
            source = _choose(rng, SOURCE_WEIGHTS)
            at = self._moment(rng, source, dates, day_weights[source])
            grid = rng.choices(self.grids, weights=self.grid_weights)[0]
            lng, lat = grid.point(rng)
            matter = _choose(rng, matter_weights[source])
            plans.append(
                _Plan(at, source, grid, lng, lat, matter, self._urgency(rng, matter), _rng(rng))
            )
        plans.sort(key=lambda p: p.at)
        for plan in plans:
            self._decide(plan)
        self._hold_recent(plans)
        self._ensure_outcomes(rng, plans)
        # Duplicates: someone calls about a problem a grid worker reported hours before.
        originals = [
            p
            for p in plans
            if p.outcome == "close" and p.hold is None and p.at < self.now - timedelta(hours=12)
        ]
        for original in rng.sample(originals, min(duplicates, len(originals))):
            source = Source.HOTLINE if rng.random() < 0.6 else Source.CITIZEN
            at = original.at + timedelta(minutes=rng.uniform(20, 600))
            lng, lat = original.grid.near(rng, original.lng, original.lat, 60)
            plans.append(
                _Plan(
                    min(at, self.now - timedelta(minutes=5)),
                    source,
                    original.grid,
                    lng,
                    lat,
                    original.matter,
                    original.urgency,
                    _rng(rng),
                    outcome="merge",
                    duplicate_of=original,
                )
            )
        plans.sort(key=lambda p: p.at)
        for i, plan in enumerate(plans):
            plan.index = i
        return plans

    def _matter_weights(self) -> dict[Source, dict[Matter, float]]:
        by_category: dict[str, list[Matter]] = {}
        for m in self.matters:
            by_category.setdefault(m.category_code, []).append(m)
        base: dict[Matter, float] = {}
        for category, members in by_category.items():
            total = sum(MATTER_WEIGHTS.get(m.code, 1.0) for m in members)
            for m in members:
                base[m] = (
                    CATEGORY_WEIGHTS.get(category, 1) * MATTER_WEIGHTS.get(m.code, 1.0) / total
                )
        hotline = {m: w * HOTLINE_WEIGHTS.get(m.code, 1.0) for m, w in base.items()}
        return {Source.GRID_WORKER: base, Source.HOTLINE: hotline, Source.CITIZEN: hotline}

    def _moment(
        self, rng: random.Random, source: Source, dates: list[date], weights: list[float]
    ) -> datetime:
        for _ in range(1000):
            day = rng.choices(dates, weights=weights)[0]
            hour = rng.choices(range(24), weights=REPORT_HOURS[source])[0]
            at = datetime.combine(day, time(hour), SHANGHAI) + timedelta(
                seconds=rng.randrange(3600)
            )
            if at < self.now - timedelta(minutes=5):
                return at
        return self.now - timedelta(minutes=rng.uniform(5, 60))

    @staticmethod
    def _urgency(rng: random.Random, matter: Matter) -> str:
        if matter.code in HAZARDS:
            weights = {Urgency.URGENT: 0.35, Urgency.PRESSING: 0.35, Urgency.NORMAL: 0.3}
        else:
            weights = {Urgency.URGENT: 0.03, Urgency.PRESSING: 0.14, Urgency.NORMAL: 0.83}
        return str(_choose(rng, weights).value)

    @staticmethod
    def _decide(p: _Plan) -> None:
        rng = p.rng
        if p.source == Source.GRID_WORKER and p.matter.self_handle_allowed and rng.random() < 0.25:
            p.outcome = "self_handle"
            return
        withdraw = {Source.GRID_WORKER: 0.012, Source.HOTLINE: 0.06, Source.CITIZEN: 0.03}
        shelve = 0.08 if p.matter.code in COMPLEX else 0.008
        p.outcome = _choose(
            rng,
            {
                "reject": 0.03,
                "void": 0.012,
                "withdraw": withdraw[p.source],
                "shelve": shelve,
                "close": 1.0,
            },
        )
        p.returned = rng.random() < 0.06
        p.rework = rng.random() < 0.05
        p.resume = rng.random() < 0.6
        p.assist_note = bool(p.matter.assisting_kinds) and rng.random() < 0.3
        roll = rng.random()
        if roll < 0.06:
            p.extension = "approve" if rng.random() < 0.8 else "refuse"
        elif roll < 0.14:
            p.late = True
            p.instruct = rng.random() < 0.3
        if rng.random() < 0.9:
            p.satisfaction = _choose(rng, SATISFACTION_WEIGHTS)

    def _hold_recent(self, plans: list[_Plan]) -> None:
        """Hold the newest events in every open state (newest in the earliest states)."""
        per_state = max(2, math.ceil(len(plans) * HELD_SHARE / len(OPEN_STATES)))
        candidates = [p for p in reversed(plans) if p.outcome != "merge"]
        held = [s for s in OPEN_STATES for _ in range(per_state)]
        for plan, state in zip(candidates, held, strict=False):
            plan.hold = state
            plan.outcome = "shelve" if state == EventState.SHELVED else "close"
            plan.resume = False
            plan.returned = state == EventState.RETURNED or (
                plan.returned and state != EventState.DISPATCHED
            )
            plan.late = plan.rework = False
            plan.extension = None

    def _ensure_outcomes(self, rng: random.Random, plans: list[_Plan]) -> None:
        """Give at least one settled event each outcome, however small the run."""
        settled = [p for p in plans if p.hold is None]
        settled = settled[: max(1, len(settled) * 2 // 3)]  # old enough to have run their course

        def plain(p: _Plan) -> bool:
            return p.outcome == "close" and not (p.returned or p.rework or p.late or p.extension)

        needs: list[tuple[str, Any]] = [
            (
                "self_handle",
                lambda p: p.source == Source.GRID_WORKER and p.matter.self_handle_allowed,
            ),
            ("reject", None),
            ("void", None),
            ("withdraw", None),
            ("shelve", None),
        ]
        for outcome, eligible in needs:
            if any(p.outcome == outcome for p in plans):
                continue
            pool = [p for p in settled if plain(p) and (eligible is None or eligible(p))]
            if pool:
                rng.choice(pool).outcome = outcome
        closing = [p for p in plans if p.outcome == "close" and p.hold is None]
        for flag, value in (
            ("returned", True),
            ("rework", True),
            ("late", True),
            ("extension", "approve"),
            ("extension", "refuse"),
        ):
            if any(getattr(p, flag) == value for p in closing):
                continue
            pool = [p for p in settled if plain(p)]
            if pool:
                setattr(rng.choice(pool), flag, value)

    # ------------------------------------------------------------------ running

    def run(self, plans: list[_Plan]) -> None:
        """Run every event's life, all steps in time order."""
        queue: list[tuple[datetime, int, int, Generator[datetime, None, None]]] = []
        tick = 0
        for plan in plans:
            life = self._life(plan)
            heapq.heappush(queue, (next(life), plan.index, tick, life))
            tick += 1
        while queue:
            _, index, _, life = heapq.heappop(queue)
            try:
                at = next(life)
            except StopIteration:
                continue
            if at > self.now:
                life.close()  # not yet: the event stays where it is
                continue
            tick += 1
            heapq.heappush(queue, (at, index, tick, life))

    def _when(
        self, p: _Plan, prev: datetime, deadline: datetime | None, lo: float, hi: float
    ) -> datetime:
        """Return a moment after `prev`: a fraction lo–hi of the working time left to `deadline`."""
        rng = p.rng
        floor = prev + timedelta(minutes=rng.uniform(2, 8))
        at = floor
        if deadline is not None and deadline > floor:
            fraction = rng.uniform(lo, hi)
            left = self.cal.elapsed(prev, deadline, "working_hours")
            if left >= 0.5:
                at = max(self.cal.add(prev, left * fraction, "working_hours"), floor)
            else:  # urgent limits in natural hours, or a deadline tonight
                at = max(prev + (deadline - prev) * fraction, floor)
        return self._clamp(p, prev, at)

    def _later(self, p: _Plan, prev: datetime, working_hours: float) -> datetime:
        """Return the moment `working_hours` of office time after `prev`."""
        return self._clamp(p, prev, self.cal.add(prev, working_hours, "working_hours"))

    def _clamp(self, p: _Plan, prev: datetime, at: datetime) -> datetime:
        # A held event must reach its state before now: squeeze its remaining steps.
        if p.hold is not None and at >= self.now:
            return prev + (self.now - prev) * p.rng.uniform(0.2, 0.5)
        return at

    def _deadline(self, event: Event) -> datetime:
        due = event.due_at
        return min(event.stage_due_at, due) if event.stage_due_at else due

    def _act(self, user: User, event: Event, action: str, at: datetime, **inputs: Any) -> Event:
        set_actor(self.session, Actor(user.id, user.username))
        try:
            perform(self.session, user, event.id, action, inputs, now=at, lookups=self.lookups)
        except Exception as exc:
            exc.add_note(f"seed: {action} on {event.code} ({event.state}) by {user.username}")
            raise
        self.steps += 1
        return event

    def _attach(self, user: User, event: Event, data: bytes, kind: str) -> int:
        attachment, _ = attach_photo(self.session, user, event.id, data, kind, self.store)
        return attachment.id

    def _comment(self, p: _Plan, key: str) -> str:
        return p.rng.choice(COMMENTS[key])

    def _centre_user(self, level: str | None, region: str | None) -> User:
        if level == "town" and region in self.cast.town_operators:
            return self.cast.town_operators[region]
        return self.cast.dispatcher

    def _unit(self, kind: str, town_code: str) -> Department | None:
        key = (kind, town_code)
        if key not in self.units:
            self.units[key] = resolve_unit(self.session, kind, town_code)
        return self.units[key]

    def _units(self, p: _Plan, centre: tuple[str, str]) -> tuple[Department, list[Department]]:
        """Return the lead and assisting units the centre dispatches this matter to."""
        town = p.grid.town.code
        lead = self._unit(p.matter.lead_kind, town) or self._unit("town_zongzhi", town)
        assert lead is not None, f"no unit for {p.matter.lead_kind} in {town}"
        assisting = []
        for kind in p.matter.assisting_kinds:
            unit = self._unit(kind, town)
            if unit is None or unit.id == lead.id or unit in assisting:
                continue
            if centre[0] == "town" and not (unit.level == "town" and unit.region_code == town):
                continue
            assisting.append(unit)
        return lead, assisting

    # ------------------------------------------------------------------ one life

    def _report(self, p: _Plan) -> Event:
        rng = p.rng
        grid = p.grid
        spot = rng.choice(URBAN_SPOTS if grid.urban else VILLAGE_SPOTS)
        details = DETAILS.get(p.matter.code) or CATEGORY_DETAILS[p.matter.category_code]
        if p.source == Source.GRID_WORKER:
            workers = self.cast.grid_workers[grid.village.code]
            user = workers[0] if len(workers) == 1 or rng.random() < 0.7 else workers[1]
            name, phone = "", ""
        else:
            user = (
                self.cast.dispatcher
                if p.source == Source.HOTLINE
                else self.cast.town_operators[grid.town.code]
            )
            name = rng.choice(SURNAMES) + rng.choice(("先生", "女士"))
            phone = f"1{rng.choice('3578')}{rng.randrange(10)}****{rng.randrange(10_000):04d}"
        description = f"{grid.name}{spot}：{rng.choice(details)}"
        if p.source == Source.HOTLINE:
            description = f"12345热线来电反映，{description}"
        set_actor(self.session, Actor(user.id, user.username))
        result = report_event(
            self.session,
            user,
            ReportInput(
                matter_code=p.matter.code,
                urgency=p.urgency,
                description=description,
                lng=p.lng,
                lat=p.lat,
                client_key=f"seed-{self.county.code}-{self.seed}-{p.index}",
                address=f"{grid.town.name}{grid.village.name}{spot}",
                source=p.source.value,
                accuracy_m=round(rng.uniform(5, 30), 1) if p.source == Source.GRID_WORKER else None,
                reporter_name=name,
                reporter_phone=phone,
            ),
            now=p.at,
            lookups=self.lookups,
        )
        self.steps += 1
        return result.event

    def _stop(self, p: _Plan, event: Event) -> bool:
        return p.hold is not None and event.state == p.hold

    def _life(self, p: _Plan) -> Generator[datetime, None, None]:
        rng = p.rng
        t = p.at
        yield t
        ev = p.event = self._report(p)
        reporter = self.session.get(User, ev.reporter_id)
        assert reporter is not None
        if self._stop(p, ev):
            return
        if p.outcome == "self_handle":
            yield from self._self_handle(p, ev, reporter, t)
            return

        centre = (ev.holder_level, ev.holder_region_code or "")
        desk = self._centre_user(*centre)
        t = self._when(p, t, self._deadline(ev), 0.1, 0.7)
        yield t
        if p.outcome == "merge":
            target = p.duplicate_of.event if p.duplicate_of else None
            if target is not None and EventState(target.state).is_open:
                self._act(
                    desk, ev, "merge", t, target_event_id=target.id,
                    comment=f"与事件 {target.code} 反映同一问题，并案办理。",
                )  # fmt: skip
            else:
                self._act(desk, ev, "void", t, comment="重复反映，原事件已办结，作废。")
            return
        if p.outcome in ("reject", "void"):
            self._act(desk, ev, p.outcome, t, comment=self._comment(p, p.outcome))
            return
        if p.outcome == "withdraw" and p.source == Source.GRID_WORKER:
            self._act(reporter, ev, "withdraw", t, comment=self._comment(p, "withdraw_reporter"))
            return
        self._act(desk, ev, "accept", t)
        if self._stop(p, ev):
            return
        if p.outcome == "withdraw":
            t = self._later(p, t, rng.uniform(0.5, 6))
            yield t
            self._act(desk, ev, "withdraw", t, comment=self._comment(p, "withdraw_centre"))
            return

        lead_unit = self._unit(p.matter.lead_kind, p.grid.town.code)
        if centre[0] == "town" and lead_unit is not None and lead_unit.level == "county":
            t = self._when(p, t, self._deadline(ev), 0.1, 0.6)
            yield t
            self._act(desk, ev, "escalate", t, comment=self._comment(p, "escalate"))
            centre = ("county", ev.county_code)
            desk = self.cast.dispatcher
            t = self._when(p, t, self._deadline(ev), 0.1, 0.6)
            yield t
            self._act(desk, ev, "accept", t)

        lead, assisting = self._units(p, centre)
        first = lead
        if p.returned:
            wrong = [u for u in assisting if u.id in self.cast.handlers]
            first = wrong[0] if wrong and rng.random() < 0.7 else lead
        t = self._when(p, t, self._deadline(ev), 0.1, 0.7)
        yield t
        self._dispatch(desk, ev, t, first, [u for u in assisting if u.id != first.id])
        if self._stop(p, ev):
            return
        if p.returned:
            handler = self.cast.handlers[first.id]
            if rng.random() < 0.5:
                t = self._when(p, t, self._deadline(ev), 0.05, 0.3)
                yield t
                self._act(handler, ev, "sign", t)
            t = self._when(p, t, self._deadline(ev), 0.1, 0.4)
            yield t
            reason = "return_wrong" if first.id != lead.id else "return_unclear"
            self._act(handler, ev, "return", t, comment=self._comment(p, reason))
            if self._stop(p, ev):
                return
            t = self._when(p, t, self._deadline(ev), 0.1, 0.6)
            yield t
            self._dispatch(desk, ev, t, lead, [u for u in assisting if u.id != lead.id])

        handler = self.cast.handlers[lead.id]
        t = self._when(p, t, self._deadline(ev), 0.05, 0.3)
        yield t
        self._act(handler, ev, "sign", t)
        if self._stop(p, ev):
            return
        if p.assist_note and assisting:
            helper = self.cast.handlers.get(assisting[0].id)
            if helper is not None:
                t = self._when(p, t, self._deadline(ev), 0.05, 0.4)
                yield t
                self._act(helper, ev, "assist_note", t, comment=self._comment(p, "assist"))
        if p.outcome == "shelve":
            t = self._when(p, t, self._deadline(ev), 0.2, 0.8)
            yield t
            self._act(self.cast.shift_lead, ev, "shelve", t, comment=self._comment(p, "shelve"))
            if self._stop(p, ev) or not p.resume:
                return
            t = self._later(p, t, rng.uniform(3, 25) * self.cal.hours_per_day)
            yield t
            self._act(self.cast.shift_lead, ev, "resume", t, comment=self._comment(p, "resume"))
        if p.extension:
            t = self._when(p, t, self._deadline(ev), 0.2, 0.6)
            yield t
            days = rng.randint(2, 5)
            self._act(
                handler, ev, "request_extension", t, days=days,
                comment=self._comment(p, "extension"),
            )  # fmt: skip
            approver = self.cast.shift_lead if ev.dispatcher_level == "county" else desk
            t = self._when(p, t, self._deadline(ev), 0.1, 0.5)
            yield t
            if p.extension == "approve":
                self._act(approver, ev, "approve_extension", t, comment="同意延期。")
            else:
                self._act(approver, ev, "refuse_extension", t, comment=self._comment(p, "refuse"))
        if p.late:
            t = max(t + timedelta(minutes=5), self._later(p, ev.due_at, rng.uniform(0.5, 4)))
            yield t
            self._act(
                self.cast.shift_lead, ev, "supervise", t, comment=self._comment(p, "supervise")
            )
            if p.instruct:
                t = self._later(p, t, rng.uniform(0.5, 3))
                yield t
                self._act(self.cast.leader, ev, "instruct", t, comment=self._comment(p, "instruct"))
            t = self._later(p, t, rng.uniform(2, 20))
        else:
            # After an approved extension the new time is used: typically past the old limit.
            lo, hi = (0.5, 0.9) if p.extension == "approve" else (0.2, 0.8)
            t = self._when(p, t, self._deadline(ev), lo, hi)
        yield t
        self._handle(p, handler, ev, t, 0)
        if self._stop(p, ev):
            return
        verifier = (
            reporter
            if ev.holder_level == "grid_worker"
            else self._centre_user(ev.holder_level, ev.holder_region_code)
        )
        if p.rework:
            t = self._when(p, t, self._deadline(ev), 0.1, 0.5)
            yield t
            self._act(verifier, ev, "verify_fail", t, comment=self._comment(p, "verify_fail"))
            t = self._when(p, t, self._deadline(ev), 0.2, 0.6)
            yield t
            self._handle(p, handler, ev, t, 1)
        yield from self._finish(p, ev, reporter, verifier, t)

    def _dispatch(
        self, desk: User, ev: Event, at: datetime, lead: Department, assisting: list[Department]
    ) -> None:
        self._act(
            desk, ev, "dispatch", at,
            lead_department_id=lead.id,
            assisting_department_ids=[u.id for u in assisting],
        )  # fmt: skip

    def _handle(self, p: _Plan, handler: User, ev: Event, at: datetime, attempt: int) -> None:
        photos = []
        if p.matter.photo_required or p.rng.random() < 0.3:
            k = (p.index + attempt) % len(self.photos.after)
            photos.append(self._attach(handler, ev, self.photos.after[k], "after"))
        self._act(
            handler, ev, "handle", at, comment=self._comment(p, "handle"), attachment_ids=photos
        )

    def _self_handle(
        self, p: _Plan, ev: Event, reporter: User, t: datetime
    ) -> Generator[datetime, None, None]:
        t = self._clamp(p, t, t + timedelta(minutes=p.rng.uniform(10, 90)))
        yield t
        k = p.index % len(self.photos.before)
        photos = [
            self._attach(reporter, ev, self.photos.before[k], "before"),
            self._attach(reporter, ev, self.photos.after[k], "after"),
        ]
        self._act(
            reporter, ev, "self_handle", t,
            comment=self._comment(p, "self_handle"), attachment_ids=photos,
        )  # fmt: skip
        if self._stop(p, ev):
            return
        verifier = self._centre_user(ev.holder_level, ev.holder_region_code)
        p.satisfaction = None  # nobody rates their own work
        yield from self._finish(p, ev, reporter, verifier, t)

    def _finish(
        self, p: _Plan, ev: Event, reporter: User, verifier: User, t: datetime
    ) -> Generator[datetime, None, None]:
        t = self._when(p, t, self._deadline(ev), 0.1, 0.6)
        yield t
        self._act(verifier, ev, "verify_pass", t)
        if self._stop(p, ev):
            return
        closer = self._centre_user(ev.holder_level, ev.holder_region_code)
        t = self._when(p, t, self._deadline(ev), 0.1, 0.5)
        yield t
        self._act(closer, ev, "close", t)
        if p.satisfaction is None:
            return
        rater = reporter
        if p.source != Source.GRID_WORKER:
            rater = closer
            t = self._later(p, t, p.rng.uniform(1, 14))
            yield t
            self._act(closer, ev, "callback", t, comment=self._comment(p, "callback"))
        t = self._later(p, t, p.rng.uniform(0.5, 14))
        yield t
        comment = self._comment(p, "unsatisfied") if p.satisfaction == "unsatisfied" else ""
        self._act(rater, ev, "evaluate", t, satisfaction=p.satisfaction, comment=comment)


def _rng(parent: random.Random) -> random.Random:
    return random.Random(parent.getrandbits(64))


# ---------------------------------------------------------------------------
# Entry points


def seed_demo(
    session: Session,
    county_code: str = "441523",
    events: int = 3000,
    days: int = 120,
    seed: int = 1,
    now: datetime | None = None,
    *,
    store: PhotoStore,
    password: str = DEMO_PASSWORD,
) -> dict[str, Any]:
    """Create demo accounts and `events` events over the past `days` days; return the counts.

    Idempotent: a county already seeded (Setting `demo.seeded.<county>`) gets nothing new and
    the counts of what is there. Photos are stored in `store`. Flushes, never commits.
    """
    if events < 1 or days < 1:
        raise ValueError("events and days must be at least 1")
    county = session.get(Region, county_code)
    if county is None or county.level != Level.COUNTY:
        raise LookupError(f"县级区划 {county_code} 不存在，请先运行 gridgov init 导入")
    key = SEEDED_SETTING.format(county=county_code)
    if session.get(Setting, key) is not None:
        return {**demo_summary(session, county_code), "created": False, "users_created": {}}
    now = (now or utcnow()).astimezone(SHANGHAI)
    towns = list(
        session.scalars(
            select(Region)
            .where(Region.parent_code == county_code, Region.level == Level.TOWN)
            .order_by(Region.code)
        )
    )
    matters = list(
        session.scalars(select(Matter).where(Matter.active.is_(True)).order_by(Matter.code))
    )
    if not matters:
        raise LookupError("事项清单为空，请先运行 gridgov init 导入")
    cast = _create_cast(session, county, towns, matters, password)
    simulation = _Simulation(session, county, cast, matters, store, now, seed)
    caller = session.info.get("actor")
    # Every operation flushes where it must; autoflush before each of its queries would only
    # split one action's changes over several flushes (and audit entries).
    with session.no_autoflush:
        simulation.run(simulation.plans(events, days))
    # Each step was attributed to its simulated user; what follows is the caller's again.
    if caller is None:
        session.info.pop("actor", None)
    else:
        set_actor(session, caller)
    # What the SLA sweep of a running server does first: flag open events past their deadline.
    from gridgov.sla import sla_sweep

    swept = sla_sweep(session, now)
    session.add(
        Setting(
            key=key,
            value=json.dumps(
                {"events": events, "days": days, "seed": seed, "now": now.isoformat()},
                ensure_ascii=False,
            ),
        )
    )
    session.flush()
    return {
        **demo_summary(session, county_code),
        "created": True,
        "users_created": dict(sorted(cast.created.items())),
        "steps": simulation.steps,
        "sla_sweep": swept,
    }


def demo_summary(session: Session, county_code: str) -> dict[str, Any]:
    """Count a county's events per state, and the outcomes worth showing."""
    in_county = Event.county_code == county_code
    states = {s.value: 0 for s in EventState}
    states.update(
        session.execute(
            select(Event.state, func.count()).where(in_county).group_by(Event.state)
        ).all()
    )

    def count(*where: Any) -> int:
        return session.scalar(select(func.count()).select_from(Event).where(in_county, *where)) or 0

    evaluations = dict(
        session.execute(
            select(Event.satisfaction, func.count())
            .where(in_county, Event.satisfaction.is_not(None))
            .group_by(Event.satisfaction)
        ).all()
    )
    return {
        "county": county_code,
        "events": sum(states.values()),
        "states": states,
        "open": sum(states[s.value] for s in OPEN_STATES),
        "closed_on_time": count(Event.state == EventState.CLOSED, Event.overdue.is_(False)),
        "closed_late": count(Event.state == EventState.CLOSED, Event.overdue.is_(True)),
        "overdue": count(Event.overdue.is_(True)),
        "open_overdue": count(
            Event.state.in_([s.value for s in OPEN_STATES]), Event.overdue.is_(True)
        ),
        "self_handled": count(Event.self_handled.is_(True)),
        "reworked": count(Event.rework_count > 0),
        "returned": count(Event.return_count > 0),
        "extended": count(Event.extension_count > 0),
        "evaluations": {k: evaluations.get(k, 0) for k in SATISFACTION_WEIGHTS},
        "actions": session.scalar(
            select(func.count()).select_from(EventAction).join(Event).where(in_county)
        )
        or 0,
        "photos": session.scalar(
            select(func.count()).select_from(Attachment).join(Event).where(in_county)
        )
        or 0,
    }


def demo_accounts(session: Session) -> list[dict[str, str]]:
    """Return the main demo accounts (gridgov.demo.ACCOUNTS) that exist: name, role, unit."""
    users = {
        u.username: u
        for u in session.scalars(
            select(User).where(User.username.in_([a.username for a in ACCOUNTS]))
        )
    }
    regions = dict(session.execute(select(Region.code, Region.name)).all())
    rows = []
    for account in ACCOUNTS:
        user = users.get(account.username)
        if user is None:
            continue
        if user.department_id is not None:
            dept = session.get(Department, user.department_id)
            unit = dept.name if dept else ""
        else:
            code = user.region_code
            unit = "".join(regions.get(code[:n], "") for n in (9, 12) if len(code) >= n) or (
                regions.get(code, "")
            )
        rows.append(
            {
                "username": user.username,
                "name": user.display_name,
                "role": ROLE_LABELS[Role(user.role)],
                "unit": unit,
                "password_hash": user.password_hash,
            }
        )
    return rows


def generated_accounts(session: Session, county_code: str) -> dict[str, int]:
    """Count the generated accounts of a county per username prefix (see GENERATED_PREFIXES)."""
    counts = {}
    for prefix, (role, _, _) in GENERATED_PREFIXES.items():
        counts[prefix] = (
            session.scalar(
                select(func.count())
                .select_from(User)
                .where(
                    User.username.startswith(f"{prefix}{county_code}"),
                    User.role == role.value,
                )
            )
            or 0
        )
    return counts


def state_labels() -> dict[str, str]:
    """Return the Chinese label of every state value (for printing summaries)."""
    return {s.value: STATE_LABELS[s] for s in EventState}
