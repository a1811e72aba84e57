"""/docs, /redoc and their assets come from the service itself, with or without the gateway prefix (a
gateway that strips it sends paths without, the page asks with it); docs/looking-around.md."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from mart_common.docs import install_docs
from mart_common.problems import install_problem_handlers

PREFIX = "/order-service"


def app_behind(prefix: str) -> FastAPI:
    app = FastAPI(title="Orders", root_path=prefix, docs_url=None, redoc_url=None)
    install_docs(app)
    install_problem_handlers(app)
    return app


async def test_docs_pages_point_at_local_assets_under_the_prefix() -> None:
    transport = httpx.ASGITransport(app=app_behind(PREFIX))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert f'src="{PREFIX}/docs-assets/swagger-ui-bundle.js"' in page.text
        assert f"url: '{PREFIX}/openapi.json'" in page.text
        assert "cdn." not in page.text  # nothing from a CDN
        redoc = await client.get("/redoc")
        assert redoc.status_code == 200 and f"{PREFIX}/docs-assets/redoc.standalone.js" in redoc.text
        assert "fonts.googleapis" not in redoc.text

        for path in (f"{PREFIX}/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui-bundle.js"):
            asset = await client.get(path)
            assert asset.status_code == 200, path
            assert asset.headers["content-type"].startswith("text/javascript")
            assert b"SwaggerUIBundle" in asset.content
        css = await client.get("/docs-assets/swagger-ui.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")

        missing = await client.get("/docs-assets/..%2Fcore.py")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
