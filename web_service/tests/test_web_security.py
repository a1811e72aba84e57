"""What the web front promises about security (docs/web.md, "Sessions and security"): what users typed
renders as text, tokens never reach a page or a URL, every form that changes something needs this browser's
CSRF token, customers never see admin or console pages, and every answer carries the security headers."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest
from starlette.routing import Route
from web_service.bootstrap import ROUTERS

from .conftest import BASE, Mart, api_token

pytestmark = pytest.mark.timeout(120)

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'


async def test_what_users_typed_renders_as_text(mart: Mart, browser) -> None:
    admin_token = await api_token(mart, mart.creds.admin.email, mart.creds.admin.password)
    async with httpx.AsyncClient(transport=mart.transport(), base_url=BASE) as http:
        created = await http.post(
            "/product-service/products",
            json={
                "sku": f"XSS-{uuid.uuid4().hex[:8]}",
                "name": SCRIPT,
                "description": IMG,
                "price_cents": 999,
                "currency": "EUR",
            },
            headers={"authorization": f"Bearer {admin_token}"},
        )
        assert created.status_code == 201, created.text
    product = created.json()
    customer = await (await browser()).as_customer()
    review = await customer.post(
        f"/products/{product['id']}/reviews",
        {"rating": "4", "comment": IMG},
        page=f"/products/{product['id']}",
    )
    assert review.status_code == 303
    admin = await (await browser()).as_admin()
    pages = [
        await customer.get(f"/products/{product['id']}"),
        await customer.get("/products", params={"q": "script"}),
        await customer.get("/products", params={"q": SCRIPT}),  # the query itself is shown back
        await admin.get(f"/admin/products/{product['id']}"),
        await admin.get("/admin/products", params={"q": "script"}),
    ]
    for page in pages:
        assert page.status_code == 200, page.request.url
        body = page.text
        assert SCRIPT not in body and IMG not in body, page.request.url
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0].text  # shown, as text
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in pages[0].text  # the description and the review


async def test_tokens_never_reach_a_page_or_a_url(mart: Mart, browser) -> None:
    b = await browser()
    login = await b.sign_in(mart.creds.customer.email, mart.creds.customer.password)
    cookie = next(c for c in login.headers.get_list("set-cookie") if c.startswith("mart_auth="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    # The session cookies are signed, not encrypted: read the tokens, then look for them everywhere.
    auth = json.loads(base64.b64decode(b.http.cookies["mart_auth"].split(".")[0]))
    tokens = [auth["access"], auth["refresh"]]
    assert all(t.count(".") == 2 for t in tokens)
    for path in ["/", "/products", "/cart", "/account", "/orders", "/notifications", "/checkout"]:
        page = await b.get(path)
        assert page.status_code in (200, 303), path
        for token in tokens:
            for part in token.split("."):
                assert part not in page.text and part not in page.headers.get("location", ""), path


async def test_forms_need_this_browsers_csrf_token(mart: Mart, browser) -> None:
    product = (await (await browser()).get("/products")).text.split('href="/products/', 1)[1].split('"', 1)[0]
    b = await browser()
    other = await browser()
    form = {"product_id": product, "quantity": "1", "mode": "add"}

    refused = await b.http.post("/cart", data=form)  # no token at all
    assert refused.status_code == 403 and 'data-testid="csrf-refused"' in refused.text
    refused = await b.http.post("/cart", data={**form, "csrf_token": await other.csrf_token()})  # another's
    assert refused.status_code == 403
    token = await b.csrf_token()
    cross_site = await b.http.post(
        "/cart", data={**form, "csrf_token": token}, headers={"sec-fetch-site": "cross-site"}
    )
    assert cross_site.status_code == 403
    assert 'data-testid="cart-line"' not in (await b.get("/cart")).text  # nothing of that reached the cart

    accepted = await b.http.post("/cart", data={**form, "csrf_token": token})
    assert accepted.status_code == 303
    assert 'data-testid="cart-line"' in (await b.get("/cart")).text


def _routes(method: str, prefixes: tuple[str, ...] = ("",)) -> list[str]:
    out = []
    for route in (r for router in ROUTERS for r in router.routes):
        if isinstance(route, Route) and method in (route.methods or ()) and route.path.startswith(prefixes):
            out.append(
                route.path.replace("{order_id}", str(uuid.uuid4())).replace("{product_id}", str(uuid.uuid4()))
            )
    return [p.replace("{group}", "order-service").replace("{action}", "ship") for p in out]


async def test_every_form_of_the_web_front_checks_the_csrf_token(mart: Mart, browser) -> None:
    """Not only the forms someone remembered: every POST route the app has."""
    posts = _routes("POST")
    assert len(posts) >= 15, posts
    b = await (await browser()).as_admin()
    for path in posts:
        path = path.replace("{notification_id}", str(uuid.uuid4())).replace("{user_id}", str(uuid.uuid4()))
        path = path.replace("{delivery_id}", str(uuid.uuid4()))
        answer = await b.http.post(path, data={"csrf_token": "forged"})
        assert answer.status_code == 403 and "csrf-refused" in answer.text, path


async def test_customers_get_403_on_every_admin_and_console_page(mart: Mart, browser) -> None:
    pages = [p.replace("{user_id}", str(uuid.uuid4())) for p in _routes("GET", ("/admin", "/console"))]
    assert len(pages) >= 12, pages
    customer = await (await browser()).as_customer()
    anonymous = await browser()
    for path in pages:
        answer = await customer.get(path)
        assert answer.status_code == 403 and 'data-testid="forbidden"' in answer.text, path
        assert "<table" not in answer.text, path  # none of the page's content
        answer = await anonymous.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next="), path
    admin = await (await browser()).as_admin()
    assert (await admin.get("/admin")).status_code == 200
    assert (await admin.get("/console")).status_code == 200


async def test_security_headers_on_every_answer(mart: Mart, browser) -> None:
    b = await browser()
    customer = await (await browser()).as_customer()
    answers = [
        await b.get("/"),
        await b.get("/login"),
        await b.get("/static/app.js"),
        await b.get("/no-such-page"),
        await customer.get("/admin"),
        await b.http.post("/cart", data={}),
    ]
    for answer in answers:
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, answer.request.url
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"
        assert answer.headers.get_list("x-content-type-options") == ["nosniff"]  # once
    assert [a.status_code for a in answers] == [200, 200, 200, 404, 403, 403]
    api = await b.get("/product-service/products")  # the services' own answers, through the gateway
    assert api.headers["x-content-type-options"] == "nosniff"
    assert "<script" not in (await b.get("/")).text.split("</head>", 1)[1], "inline script in the body"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/\tevil",
        "evil.example",
        "",
    ],
)
async def test_signing_in_never_leads_to_another_site(mart: Mart, browser, target: str) -> None:
    b = await browser()
    answer = await b.post(
        "/login",
        {"email": mart.creds.customer.email, "password": mart.creds.customer.password, "next": target},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"


async def test_signing_in_returns_to_the_page_asked_for(mart: Mart, browser) -> None:
    b = await browser()
    page = await b.get("/orders?offset=0")
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/orders%3Foffset%3D0"
    answer = await b.post(
        "/login",
        {
            "email": mart.creds.customer.email,
            "password": mart.creds.customer.password,
            "next": "/orders?offset=0",
        },
    )
    assert answer.headers["location"] == "/orders?offset=0"
