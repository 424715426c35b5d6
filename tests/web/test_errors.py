"""HTTP errors speak Chinese: an HTML page for pages, a JSON body for the API."""

from __future__ import annotations

from flask.testing import FlaskClient


def test_unknown_page_is_a_chinese_html_page(client: FlaskClient) -> None:
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "页面或资源不存在" in response.get_data(as_text=True)


def test_unknown_api_path_is_json(client: FlaskClient) -> None:
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.get_json()["error"] == {"code": "not_found", "message": "页面或资源不存在"}


def test_wrong_method_on_api_is_json_405(client: FlaskClient) -> None:
    response = client.delete("/api/v1/health")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
