"""The OpenAPI 3.1 description of /api/v1, built from the transition table and route list."""

from __future__ import annotations

from typing import Any

from gridgov.models import (
    QUEUE_SOURCES,
    STATE_LABELS,
    Source,
    UnplacedReason,
    UnplacedStatus,
    Urgency,
)
from gridgov.stats import DIMENSIONS
from gridgov.workflow.machine import TRANSITIONS

ERROR = {"$ref": "#/components/responses/Error"}


def _error_responses(*codes: int) -> dict[str, Any]:
    text = {
        400: "请求格式错误",
        401: "未登录",
        403: "无权操作（角色或辖区）",
        404: "不存在",
        409: "状态冲突或已被他人更新",
        422: "输入缺失或无效",
    }
    return {
        str(c): {"description": text[c], "content": _json({"$ref": "#/components/schemas/Error"})}
        for c in codes
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": _json(schema)}


def _param(
    name: str, where: str, schema: dict[str, Any], description: str = "", required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "schema": schema,
        "description": description,
        "required": required or where == "path",
    }


def _paging() -> list[dict[str, Any]]:
    """Return the page and per_page query parameters of a list."""
    return [
        _param("page", "query", {"type": "integer", "minimum": 1}),
        _param("per_page", "query", {"type": "integer", "maximum": 100}),
    ]


def _action_inputs() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "comment": {"type": "string", "maxLength": 2000, "description": "说明、理由或结果"},
            "lead_department_id": {"type": "integer", "description": "主办部门（分拨）"},
            "assisting_department_ids": {"type": "array", "items": {"type": "integer"}},
            "days": {"type": "integer", "minimum": 1, "maximum": 15, "description": "延期工作日"},
            "satisfaction": {"enum": ["satisfied", "basically", "unsatisfied"]},
            "target_event_id": {"type": "integer", "description": "并入的事件"},
            "attachment_ids": {"type": "array", "items": {"type": "integer"}},
            "lng": {"type": "number"},
            "lat": {"type": "number"},
            "crs": {"enum": ["wgs84", "gcj02", "bd09", "cgcs2000"]},
            "version": {"type": "integer", "description": "乐观锁：事件的当前版本"},
        },
    }


def _unplaced_schema() -> dict[str, Any]:
    """Return the schema of a queued report (gridgov.unplaced.describe)."""
    text = {"type": "string"}
    number = {"type": ["number", "null"]}
    return {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "status": {"enum": [s.value for s in UnplacedStatus]},
            "reason": {"enum": [r.value for r in UnplacedReason]},
            "distance_m": number | {"description": "到最近网格的距离（米）"},
            "nearest_grid_code": {"type": ["string", "null"]},
            "source": {"enum": list(QUEUE_SOURCES)},
            "matter_code": text,
            "urgency": {"enum": [u.value for u in Urgency]},
            "description": text,
            "address": text,
            "place_text": text,
            "input": {
                "type": "object",
                "description": "收到的原始坐标及坐标系",
                "properties": {"lng": number, "lat": number, "crs": text},
            },
            "lng": number | {"description": "收到的位置（WGS84）"},
            "lat": number,
            "received_at": {"type": "string", "format": "date-time"},
            "event_id": {"type": ["integer", "null"], "description": "定位后生成的事件"},
            "event_code": {"type": ["string", "null"]},
            "resolved_by": {"type": ["string", "null"]},
            "resolved_at": {"type": ["string", "null"], "format": "date-time"},
            "discard_reason": {"type": ["string", "null"]},
            "version": {"type": "integer", "description": "乐观锁：报告的当前版本"},
        },
    }


def _unplaced_paths() -> dict[str, Any]:
    """Return the 待定位 queue's endpoints (gridgov.unplaced)."""
    report_id = _param("report_id", "path", {"type": "integer"})
    report = {"$ref": "#/components/schemas/UnplacedReport"}
    version = {"type": "integer", "description": "乐观锁：报告的当前版本"}
    return {
        "/unplaced": {
            "get": {
                "summary": "待定位队列（仅县指挥中心，本县）",
                "description": "其他角色得到空列表。待定位的按接收时间先后，其余按接收时间倒序。",
                "parameters": [
                    _param(
                        "status",
                        "query",
                        {"enum": [*(s.value for s in UnplacedStatus), "all"]},
                        "缺省 queued",
                    ),
                    *_paging(),
                ],
                "responses": {
                    "200": _ok(
                        {
                            "type": "object",
                            "properties": {
                                "items": {"type": "array", "items": report},
                                "total": {"type": "integer"},
                            },
                        }
                    )
                }
                | _error_responses(401, 422),
            }
        },
        "/unplaced/{report_id}/place": {
            "post": {
                "summary": "手动定位待定位报告，生成事件",
                "description": "按坐标（lng、lat、crs）或地名（place，定位到村）定位；位置须在本县"
                "网格内。事件以原接收时间为上报时间（时限自接收起算），上报人为原登记人，"
                "上报记录中注明定位人。已被定位或作废的返回 409。",
                "parameters": [report_id],
                "requestBody": {
                    "required": True,
                    "content": _json(
                        {
                            "type": "object",
                            "properties": {
                                "lng": {"type": "number"},
                                "lat": {"type": "number"},
                                "crs": {"enum": ["wgs84", "gcj02", "bd09", "cgcs2000"]},
                                "place": {"type": "string", "description": "村（社区）名称"},
                                "version": version,
                            },
                        }
                    ),
                },
                "responses": {
                    "201": _ok(
                        {
                            "allOf": [
                                report,
                                {"type": "object", "properties": {"event": {"type": "object"}}},
                            ]
                        },
                        "已定位，生成事件",
                    )
                }
                | _error_responses(400, 401, 403, 404, 409, 422),
            }
        },
        "/unplaced/{report_id}/discard": {
            "post": {
                "summary": "作废待定位报告（须填写理由）",
                "parameters": [report_id],
                "requestBody": {
                    "required": True,
                    "content": _json(
                        {
                            "type": "object",
                            "required": ["reason"],
                            "properties": {
                                "reason": {"type": "string", "maxLength": 2000},
                                "version": version,
                            },
                        }
                    ),
                },
                "responses": {"200": _ok(report)} | _error_responses(400, 401, 403, 404, 409, 422),
            }
        },
    }


def _map_paths() -> dict[str, Any]:
    """Return the 民情地图 GeoJSON endpoints (gridgov.mapdata; routes in web.maps_pages)."""
    period = [
        _param("from", "query", {"type": "string", "format": "date"}, "开始日期（含），缺省近30天"),
        _param("to", "query", {"type": "string", "format": "date"}, "截止日期（含），缺省今天"),
        _param("region", "query", {"type": "string"}, "区划代码（须在本辖区内）"),
        _param("matter", "query", {"type": "string"}, "事项代码前缀（大类或小类）"),
        _param("source", "query", {"type": "string"}, "来源，逗号分隔；着色仅在单选时按来源统计"),
        _param("crs", "query", {"enum": ["wgs84", "gcj02"]}, "bbox 与返回坐标所用坐标系"),
    ]
    view = [
        _param("bbox", "query", {"type": "string"}, "最小经度,最小纬度,最大经度,最大纬度"),
        _param("zoom", "query", {"type": "integer", "minimum": 0, "maximum": 22}),
    ]
    layers = [
        _param("state", "query", {"type": "string"}, "状态，逗号分隔"),
        _param("category", "query", {"type": "string"}, "事项大类（两位），逗号分隔"),
        _param("department", "query", {"type": "string"}, "主办部门编号，逗号分隔；none=未分拨"),
        _param("overdue", "query", {"type": "boolean"}, "只看超期在办"),
    ]
    geojson = {"type": "object", "properties": {"type": {"const": "FeatureCollection"}}}
    return {
        "/map/areas": {
            "get": {
                "summary": "民情地图：区域着色（GeoJSON，按视野与缩放级别）",
                "description": "缩放 ≤11 为镇（街道），12–13 为村（社区），≥14 为网格"
                "（level 可指定）；每个区域的指标即 /stats?group_by=<level> 的分组结果；"
                "几何按缩放级别简化。",
                "parameters": [
                    *view,
                    _param("level", "query", {"enum": ["town", "village", "grid"]}),
                    _param(
                        "metric",
                        "query",
                        {"enum": ["received", "open", "overdue", "closure_rate", "overdue_rate"]},
                        "着色指标",
                    ),
                    *period,
                ],
                "responses": {"200": _ok(geojson)} | _error_responses(401, 403, 422),
            }
        },
        "/map/events": {
            "get": {
                "summary": "民情地图：事件（低缩放级别为服务端聚合，放大后为点，最多2000个）",
                "parameters": [*view, *period, *layers],
                "responses": {"200": _ok(geojson)} | _error_responses(401, 403, 422),
            }
        },
        "/map/feed": {
            "get": {
                "summary": "民情地图实时模式：自 since 以来新上报及新超期的事件",
                "parameters": [
                    _param(
                        "since", "query", {"type": "string"}, "ISO 时间或事件编号，缺省近24小时"
                    ),
                    *period[2:],
                    *layers,
                ],
                "responses": {"200": _ok({"type": "object"})} | _error_responses(401, 403, 422),
            }
        },
    }


def build_spec() -> dict[str, Any]:
    """Return the OpenAPI document."""
    actions = "\n".join(
        f"- `{t.name}` {t.label}: from {', '.join(sorted(s.value for s in t.sources))}; "
        f"roles {', '.join(sorted(r.value for r in t.roles))}; requires "
        f"{', '.join(t.requires) or '—'}"
        for t in TRANSITIONS.values()
    )
    event_id = _param("event_id", "path", {"type": "integer"})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gridgov API",
            "version": "1",
            "description": "网格化社会治理事件系统接口。认证：先用 /auth/token 取得令牌，再以 "
            "`Authorization: Bearer <token>` 调用；浏览器使用会话。错误体统一为 "
            '`{"error": {"code", "message", "details"}}`，message 为中文。',
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "session"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "details": {"type": "object"},
                            },
                        }
                    },
                },
                "Placement": {
                    "type": "object",
                    "properties": {
                        k: {"type": "string"}
                        for k in (
                            "grid_code",
                            "grid_name",
                            "village_code",
                            "village_name",
                            "town_code",
                            "town_name",
                            "county_code",
                            "county_name",
                        )
                    }
                    | {
                        "snapped": {"type": "boolean"},
                        "distance_m": {"type": "number"},
                        "lng": {"type": "number"},
                        "lat": {"type": "number"},
                    },
                },
                "EventSummary": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "code": {"type": "string"},
                        "state": {"enum": list(STATE_LABELS)},
                        "deadline": {"type": "string", "format": "date-time"},
                        "light": {"enum": ["green", "yellow", "red", "paused", "done"]},
                        "version": {"type": "integer"},
                    },
                },
                "UnplacedReport": _unplaced_schema(),
                "EventDetail": {
                    "allOf": [
                        {"$ref": "#/components/schemas/EventSummary"},
                        {
                            "type": "object",
                            "properties": {
                                "history": {"type": "array", "items": {"type": "object"}},
                                "photos": {"type": "array", "items": {"type": "object"}},
                                "allowed_actions": {"type": "array", "items": {"type": "object"}},
                            },
                        },
                    ],
                },
            },
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/auth/token": {
                "post": {
                    "summary": "取得访问令牌",
                    "security": [],
                    "requestBody": {
                        "required": True,
                        "content": _json(
                            {
                                "type": "object",
                                "required": ["username", "password"],
                                "properties": {
                                    "username": {"type": "string"},
                                    "password": {"type": "string"},
                                },
                            }
                        ),
                    },
                    "responses": {
                        "200": _ok(
                            {
                                "type": "object",
                                "properties": {
                                    "token": {"type": "string"},
                                    "expires_in": {"type": "integer"},
                                },
                            }
                        )
                    }
                    | _error_responses(400, 401),
                }
            },
            "/geocode": {
                "get": {
                    "summary": "坐标或地名定位到网格",
                    "security": [],
                    "parameters": [
                        _param("lng", "query", {"type": "number"}),
                        _param("lat", "query", {"type": "number"}),
                        _param("crs", "query", {"enum": ["wgs84", "gcj02", "bd09", "cgcs2000"]}),
                        _param("q", "query", {"type": "string"}, "地名，如“螺溪镇欧田村委会附近”"),
                    ],
                    "responses": {"200": _ok({"$ref": "#/components/schemas/Placement"})}
                    | _error_responses(400, 422),
                }
            },
            "/matters": {
                "get": {
                    "summary": "事项清单",
                    "security": [],
                    "responses": {"200": _ok({"type": "object"})},
                }
            },
            "/regions/{code}": {
                "get": {
                    "summary": "区划及其下级",
                    "security": [],
                    "parameters": [_param("code", "path", {"type": "string"})],
                    "responses": {"200": _ok({"type": "object"})} | _error_responses(404, 422),
                }
            },
            "/events": {
                "post": {
                    "summary": "上报事件（client_key 幂等）",
                    "requestBody": {
                        "required": True,
                        "content": _json(
                            {
                                "type": "object",
                                "required": [
                                    "matter_code",
                                    "description",
                                    "lng",
                                    "lat",
                                    "client_key",
                                ],
                                "properties": {
                                    "matter_code": {"type": "string"},
                                    "urgency": {"enum": [u.value for u in Urgency]},
                                    "description": {"type": "string"},
                                    "lng": {"type": "number"},
                                    "lat": {"type": "number"},
                                    "crs": {"enum": ["wgs84", "gcj02", "bd09", "cgcs2000"]},
                                    "accuracy_m": {"type": "number"},
                                    "address": {"type": "string"},
                                    "source": {"enum": [s.value for s in Source]},
                                    "client_key": {"type": "string", "maxLength": 64},
                                },
                            }
                        ),
                    },
                    "responses": {
                        "201": _ok({"type": "object"}, "新建"),
                        "200": _ok({"type": "object"}, "同一 client_key 已上报，返回原事件"),
                        "202": _ok(
                            {"$ref": "#/components/schemas/UnplacedReport"},
                            "位置无法定位到网格，已转入县指挥中心待定位队列（属地兜底）：仅县"
                            "指挥中心调度员、值班长登记的 "
                            + "、".join(QUEUE_SOURCES)
                            + " 来源报告，位置在所有网格之外（超出吸附容差），或无坐标且地址"
                            "未能识别出村（社区）；无坐标而地址能识别出村的，定位到该村（201）。"
                            "同一 client_key 再次提交返回同一报告（created=false）",
                        ),
                    }
                    | _error_responses(400, 401, 403, 422),
                },
                "get": {
                    "summary": "事件列表（仅本辖区）",
                    "parameters": [
                        _param("state", "query", {"type": "string"}, "逗号分隔的状态"),
                        _param("matter", "query", {"type": "string"}),
                        _param("region", "query", {"type": "string"}, "区划代码前缀"),
                        _param("source", "query", {"enum": [s.value for s in Source]}),
                        _param("urgency", "query", {"enum": [u.value for u in Urgency]}),
                        _param("from", "query", {"type": "string", "format": "date"}),
                        _param("to", "query", {"type": "string", "format": "date"}),
                        _param("overdue", "query", {"type": "boolean"}),
                        *_paging(),
                    ],
                    "responses": {
                        "200": _ok(
                            {
                                "type": "object",
                                "properties": {
                                    "items": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/EventSummary"},
                                    },
                                    "total": {"type": "integer"},
                                },
                            }
                        )
                    }
                    | _error_responses(401, 422),
                },
            },
            "/events/{event_id}": {
                "get": {
                    "summary": "事件详情（含全程记录与照片）",
                    "parameters": [event_id],
                    "responses": {"200": _ok({"$ref": "#/components/schemas/EventDetail"})}
                    | _error_responses(401, 403, 404),
                }
            },
            "/events/{event_id}/actions/{action}": {
                "post": {
                    "summary": "执行流转操作",
                    "description": "操作名即状态机的转换名：\n" + actions,
                    "parameters": [event_id, _param("action", "path", {"enum": list(TRANSITIONS)})],
                    "requestBody": {"content": _json(_action_inputs())},
                    "responses": {"200": _ok({"$ref": "#/components/schemas/EventDetail"})}
                    | _error_responses(400, 401, 403, 404, 409, 422),
                }
            },
            "/events/{event_id}/attachments": {
                "post": {
                    "summary": "上传照片（同一照片重复上传返回原记录）",
                    "parameters": [event_id],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["file"],
                                    "properties": {
                                        "file": {"type": "string", "contentMediaType": "image/*"},
                                        "kind": {"enum": ["before", "after", "evidence"]},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _ok({"type": "object"}, "新建"),
                        "200": _ok({"type": "object"}, "已存在"),
                    }
                    | _error_responses(401, 403, 404, 409, 422),
                }
            },
            "/attachments/{attachment_id}": {
                "get": {
                    "summary": "照片（thumb=1 取缩略图）",
                    "parameters": [
                        _param("attachment_id", "path", {"type": "integer"}),
                        _param("thumb", "query", {"type": "integer"}),
                    ],
                    "responses": {"200": {"description": "JPEG", "content": {"image/jpeg": {}}}}
                    | _error_responses(401, 403, 404),
                }
            },
            "/stats": {
                "get": {
                    "summary": "统计指标（仅本辖区；口径见 definitions）",
                    "description": "统计期内上报的全部事件（含撤单、不予受理、作废、并案）的"
                    "受理量、办结率、逾期率、按时办结率、结案率、按期结案率、返工率、延期率、"
                    "满意率、平均办结时长等；指标定义唯一，见 gridgov.stats 与响应中的 "
                    "definitions。比率为 0–1 的小数（保留4位），分母为 0 时为 null。",
                    "parameters": [
                        _param("region", "query", {"type": "string"}, "区划代码（须在本辖区内）"),
                        _param(
                            "from",
                            "query",
                            {"type": "string", "format": "date"},
                            "开始日期（含），上海时间；缺省为截止日前29天",
                        ),
                        _param(
                            "to",
                            "query",
                            {"type": "string", "format": "date"},
                            "截止日期（含），上海时间；缺省为今天",
                        ),
                        _param(
                            "group_by",
                            "query",
                            {"enum": list(DIMENSIONS)},
                            "分组（排名按受理量降序；日、周、月按时间顺序）",
                        ),
                        _param("matter", "query", {"type": "string"}, "事项代码前缀"),
                        _param("source", "query", {"enum": [s.value for s in Source]}),
                    ],
                    "responses": {
                        "200": _ok(
                            {
                                "type": "object",
                                "properties": {
                                    "totals": {"type": "object"},
                                    "groups": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "key": {},
                                                "name": {"type": "string"},
                                            },
                                        },
                                    },
                                    "definitions": {"type": "object"},
                                    "filter": {"type": "object"},
                                },
                            }
                        )
                    }
                    | _error_responses(401, 403, 422),
                }
            },
            **_unplaced_paths(),
            **_map_paths(),
            "/health": {
                "get": {
                    "summary": "健康检查",
                    "security": [],
                    "responses": {"200": _ok({"type": "object"})},
                }
            },
        },
    }
