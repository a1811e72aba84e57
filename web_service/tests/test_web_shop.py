"""The shop's rules as a customer meets them: one order per checkout form however often it is sent, stock
checked before an order is placed, a cart that survives signing in, the admin's products in the catalog,
and a service that is down costing only the pages that need it."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from mart_testkit.fixtures import eventually
from web_service.main import create_app
from web_service.settings import WebSettings

from .conftest import BASE, Browser, Mart, api_token

pytestmark = pytest.mark.timeout(120)

ADDRESS = {
    "name": "Ada Buyer",
    "line1": "1 Main St",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}


async def _admin_api(mart: Mart) -> httpx.AsyncClient:
    token = await api_token(mart, mart.creds.admin.email, mart.creds.admin.password)
    return httpx.AsyncClient(
        transport=mart.transport(), base_url=BASE, headers={"authorization": f"Bearer {token}"}
    )


async def _new_product(mart: Mart, *, stock: int, name: str | None = None) -> dict:
    """A product made through the APIs, with ``stock`` units once inventory has learnt it."""
    async with await _admin_api(mart) as api:
        created = await api.post(
            "/product-service/products",
            json={
                "sku": f"T-{uuid.uuid4().hex[:10]}",
                "name": name or f"Test kettle {uuid.uuid4().hex[:6]}",
                "description": "for tests",
                "price_cents": 2500,
                "currency": "USD",
            },
        )
        assert created.status_code == 201, created.text
        product = created.json()

        async def known() -> bool:
            return (await api.get(f"/inventory-service/stock/{product['id']}")).status_code == 200

        await eventually(known, message="inventory learns the product")
        if stock:
            adjusted = await api.post(
                f"/inventory-service/stock/{product['id']}/adjustments",
                json={"delta": stock, "reason": "test"},
            )
            assert adjusted.status_code == 201, adjusted.text
    return product


async def _orders_of_customer(mart: Mart) -> int:
    token = await api_token(mart, mart.creds.customer.email, mart.creds.customer.password)
    async with httpx.AsyncClient(transport=mart.transport(), base_url=BASE) as http:
        answer = await http.get("/order-service/orders", headers={"authorization": f"Bearer {token}"})
        return answer.json()["total"]


async def _add(b: Browser, product_id: str, quantity: int = 1) -> None:
    answer = await b.post("/cart", {"product_id": product_id, "quantity": str(quantity), "mode": "add"})
    assert answer.status_code == 303


def _checkout_key(page: str) -> str:
    return re.search(r'name="idempotency_key" value="([^"]+)"', page).group(1)


async def _checkout_form(b: Browser) -> dict[str, str]:
    """The checkout form as the page renders it (its CSRF token and Idempotency-Key), filled in."""
    page = (await b.get("/checkout")).text
    return {"csrf_token": await b.csrf_token("/checkout"), "idempotency_key": _checkout_key(page), **ADDRESS}


async def test_one_order_however_often_the_checkout_form_is_sent(mart: Mart, browser) -> None:
    product = await _new_product(mart, stock=10)
    b = await (await browser()).as_customer()
    await _add(b, product["id"], 2)
    form = await _checkout_form(b)
    before = await _orders_of_customer(mart)

    first = await b.http.post("/checkout", data=form)
    assert first.status_code == 303 and first.headers["location"].startswith("/orders/")
    # sent again once the cart was emptied (the back button, a retry): the same order, not an error
    again = await b.http.post("/checkout", data=form)
    assert again.headers.get("location") == first.headers["location"]
    assert await _orders_of_customer(mart) == before + 1

    # two submissions in flight at once, before either answer emptied the cart: the API's Idempotency-Key
    other = await (await browser()).as_customer()
    await _add(other, product["id"], 1)
    form = await _checkout_form(other)
    cookies = dict(other.http.cookies)
    twin = httpx.AsyncClient(transport=mart.transport(), base_url=BASE, cookies=cookies)
    one, two = await other.http.post("/checkout", data=form), await twin.post("/checkout", data=form)
    await twin.aclose()
    assert one.headers["location"] == two.headers["location"]
    assert await _orders_of_customer(mart) == before + 2


async def test_out_of_stock_is_shown_and_checkout_refuses_it(mart: Mart, browser) -> None:
    product = await _new_product(mart, stock=1)
    b = await (await browser()).as_customer()
    page = await b.get(f"/products/{product['id']}")
    assert re.search(r'data-testid="availability">\s*<strong class="low">1 left</strong>', page.text)
    await _add(b, product["id"], 1)
    async with await _admin_api(mart) as api:  # the last unit goes before this customer checks out
        taken = await api.post(
            f"/inventory-service/stock/{product['id']}/adjustments", json={"delta": -1, "reason": "damaged"}
        )
        assert taken.status_code == 201
    page = await b.get(f"/products/{product['id']}")
    assert "Out of stock" in page.text
    assert re.search(r'<button type="submit" disabled aria-disabled="true">Add to cart</button>', page.text)
    checkout = await b.get("/checkout")
    assert f"{product['name']} is out of stock." in checkout.text
    assert 'class="primary" disabled' in checkout.text
    before = await _orders_of_customer(mart)
    refused = await b.http.post("/checkout", data=await _checkout_form(b))
    assert refused.status_code == 422 and "is out of stock" in refused.text
    assert await _orders_of_customer(mart) == before


async def test_the_cart_survives_signing_in(mart: Mart, browser) -> None:
    product = await _new_product(mart, stock=5)
    b = await browser()
    await _add(b, product["id"], 3)
    assert 'data-testid="cart-count">3<' in (await b.get("/cart")).text
    await b.sign_in(mart.creds.customer.email, mart.creds.customer.password)
    cart = await b.get("/cart")
    assert product["name"] in cart.text and 'value="3"' in cart.text


async def test_an_admins_new_product_is_found_by_customers(mart: Mart, browser) -> None:
    admin = await (await browser()).as_admin()
    name = f"Walnut chopping board {uuid.uuid4().hex[:6]}"
    created = await admin.post(
        "/admin/products",
        {
            "sku": f"WB-{uuid.uuid4().hex[:8]}",
            "name": name,
            "description": "oiled",
            "price": "39.90",
            "currency": "EUR",
            "category_id": "",
        },
        page="/admin/products/new",
    )
    assert created.status_code == 303, created.text
    edit = await admin.get(created.headers["location"])
    assert name in edit.text and 'value="39.90"' in edit.text
    customer = await browser()
    found = await customer.get("/products", params={"q": name.split()[-1]})
    assert name in found.text and "€39.90" in found.text
    refused = await admin.post(
        "/admin/products",
        {"sku": "", "name": "x", "price": "-1", "currency": "EUR"},
        page="/admin/products/new",
    )
    assert refused.status_code == 422 and "A positive amount" in refused.text


async def test_decline_cancels_the_order_with_the_reason_in_words(mart: Mart, browser) -> None:
    product = await _new_product(mart, stock=3)
    b = await (await browser()).as_customer()
    await _add(b, product["id"], 1)
    placed = await b.http.post("/checkout", data=await _checkout_form(b))
    order_path = placed.headers["location"]

    async def pay_buttons() -> bool:
        return "Decline</button>" in (await b.get(order_path)).text

    await eventually(pay_buttons, message="the order waits for its payment")
    declined = await b.post(f"{order_path}/pay", {"outcome": "failed"}, page=order_path)
    assert declined.status_code == 303

    async def cancelled() -> str:
        text = (await b.get(order_path)).text
        return text if 'data-status="CANCELLED"' in text else ""

    text = await eventually(cancelled, message="the declined order is cancelled")
    assert re.search(r'data-testid="order-reason">Why: payment failed', text), text


class Outage(httpx.AsyncBaseTransport):
    """The gateway with some services down: their connections are refused."""

    def __init__(self, inner: httpx.AsyncBaseTransport, down: set[str]) -> None:
        self.inner = inner
        self.down = down

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.split("/")[1] in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def shop_with_outage(mart: Mart) -> AsyncIterator[tuple[httpx.AsyncClient, set[str]]]:
    """A second web front on the same mart whose view of the services can be cut, one by one."""
    down: set[str] = set()
    settings = WebSettings(data_dir=mart.emb.data_dir, gateway_url=BASE, log_json=False)
    app = create_app(settings, bus=mart.emb.bus, transport=Outage(mart.transport(), down))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield client, down


async def test_a_service_that_is_down_costs_only_the_pages_that_need_it(mart: Mart, shop_with_outage) -> None:
    client, down = shop_with_outage
    product = await _new_product(mart, stock=4)
    assert (await client.get(f"/products/{product['id']}")).status_code == 200

    down.add("inventory-service")
    page = await client.get(f"/products/{product['id']}")
    assert page.status_code == 200 and product["name"] in page.text
    assert "Availability cannot be checked right now." in page.text

    down.add("product-service")
    for path in ("/", "/products", f"/products/{product['id']}"):
        page = await client.get(path)
        assert page.status_code == 503, path
        assert "the catalog cannot be reached right now" in page.text, path
    assert (await client.get("/login")).status_code == 200  # the rest of the site keeps working
    assert (await client.get("/cart")).status_code == 200

    down.clear()
    assert (await client.get("/products")).status_code == 200


async def test_late_answers_never_write_older_state_back(mart: Mart, browser) -> None:
    """The session lives in the cookie: an answer to a request sent with an older cookie (a stylesheet, an
    event stream, a page) must not write that older session back over a newer one (the emptied cart)."""
    product = await _new_product(mart, stock=5)
    b = await (await browser()).as_customer()
    await _add(b, product["id"], 1)
    with_cart = dict(b.http.cookies)
    placed = await b.http.post("/checkout", data=await _checkout_form(b))
    assert placed.status_code == 303 and "set-cookie" in placed.headers  # the cart emptied
    async with httpx.AsyncClient(transport=mart.transport(), base_url=BASE, cookies=with_cart) as late:
        for path in (
            "/static/app.css",
            "/products",
            f"/products/{product['id']}",
            placed.headers["location"],
        ):
            answer = await late.get(path)
            assert answer.status_code == 200, path
            written = {c.split("=", 1)[0] for c in answer.headers.get_list("set-cookie")}
            assert written <= {"mart_flash"}, (path, written)  # at most the flash message it showed
    assert 'data-testid="cart-line"' not in (await b.get("/cart")).text


class MoreThanTheWindow(httpx.AsyncBaseTransport):
    """The catalog's text searches answered as when more products matched than the search considers."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        answer = await self.inner.handle_async_request(request)
        if request.url.path != "/product-service/products" or "q" not in request.url.params:
            return answer
        await answer.aread()
        page = {**answer.json(), "total": 1000, "total_exact": False}
        return httpx.Response(answer.status_code, json=page)


async def test_a_search_that_matched_more_than_it_counted_says_so(mart: Mart) -> None:
    product = await _new_product(mart, stock=1, name=f"Windowed {uuid.uuid4().hex[:8]}")
    settings = WebSettings(data_dir=mart.emb.data_dir, gateway_url=BASE, log_json=False)
    app = create_app(settings, bus=mart.emb.bus, transport=MoreThanTheWindow(mart.transport()))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client,
    ):
        page = await client.get("/products", params={"q": product["name"]})
        assert page.status_code == 200
        count = re.search(r'data-testid="result-count">([^<]*)<', page.text)
        assert count and count.group(1).startswith("1,000+ products matching"), count
        assert "of 1,000+</span>" in page.text  # the pager
        listing = await client.get("/products")  # no text: the exact count, as ever
        assert re.search(r'data-testid="result-count">\d+ products?<', listing.text), listing.text
