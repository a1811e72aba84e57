"""The web front in a real browser (Debian's Chromium, driven by Playwright through ``executable_path``), in
the embedded and the local distributed mode (docs/web.md): a customer buys something and watches it get paid,
a declined payment cancels the order with the reason, a double-clicked "Place order" makes one order, an
admin's new product is found by customers, stock at zero is shown and refused, the console shows an order's
events and re-drives a dead letter, customers are refused the admin and the console, and what users typed
renders as text. Screenshots of the main pages go to ``test-output/screenshots/<mode>/`` (not committed).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import tempfile
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import pytest
from mart_common.bus.browse import decode_event
from mart_common.messaging import BusMessage
from mart_common.polling import wait_until_sync
from mart_testkit.browser import CHROMIUM, CHROMIUM_FLAGS
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from mart_cli import dist
from mart_cli.ops import build_bus

from .conftest import REPO_ROOT, Mart

SHOTS = REPO_ROOT / "test-output" / "screenshots"
WAIT_MS = 60_000  # every wait ends on a positive signal; generous for a busy CI machine
ADDRESS = {"line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"}

T = TypeVar("T")

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(600)]


@pytest.fixture(
    scope="module",
    params=[
        "embedded",
        pytest.param("distributed", marks=[pytest.mark.distributed, pytest.mark.postgres, pytest.mark.kafka]),
    ],
)
def shop(request: pytest.FixtureRequest) -> Mart:
    return request.getfixturevalue(f"{request.param}_mart")


@pytest.fixture(scope="module")
def chromium(shop: Mart) -> Iterator[Browser]:
    """Started once the mart runs: Playwright's sync API keeps an event loop running in this thread, and
    the marts' own set-up runs asyncio."""
    assert CHROMIUM.exists(), "Debian's chromium is needed (scripts/infra/tools.sh installs it)"
    with tempfile.TemporaryDirectory(prefix="mart-playwright-") as profile, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_FLAGS, f"--disk-cache-dir={profile}"]
        )
        try:
            yield browser
        finally:
            browser.close()


class Visit:
    """One person at the shop: a browser context of their own (cookies), its pages, its screenshots."""

    def __init__(self, browser: Browser, mart: Mart, who: str) -> None:
        self.mart = mart
        self.context: BrowserContext = browser.new_context(
            base_url=mart.gateway_url, viewport={"width": 1280, "height": 900}
        )
        self.context.set_default_timeout(WAIT_MS)
        self.page: Page = self.context.new_page()
        self.dialogs: list[str] = []
        self.page.on("dialog", self._dialog)
        self.shots = SHOTS / mart.kind
        self.who = who

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        # our confirmations ("Cancel this order?") are accepted; the tests read what was asked
        dialog.accept()

    def shot(self, name: str) -> None:
        self.shots.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def sign_in(self, email: str, password: str, then: str = "/") -> None:
        self.page.goto(f"/login?next={then}")
        self.page.get_by_label("Email").fill(email)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.get_by_role("button", name="Sign out")).to_be_visible()

    def mark_page(self) -> None:
        """A marker in the page's JS world: gone if the page reloads or navigates."""
        self.page.evaluate("window.__sameDocument = 'yes'")

    def same_page(self) -> bool:
        return self.page.evaluate("window.__sameDocument") == "yes"

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(chromium: Browser, shop: Mart, request: pytest.FixtureRequest) -> Iterator[Any]:
    opened: list[Visit] = []

    def open_visit(who: str) -> Visit:
        v = Visit(chromium, shop, who)
        opened.append(v)
        return v

    yield open_visit
    failed = getattr(request.node, "rep_call", None)
    for v in opened:
        if failed is not None and failed.failed:  # what each person saw when the test failed
            v.shots = SHOTS / shop.kind / "failed"
            v.shot(f"{request.node.name}-{v.who}-{opened.index(v)}")
        v.close()


# --- helpers through the APIs (setting up what a test needs, never asserting through them alone) --------


def admin_headers(mart: Mart) -> dict[str, str]:
    answer = httpx.post(
        f"{mart.gateway_url}/user-service/auth/login",
        data={"username": mart.creds.admin.email, "password": mart.creds.admin.password},
        timeout=30,
    )
    answer.raise_for_status()
    return {"authorization": f"Bearer {answer.json()['access_token']}"}


def new_product(mart: Mart, *, stock: int, name: str | None = None, price_cents: int = 1850) -> dict:
    headers = admin_headers(mart)
    with httpx.Client(base_url=mart.gateway_url, headers=headers, timeout=30) as api:
        answer = api.post(
            "/product-service/products",
            json={
                "sku": f"B-{uuid.uuid4().hex[:10]}",
                "name": name or f"Teapot {uuid.uuid4().hex[:6]}",
                "description": "cast iron",
                "price_cents": price_cents,
                "currency": "EUR",
            },
        )
        assert answer.status_code == 201, answer.text
        product = answer.json()
        # inventory learns products from ProductCreated
        wait_until_sync(
            lambda: api.get(f"/inventory-service/stock/{product['id']}").status_code == 200, timeout=60
        )
        if stock:
            adjusted = api.post(
                f"/inventory-service/stock/{product['id']}/adjustments",
                json={"delta": stock, "reason": "test"},
            )
            assert adjusted.status_code == 201, adjusted.text
    return product


def orders_total(mart: Mart, email: str, password: str) -> int:
    token = httpx.post(
        f"{mart.gateway_url}/user-service/auth/login",
        data={"username": email, "password": password},
        timeout=30,
    ).json()["access_token"]
    answer = httpx.get(
        f"{mart.gateway_url}/order-service/orders", headers={"authorization": f"Bearer {token}"}, timeout=30
    )
    return answer.json()["total"]


def new_customer(v: Visit) -> tuple[str, str]:
    email, password = f"web-{uuid.uuid4().hex[:10]}@example.com", "correct horse battery staple"
    v.page.goto("/register")
    v.page.get_by_label("Full name").fill("Grace Browser")
    v.page.get_by_label("Email").fill(email)
    v.page.get_by_label("Password").fill(password)
    v.page.get_by_role("button", name="Create account").click()
    expect(v.page.get_by_role("status").filter(has_text="Your account is ready.")).to_be_visible()
    return email, password


def to_checkout(v: Visit, product: dict, quantity: int = 1) -> None:
    v.page.goto(f"/products/{product['id']}")
    v.page.get_by_label("Quantity").fill(str(quantity))
    v.page.get_by_role("button", name="Add to cart").click()
    expect(v.page.get_by_text("Added to your cart.")).to_be_visible()
    v.page.goto("/checkout")
    for field, value in ADDRESS.items():
        v.page.locator(f"#f-{field}").fill(value)


def place_order(v: Visit) -> str:
    v.page.get_by_role("button", name="Place order").click()
    v.page.wait_for_url(re.compile(r"/orders/[0-9a-f-]{36}$"))
    return v.page.url.rsplit("/", 1)[1]


def status_of(v: Visit) -> Any:
    return v.page.locator('[data-testid="order-status"] .now .status')


# --- the journeys ---------------------------------------------------------------------------------------


def test_buy_something_and_watch_it_get_paid(visit: Any, shop: Mart) -> None:
    v = visit("customer")
    product = new_product(shop, stock=5, name=f"Copper kettle {uuid.uuid4().hex[:6]}")
    v.page.goto("/")
    expect(v.page.get_by_role("heading", name="Online Mart")).to_be_visible()
    v.shot("01-home")
    v.page.get_by_label("Search products").fill(product["name"].split()[-1])
    v.page.get_by_role("button", name="Search", exact=True).click()
    expect(v.page.get_by_test_id("result-count")).to_contain_text("1 product")
    v.shot("02-catalog")
    v.page.get_by_role("link", name=product["name"]).click()
    expect(v.page.get_by_test_id("availability")).to_have_text("5 left")
    v.shot("03-product")
    v.page.get_by_role("button", name="Add to cart").click()
    expect(v.page.get_by_test_id("cart-count")).to_have_text("1")
    v.page.get_by_test_id("cart-link").click()
    expect(v.page.get_by_test_id("cart-line")).to_contain_text(product["name"])
    v.shot("04-cart")
    v.page.get_by_role("link", name="Check out").click()
    # not signed in yet: the sign-in page, then back to checkout with the cart kept
    v.page.get_by_label("Email").fill(shop.creds.customer.email)
    v.page.get_by_label("Password").fill(shop.creds.customer.password)
    v.page.get_by_role("button", name="Sign in").click()
    v.page.wait_for_url(re.compile(r"/checkout$"))
    expect(v.page.get_by_text(f"1 × {product['name']}")).to_be_visible()
    for field, value in ADDRESS.items():
        v.page.locator(f"#f-{field}").fill(value)
    v.shot("05-checkout")
    place_order(v)
    pay = v.page.get_by_role("button", name="Pay", exact=True)
    expect(pay).to_be_visible()  # AWAITING_PAYMENT: on the first render, or pushed to the open page
    expect(status_of(v)).to_have_text("Awaiting payment")
    v.mark_page()
    pay.click()
    expect(status_of(v)).to_have_text("Paid")  # -> PAID, pushed to the open page ...
    assert v.same_page(), "... without a reload or a navigation"
    expect(v.page.get_by_test_id("payment-status")).to_have_text("Paid")
    v.shot("06-order-paid")
    history = v.page.locator(".history li").all_inner_texts()
    assert [h.split(" — ")[1].split(" (")[0] for h in history] == [
        "Checking stock",
        "Awaiting payment",
        "Paid",
    ]
    # cancel: a paid order shows its refund
    v.page.get_by_role("button", name="Cancel order").click()
    expect(status_of(v)).to_have_text("Cancelled")
    expect(v.page.get_by_test_id("refund")).to_be_visible()
    assert v.dialogs == ["Cancel this order? You will be refunded."]
    v.page.goto("/notifications")
    expect(v.page.get_by_test_id("notification").first).to_be_visible()
    v.shot("07-notifications")


def test_a_declined_payment_cancels_the_order_with_the_reason(visit: Any, shop: Mart) -> None:
    v = visit("customer")
    new_customer(v)
    to_checkout(v, new_product(shop, stock=2))
    place_order(v)
    v.page.get_by_role("button", name="Decline").click()
    expect(status_of(v)).to_have_text("Cancelled")
    expect(v.page.get_by_test_id("order-reason")).to_have_text(re.compile(r"^Why: payment failed"))
    v.shot("08-order-declined")


def test_a_double_clicked_place_order_makes_one_order(visit: Any, shop: Mart) -> None:
    v = visit("customer")
    email, password = new_customer(v)
    to_checkout(v, new_product(shop, stock=5), quantity=2)
    form = {
        name: v.page.locator(f'form.checkout [name="{name}"]').input_value()
        for name in ("csrf_token", "idempotency_key", *ADDRESS)
    }
    v.page.get_by_role("button", name="Place order").dblclick()
    v.page.wait_for_url(re.compile(r"/orders/[0-9a-f-]{36}$"))
    first = v.page.url
    # the same form sent again (a retry, the back button): answered with the same order
    again = v.context.request.post("/checkout", form=form, max_redirects=0)
    assert again.status == 303 and again.headers["location"] == first.removeprefix(shop.gateway_url)
    assert orders_total(shop, email, password) == 1


def test_an_admins_new_product_is_found_and_bought_by_customers(visit: Any, shop: Mart) -> None:
    admin = visit("admin")
    admin.sign_in(shop.creds.admin.email, shop.creds.admin.password, then="/admin")
    name = f"Linen apron {uuid.uuid4().hex[:6]}"
    admin.page.goto("/admin/products/new")
    admin.page.get_by_label("SKU").fill(f"AP-{uuid.uuid4().hex[:8]}")
    admin.page.get_by_label("Name").fill(name)
    admin.page.get_by_label("Description").fill("Stone-washed linen.")
    admin.page.get_by_label("Price (e.g. 12.50)").fill("24.50")
    admin.page.get_by_role("button", name="Create product").click()
    expect(admin.page.get_by_text(f"{name} is in the catalog.")).to_be_visible()
    admin.shot("10-admin-product")
    admin.page.get_by_role("link", name="Stock and audit trail").click()
    admin.page.get_by_label("Change (e.g. 10 or -3)").fill("7")
    admin.page.get_by_label("Reason").fill("first delivery")
    admin.page.get_by_role("button", name="Adjust stock").click()
    expect(admin.page.get_by_test_id("stock-levels")).to_contain_text("available 7")
    expect(admin.page.get_by_test_id("audit-row").first).to_contain_text("first delivery")
    admin.shot("11-admin-stock")

    customer = visit("customer")
    customer.page.goto("/products?q=" + name.split()[-1])
    customer.page.get_by_role("link", name=name).click()
    expect(customer.page.get_by_text("€24.50")).to_be_visible()
    expect(customer.page.get_by_test_id("availability")).to_have_text("In stock")


def test_stock_at_zero_is_out_of_stock_and_checkout_refuses_it(visit: Any, shop: Mart) -> None:
    product = new_product(shop, stock=1)
    customer = visit("customer")
    new_customer(customer)
    to_checkout(customer, product)
    admin = visit("admin")
    admin.sign_in(shop.creds.admin.email, shop.creds.admin.password)
    admin.page.goto(f"/admin/stock/{product['id']}")
    admin.page.get_by_label("Change (e.g. 10 or -3)").fill("-1")
    admin.page.get_by_role("button", name="Adjust stock").click()
    expect(admin.page.get_by_test_id("stock-levels")).to_contain_text("available 0")

    customer.page.goto(f"/products/{product['id']}")
    expect(customer.page.get_by_test_id("availability")).to_have_text("Out of stock")
    expect(customer.page.get_by_role("button", name="Add to cart")).to_be_disabled()
    customer.page.goto("/checkout")
    expect(customer.page.get_by_role("alert")).to_have_text(f"{product['name']} is out of stock.")
    expect(customer.page.get_by_role("button", name="Place order")).to_be_disabled()
    customer.shot("09-checkout-out-of-stock")


def off_the_browsers_loop(coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``coroutine()`` to completion in a thread of its own (Playwright's sync API keeps an event loop
    running in the test's thread)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine()).result()


def poison(mart: Mart) -> str:
    """An OrderPlaced whose payload is not Protobuf, on the mart's own bus: inventory dead-letters it."""
    cfg = dist.DistConfig.load(mart.data_dir) if mart.kind == "distributed" else None
    bus = build_bus("kafka" if cfg else "inprocess", mart.data_dir, cfg)
    event_id = str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    headers = {
        "ce_id": event_id,
        "ce_type": "mart.orders.v1.OrderPlaced",
        "ce_source": "browser-test",
        "ce_time": now,
        "ce_specversion": "1.0",
        "content-type": "application/protobuf",
    }

    async def go() -> None:
        await bus.start()
        try:
            await bus.publish(
                BusMessage(
                    "mart.orders.v1",
                    str(uuid.uuid4()),
                    b"\xff not protobuf",
                    tuple((k, v.encode()) for k, v in headers.items()),
                )
            )
        finally:
            await bus.stop()

    off_the_browsers_loop(go)
    return event_id


def copies_on_topic(mart: Mart, event_id: str) -> int:
    cfg = dist.DistConfig.load(mart.data_dir) if mart.kind == "distributed" else None
    bus = build_bus("kafka" if cfg else "inprocess", mart.data_dir, cfg)

    async def go() -> int:
        await bus.start()
        try:
            records = await bus.read_topic("mart.orders.v1")
        finally:
            await bus.stop()
        return sum(decode_event(r).headers.get("ce_id") == event_id for r in records)

    return off_the_browsers_loop(go)


def test_the_console_shows_an_orders_saga_and_redrives_a_dead_letter(visit: Any, shop: Mart) -> None:
    customer = visit("customer")
    new_customer(customer)
    to_checkout(customer, new_product(shop, stock=3))
    order_id = place_order(customer)
    customer.page.get_by_role("button", name="Pay", exact=True).click()
    expect(status_of(customer)).to_have_text("Paid")

    admin = visit("admin")
    admin.sign_in(shop.creds.admin.email, shop.creds.admin.password, then="/console")
    expect(admin.page.get_by_test_id("topics")).to_contain_text("mart.orders.v1")
    expect(admin.page.get_by_test_id("health")).to_contain_text("order-service")
    assert "no" not in admin.page.get_by_test_id("health").locator("td:nth-child(4)").all_inner_texts()
    admin.shot("12-console")
    admin.page.get_by_label("Order id").fill(order_id)
    admin.page.get_by_role("button", name="Show saga").click()
    types = admin.page.get_by_test_id("event-type")
    expect(types.filter(has_text="OrderPaid")).to_have_count(1)
    seen = types.all_inner_texts()
    for expected in (
        "OrderPlaced",
        "StockReserved",
        "OrderAwaitingPayment",
        "PaymentRequested",
        "PaymentSucceeded",
    ):
        assert expected in seen, seen
    assert seen.index("OrderPlaced") < seen.index("StockReserved") < seen.index("PaymentSucceeded")
    expect(admin.page.locator('[data-kind="delivery"]').first).to_be_visible()
    admin.shot("13-console-saga")

    # the live stream: an event published after the page opened appears on it
    admin.page.goto("/console/events?topic=mart.orders.v1")
    expect(admin.page.get_by_text("Following: new events appear at the top.")).to_be_visible()
    to_checkout(customer, new_product(shop, stock=1))
    later = place_order(customer)
    expect(admin.page.get_by_test_id("event-row").filter(has_text=later).first).to_be_visible()
    admin.shot("14-console-events")

    # a dead letter, then its re-drive
    event_id = poison(shop)
    admin.page.goto("/console/dead-letters/inventory-service")
    for _ in range(120):
        if admin.page.get_by_test_id("dead-letter").filter(has_text="OrderPlaced").count():
            break
        admin.page.wait_for_timeout(500)
        admin.page.reload()
    letter = admin.page.get_by_test_id("dead-letter").filter(has_text="OrderPlaced").last
    expect(letter).to_contain_text("payload does not parse")
    waiting = int(
        re.search(r"(\d+) not re-driven", admin.page.get_by_test_id("dlq-counts").inner_text()).group(1)
    )
    assert waiting >= 1
    admin.shot("15-console-dead-letters")
    admin.page.get_by_role("button", name="Re-drive").click()
    expect(admin.page.get_by_role("status").filter(has_text="Re-drove")).to_have_text(
        f"Re-drove {waiting} dead letter{'s' if waiting != 1 else ''} of inventory-service onto their topics."
    )
    assert copies_on_topic(shop, event_id) == 2, "re-published onto mart.orders.v1"


def test_customers_are_refused_the_admin_and_the_console(visit: Any, shop: Mart) -> None:
    v = visit("customer")
    v.sign_in(shop.creds.customer.email, shop.creds.customer.password)
    for path in ("/admin", "/admin/users", "/console", "/console/events"):
        response = v.page.goto(path)
        assert response is not None and response.status == 403, path
        expect(v.page.get_by_test_id("forbidden")).to_be_visible()
        expect(v.page.locator("table")).to_have_count(0)
    expect(v.page.get_by_role("link", name="Admin")).to_have_count(0)


def test_what_users_typed_renders_as_text(visit: Any, shop: Mart) -> None:
    script = f"<script>alert('{uuid.uuid4().hex[:4]}')</script>"
    product = new_product(shop, stock=2, name=script)
    v = visit("customer")
    v.sign_in(shop.creds.customer.email, shop.creds.customer.password)
    v.page.goto(f"/products/{product['id']}")
    expect(v.page.get_by_role("heading", name=script)).to_be_visible()
    v.page.get_by_label("4 stars").check()
    v.page.get_by_label("Your review").fill('<img src=x onerror="alert(2)"><b>bold?</b>')
    v.page.get_by_role("button", name="Post review").click()
    expect(v.page.locator(".review .comment").first).to_have_text(
        '<img src=x onerror="alert(2)"><b>bold?</b>'
    )
    v.page.goto("/products?q=script")
    expect(v.page.get_by_role("link", name=script)).to_be_visible()
    assert v.page.locator("img[src=x], .review b").count() == 0
    assert v.dialogs == [], f"a script ran: {v.dialogs}"


UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
    .filter((el) => el.type !== 'hidden')
    .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
    .map((el) => el.outerHTML)"""


def test_accessible_basics_labels_keyboard_checkout_and_a_phone_width(visit: Any, shop: Mart) -> None:
    v = visit("customer")
    new_customer(v)
    product = new_product(shop, stock=4)
    pages = ["/", "/products", f"/products/{product['id']}", "/cart", "/account", "/login", "/register"]
    for path in pages:
        v.page.goto(path)
        assert v.page.evaluate(UNLABELLED) == [], f"form fields without a label on {path}"
    # a checkout with the keyboard only: Tab to each field, type, Enter
    v.page.goto(f"/products/{product['id']}")
    v.page.get_by_label("Quantity").focus()
    v.page.keyboard.press("Tab")
    v.page.keyboard.press("Enter")  # "Add to cart"
    expect(v.page.get_by_test_id("cart-count")).to_have_text("1")
    v.page.goto("/checkout")
    v.page.get_by_label("Full name").focus()
    for field in ("line1", "line2", "city", "postal_code", "country"):
        v.page.keyboard.press("Tab")
        focused = v.page.evaluate("document.activeElement.name")
        assert focused == field, (focused, field)
        v.page.keyboard.type(ADDRESS.get(field, ""))
    v.page.keyboard.press("Tab")
    assert v.page.evaluate("document.activeElement.textContent") == "Place order"
    v.page.keyboard.press("Enter")
    v.page.wait_for_url(re.compile(r"/orders/[0-9a-f-]{36}$"))
    expect(status_of(v)).to_be_visible()
    # a phone's width: nothing wider than the screen
    v.page.set_viewport_size({"width": 390, "height": 844})
    for path in ["/", "/products", f"/products/{product['id']}", "/orders", v.page.url]:
        v.page.goto(path)
        wider = v.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wider <= 0, f"{path} scrolls sideways by {wider}px on a phone"
    v.shot("16-phone-order")
