"""The catalog through HTTP on SQLite and PostgreSQL: CRUD, search, sort, pagination, roles, events."""

from __future__ import annotations

import uuid

import pytest
from mart_common.messaging import outbox_table
from sqlalchemy import select

from mart_common import contracts
from product_service import search


async def _events(client) -> list:
    async with client.runtime.db.session() as session:
        rows = (await session.execute(select(outbox_table).order_by(outbox_table.c.seq))).all()
    return [contracts.decode(r.ce_type, r.payload) for r in rows]


async def test_admin_creates_reads_updates_and_archives_a_product(service_client, catalog) -> None:
    async with service_client() as client:
        books = await catalog.category(client, "Books")
        created = await client.post(
            "/products",
            json={
                "sku": "BK-1",
                "name": "Dune",
                "description": "Sand.",
                "price_cents": 1299,
                "currency": "EUR",
                "category_id": books["id"],
            },
            headers=catalog.admin,
        )
        assert created.status_code == 201, created.text
        product = created.json()
        assert product["version"] == 1 and product["archived"] is False
        assert product["rating_avg"] == 0 and product["rating_count"] == 0
        assert (product["currency"], product["category_id"]) == ("EUR", books["id"])

        got = await client.get(f"/products/{product['id']}")
        assert got.status_code == 200 and got.json() == product

        patched = await client.patch(
            f"/products/{product['id']}", json={"price_cents": 1499}, headers=catalog.admin
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["price_cents"] == 1499 and patched.json()["version"] == 2
        assert patched.json()["name"] == "Dune"
        same = await client.patch(
            f"/products/{product['id']}", json={"price_cents": 1499}, headers=catalog.admin
        )
        assert same.json()["version"] == 2  # no change, no new version
        uncategorised = await client.patch(
            f"/products/{product['id']}", json={"category_id": None}, headers=catalog.admin
        )
        assert uncategorised.json()["category_id"] is None and uncategorised.json()["version"] == 3

        assert (await client.delete(f"/products/{product['id']}", headers=catalog.admin)).status_code == 204
        assert (await client.delete(f"/products/{product['id']}", headers=catalog.admin)).status_code == 204
        assert (await client.get(f"/products/{product['id']}")).status_code == 404
        hidden = await client.get(f"/products/{product['id']}", params={"include_archived": "true"})
        assert hidden.status_code == 401
        as_customer = await client.get(
            f"/products/{product['id']}", params={"include_archived": "true"}, headers=catalog.customer()
        )
        assert as_customer.status_code == 403
        seen = await client.get(
            f"/products/{product['id']}", params={"include_archived": "true"}, headers=catalog.admin
        )
        assert seen.status_code == 200 and seen.json()["archived"] is True and seen.json()["version"] == 4
        assert (await client.get("/products")).json()["total"] == 0
        assert (
            await client.patch(f"/products/{product['id']}", json={"name": "X"}, headers=catalog.admin)
        ).status_code == 404

        events = await _events(client)
        kinds = [(type(e).__name__, e.product.version) for e in events]
        assert kinds == [
            ("ProductCreated", 1),
            ("ProductUpdated", 2),
            ("ProductUpdated", 3),
            ("ProductArchived", 4),
        ]
        assert events[0].product.sku == "BK-1" and events[0].product.price_cents == 1299
        assert events[0].product.category_id == books["id"]
        assert events[1].product.price_cents == 1499 and events[1].product.name == "Dune"
        assert events[3].product.archived is True


async def test_customers_get_403_and_anonymous_401_on_writes(service_client, catalog) -> None:
    async with service_client() as client:
        product = await catalog.product(client)
        customer = catalog.customer()
        writes = [
            ("post", "/products", {"sku": "C-1", "name": "n", "price_cents": 1}),
            ("patch", f"/products/{product['id']}", {"name": "n"}),
            ("delete", f"/products/{product['id']}", None),
            ("post", "/categories", {"name": "Toys"}),
        ]
        for method, url, body in writes:
            kwargs = {"json": body} if body is not None else {}
            forbidden = await client.request(method, url, headers=customer, **kwargs)
            assert forbidden.status_code == 403, (method, url, forbidden.text)
            assert forbidden.headers["content-type"].startswith("application/problem+json")
            anonymous = await client.request(method, url, **kwargs)
            assert anonymous.status_code == 401, (method, url)
        assert (await client.get(f"/products/{product['id']}")).json()["version"] == 1


async def test_duplicate_sku_and_unknown_references(service_client, catalog) -> None:
    async with service_client() as client:
        first = await catalog.product(client, sku="DUP-1")
        second = await catalog.product(client, sku="DUP-2")
        dup = await client.post(
            "/products", json={"sku": "DUP-1", "name": "x", "price_cents": 5}, headers=catalog.admin
        )
        assert dup.status_code == 409 and dup.json()["type"].endswith("/sku-taken")
        clash = await client.patch(f"/products/{second['id']}", json={"sku": "DUP-1"}, headers=catalog.admin)
        assert clash.status_code == 409
        unknown_category = await client.post(
            "/products",
            json={"sku": "NEW-1", "name": "x", "price_cents": 5, "category_id": str(uuid.uuid4())},
            headers=catalog.admin,
        )
        assert unknown_category.status_code == 422
        patch_unknown = await client.patch(
            f"/products/{first['id']}", json={"category_id": str(uuid.uuid4())}, headers=catalog.admin
        )
        assert patch_unknown.status_code == 422
        assert (await client.get(f"/products/{uuid.uuid4()}")).status_code == 404
        assert (
            await client.patch(f"/products/{uuid.uuid4()}", json={"name": "x"}, headers=catalog.admin)
        ).status_code == 404
        assert (await client.delete(f"/products/{uuid.uuid4()}", headers=catalog.admin)).status_code == 404
        for url in ("/products/not-a-uuid", "/products/123/reviews"):
            assert (await client.get(url)).status_code == 422
        assert len(await _events(client)) == 2  # only the two creations


@pytest.mark.parametrize(
    "body",
    [
        {"sku": "A-1", "name": "x", "price_cents": 0},
        {"sku": "A-1", "name": "x", "price_cents": -5},
        {"sku": "A-1", "name": "x", "price_cents": "100"},
        {"sku": "A-1", "name": "x", "price_cents": 10.5},
        {"sku": "A-1", "name": "x", "price_cents": 10**30},
        {"sku": "A-1", "name": "x", "price_cents": 100, "currency": "usd"},
        {"sku": "A-1", "name": "x", "price_cents": 100, "currency": "EURO"},
        {"sku": "", "name": "x", "price_cents": 100},
        {"sku": "has space", "name": "x", "price_cents": 100},
        {"sku": "A" * 65, "name": "x", "price_cents": 100},
        {"sku": "A-1", "name": "x" * 201, "price_cents": 100},
        {"sku": "A-1", "name": "x", "description": "d" * 5001, "price_cents": 100},
        {"sku": "A-1", "name": "x", "price_cents": 100, "category_id": "nope"},
        {"sku": "A-1", "name": "x", "price_cents": 100, "version": 7},
        {"sku": ["A-1"], "name": "x", "price_cents": 100},
        {"name": "x", "price_cents": 100},
    ],
)
async def test_bad_product_input_is_422_never_500(service_client, catalog, body) -> None:
    async with service_client() as client:
        response = await client.post("/products", json=body, headers=catalog.admin)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_search_filters_and_sort_orders(service_client, catalog) -> None:
    async with service_client() as client:
        books = await catalog.category(client, "Books")
        toys = await catalog.category(client, "Toys")
        a = await catalog.product(
            client, sku="B-APPLE", name="apple pie cookbook", price_cents=2500, category_id=books["id"]
        )
        b = await catalog.product(
            client,
            sku="T-BALL",
            name="Bouncy Ball",
            price_cents=500,
            category_id=toys["id"],
            description="Red RUBBER ball",
        )
        c = await catalog.product(
            client, sku="B-CHESS", name="Chess Openings", price_cents=4000, category_id=books["id"]
        )
        d = await catalog.product(client, sku="X-DRONE", name="drone 100%", price_cents=99_900)
        gone = await catalog.product(
            client, sku="B-GONE", name="Archived Apple", price_cents=100, category_id=books["id"]
        )
        assert (await client.delete(f"/products/{gone['id']}", headers=catalog.admin)).status_code == 204

        async def ids(**params) -> list[str]:
            response = await client.get("/products", params=params)
            assert response.status_code == 200, response.text
            return [p["id"] for p in response.json()["items"]]

        assert await ids() == [d["id"], c["id"], b["id"], a["id"]]  # default: newest first
        assert await ids(sort="-created_at") == [d["id"], c["id"], b["id"], a["id"]]
        assert await ids(sort="name") == [a["id"], b["id"], c["id"], d["id"]]  # case-insensitive
        assert await ids(sort="-name") == [d["id"], c["id"], b["id"], a["id"]]
        assert await ids(sort="price") == [b["id"], a["id"], c["id"], d["id"]]
        assert await ids(sort="-price") == [d["id"], c["id"], a["id"], b["id"]]

        assert await ids(q="APPLE") == [a["id"]]  # a word of the name, any case; archived one hidden
        assert await ids(q="rubber") == [b["id"]]  # description
        assert await ids(q="b-ch") == [c["id"]]  # the sku's words
        assert await ids(q="100%") == [d["id"]]  # punctuation only separates words
        assert await ids(q="%") == []  # no word, no match
        assert await ids(q="_") == []
        assert await ids(category_id=books["id"], sort="price") == [a["id"], c["id"]]
        assert await ids(category_id=str(uuid.uuid4())) == []
        assert await ids(min_price_cents=2500, sort="price") == [a["id"], c["id"], d["id"]]
        assert await ids(max_price_cents=2500, sort="price") == [b["id"], a["id"]]
        assert await ids(
            min_price_cents=600, max_price_cents=5000, category_id=books["id"], q="b", sort="-price"
        ) == [c["id"], a["id"]]

        for params in (
            {"sort": "price_desc"},
            {"sort": "created_at"},
            {"min_price_cents": -1},
            {"min_price_cents": "cheap"},
            {"category_id": "books"},
            {"limit": 0},
            {"limit": 101},
            {"offset": -1},
            {"q": "x" * 201},
            {"min_price_cents": 10, "max_price_cents": 5},
            {"max_price_cents": 10**30},
        ):
            bad = await client.get("/products", params=params)
            assert bad.status_code == 422, (params, bad.text)
            assert bad.headers["content-type"].startswith("application/problem+json")


async def test_search_ranks_the_best_match_first_and_matches_prefixes_and_typos(
    service_client, catalog
) -> None:
    async with service_client() as client:
        kettle = await catalog.product(client, name="Electric Kettle", description="1.7 litres, steel")
        await catalog.product(client, name="Settle bench", description="oak")
        teapot = await catalog.product(client, name="Glass teapot", description="Heats on any kettle")

        async def names(q: str, **params: str) -> list[str]:
            response = await client.get("/products", params={"q": q, **params})
            assert response.status_code == 200, response.text
            page = response.json()
            assert page["total"] == len(page["items"])
            return [p["name"] for p in page["items"]]

        # Relevance: a match in the name before one in the description, although the teapot is newer.
        assert await names("kettle") == ["Electric Kettle", "Glass teapot"]
        assert await names("kettle", sort="-created_at") == ["Glass teapot", "Electric Kettle"]
        assert await names("kett") == ["Electric Kettle", "Glass teapot"]  # a prefix
        assert await names("KETTEL") == ["Electric Kettle", "Glass teapot"]  # two letters swapped
        assert await names("ketle") == ["Electric Kettle", "Glass teapot"]  # a letter left out
        assert await names("glass kettle") == ["Glass teapot"]  # every word matches
        assert await names("electrik") == ["Electric Kettle"]  # a letter changed
        assert await names("zzzz") == []
        assert await names("ket") == ["Electric Kettle", "Glass teapot"]
        assert await names("kxt") == []  # too short to correct

        # The index follows the catalog's changes.
        renamed = await client.patch(
            f"/products/{kettle['id']}", json={"name": "Electric jug"}, headers=catalog.admin
        )
        assert renamed.status_code == 200
        assert await names("kettle") == ["Glass teapot"]
        assert await names("jug") == ["Electric jug"]
        assert (await client.delete(f"/products/{teapot['id']}", headers=catalog.admin)).status_code == 204
        assert await names("kettel") == []
        assert await names("teapot") == []


async def test_a_prefix_finds_every_word_it_begins_however_many(service_client, catalog) -> None:
    many = search.MAX_EXPANDED + 5  # a prefix that begins more words than it is expanded into
    async with service_client() as client:
        await catalog.product(
            client, name="Part list", description=" ".join(f"zeta{i:02d}" for i in range(many))
        )
        last = await catalog.product(client, name=f"Gear zeta{many - 1:02d}")
        await catalog.product(client, name="Gear zetb")

        async def names(q: str) -> list[str]:  # newest first
            response = await client.get("/products", params={"q": q, "sort": "-created_at"})
            assert response.status_code == 200, response.text
            return [p["name"] for p in response.json()["items"]]

        # The product whose only such word sorts last is found by the short prefix too.
        assert await names("zeta") == [last["name"], "Part list"]
        assert await names(f"zeta{(many - 1) // 10}") == [last["name"], "Part list"]  # a few words
        assert await names("zeta0") == ["Part list"]
        assert await names("zet") == ["Gear zetb", last["name"], "Part list"]


async def test_search_answers_any_text_without_error(service_client, catalog) -> None:
    async with service_client() as client:
        await catalog.product(client, name="Crème brûlée torch", description="Straße 2² ١٢٣ 日本")
        for q, found in (
            ("crème", 1),
            ("CRÈME BRÛ", 1),
            ("straße", 1),
            ("日本", 1),
            ("²", 0),
            ("١٢٣", 1),
            ("x\u0301\u0307", 0),
            ("\u200b", 0),
            ('"*:&|!()', 0),
            ("NEAR(a b)", 0),
            ("a AND b OR NOT c", 0),
            ("' OR '1'='1", 0),
        ):
            response = await client.get("/products", params={"q": q})
            assert response.status_code == 200, (q, response.text)
            assert response.json()["total"] == found, q


async def test_search_finds_the_words_of_text_that_looks_like_markup_addresses_or_paths(
    service_client, catalog
) -> None:
    async with service_client() as client:
        await catalog.product(client, name="<script>alert('x')</script>", description="<b>bold</b> claims")
        await catalog.product(
            client,
            name="Kettle-2000 v1.5",
            description="Manual at help@mart.example, /usr/share/doc or https://mart.example/k",
        )
        for q, found in (
            ("script", "<script>alert('x')</script>"),
            ("alert", "<script>alert('x')</script>"),
            ("bold", "<script>alert('x')</script>"),
            ("kettle 2000", "Kettle-2000 v1.5"),
            ("help", "Kettle-2000 v1.5"),
            ("mart example", "Kettle-2000 v1.5"),
            ("usr share", "Kettle-2000 v1.5"),
            ("https", "Kettle-2000 v1.5"),
        ):
            response = await client.get("/products", params={"q": q})
            assert response.status_code == 200, (q, response.text)
            assert [p["name"] for p in response.json()["items"]] == [found], q


async def test_list_totals_follow_the_catalogs_changes(service_client, catalog) -> None:
    async with service_client() as client:
        toys = await catalog.category(client, "Toys")
        books = await catalog.category(client, "Books")
        p1 = await catalog.product(client, category_id=toys["id"])
        p2 = await catalog.product(client, category_id=toys["id"])
        p3 = await catalog.product(client)

        async def totals() -> tuple[int, int, int]:
            out = []
            for params in ({}, {"category_id": toys["id"]}, {"category_id": books["id"]}):
                page = (await client.get("/products", params={**params, "limit": 1})).json()
                out.append(page["total"])
            return out[0], out[1], out[2]

        assert await totals() == (3, 2, 0)
        moved = await client.patch(
            f"/products/{p2['id']}", json={"category_id": books["id"]}, headers=catalog.admin
        )
        assert moved.status_code == 200
        assert await totals() == (3, 1, 1)
        assert (await client.delete(f"/products/{p1['id']}", headers=catalog.admin)).status_code == 204
        assert await totals() == (2, 0, 1)
        placed = await client.patch(
            f"/products/{p3['id']}", json={"category_id": toys["id"]}, headers=catalog.admin
        )
        assert placed.status_code == 200
        assert await totals() == (2, 1, 1)
        beyond = (await client.get("/products", params={"category_id": books["id"], "offset": 5})).json()
        assert beyond["items"] == [] and beyond["total"] == 1


async def test_pagination_totals(service_client, catalog) -> None:
    async with service_client() as client:
        for i in range(7):
            await catalog.product(client, name=f"Widget {i}", price_cents=100 + i)
        await catalog.product(client, name="Gadget", price_cents=50)
        seen = []
        for offset in (0, 3, 6):
            page = (
                await client.get(
                    "/products", params={"q": "widget", "sort": "price", "limit": 3, "offset": offset}
                )
            ).json()
            assert page["total"] == 7 and page["limit"] == 3 and page["offset"] == offset
            seen += [p["name"] for p in page["items"]]
        assert seen == [f"Widget {i}" for i in range(7)]
        beyond = (await client.get("/products", params={"offset": 100})).json()
        assert beyond["items"] == [] and beyond["total"] == 8
        default = (await client.get("/products")).json()
        assert default["limit"] == 20 and default["offset"] == 0 and len(default["items"]) == 8


async def test_catalog_reads_carry_an_etag_and_answer_304_until_the_catalog_changes(
    service_client, catalog
) -> None:
    async with service_client() as client:
        product = await catalog.product(client, name="Lamp", price_cents=900)
        for path in ("/products", f"/products/{product['id']}"):
            first = await client.get(path)
            etag = first.headers["etag"]
            assert first.status_code == 200 and first.headers["cache-control"] == "public, no-cache"
            again = await client.get(path, headers={"If-None-Match": etag})
            assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
            other = await client.get(path, headers={"If-None-Match": '"something-else"'})
            assert other.status_code == 200 and other.json() == first.json()

        listed = await client.get("/products")
        patched = await client.patch(
            f"/products/{product['id']}", json={"price_cents": 950}, headers=catalog.admin
        )
        assert patched.status_code == 200
        changed = await client.get("/products", headers={"If-None-Match": listed.headers["etag"]})
        assert changed.status_code == 200 and changed.headers["etag"] != listed.headers["etag"]
        assert changed.json()["items"][0]["price_cents"] == 950

        # An admin's view of an archived product is nobody else's to cache.
        await client.delete(f"/products/{product['id']}", headers=catalog.admin)
        archived = await client.get(
            f"/products/{product['id']}", params={"include_archived": "true"}, headers=catalog.admin
        )
        assert archived.status_code == 200 and archived.headers["cache-control"] == "private, no-store"


async def test_categories(service_client, catalog) -> None:
    async with service_client() as client:
        await catalog.category(client, "Toys", "Fun things")
        await catalog.category(client, "books")
        dup = await client.post("/categories", json={"name": "TOYS"}, headers=catalog.admin)
        assert dup.status_code == 409
        for body in ({"name": ""}, {"name": "x" * 101}, {"name": "ok", "description": "d" * 1001}, {}):
            assert (await client.post("/categories", json=body, headers=catalog.admin)).status_code == 422, (
                body
            )
        listed = (await client.get("/categories")).json()
        assert listed["total"] == 2
        assert [(c["name"], c["description"]) for c in listed["items"]] == [
            ("books", ""),
            ("Toys", "Fun things"),
        ]
        assert set(listed["items"][0]) == {"id", "name", "description"}


async def test_openapi_documents_auth_and_error_responses(service_client) -> None:
    async with service_client() as client:
        spec = (await client.get("/openapi.json")).json()
    expected = {
        ("get", "/products"): {"422"},
        ("get", "/products/{product_id}"): {"404", "422"},
        ("post", "/products"): {"401", "403", "409", "422"},
        ("patch", "/products/{product_id}"): {"401", "403", "404", "409", "422"},
        ("delete", "/products/{product_id}"): {"401", "403", "404", "422"},
        ("get", "/categories"): {"422"},
        ("post", "/categories"): {"401", "403", "409", "422"},
        ("post", "/products/{product_id}/reviews"): {"401", "404", "409", "422"},
        ("get", "/products/{product_id}/reviews"): {"404", "422"},
    }
    for (method, path), statuses in expected.items():
        op = spec["paths"][path][method]
        assert statuses <= set(op["responses"]), (method, path, set(op["responses"]))
        for status in statuses:
            assert "application/problem+json" in op["responses"][status]["content"], (method, path, status)
        if "401" in statuses:
            assert op.get("security"), (method, path)
    sort = next(p for p in spec["paths"]["/products"]["get"]["parameters"] if p["name"] == "sort")
    orders = next(choice for choice in sort["schema"]["anyOf"] if "enum" in choice)  # or none: relevance
    assert set(orders["enum"]) == {"name", "-name", "price", "-price", "-created_at"}


async def test_weird_input_is_refused_exactly_as_documented(service_client, catalog) -> None:
    """NUL in any text (PostgreSQL cannot store it; refused alike on SQLite), wrong types and bad JSON: 422
    validation-error; a body over the limit: 413; a search for odd text: 200 and no match. Never 500, never a
    2xx for a value that is not stored as sent."""
    async with service_client() as client:
        product = await catalog.product(client)
        pid = product["id"]
        requests = [
            ("post", "/products", {"json": {"sku": "N-1", "name": "a\x00", "price_cents": 1}}, 422),
            (
                "post",
                "/products",
                {"json": {"sku": "N-1", "name": "a", "description": "\x00", "price_cents": 1}},
                422,
            ),
            ("post", "/products", {"json": {"sku": "N\x00", "name": "a", "price_cents": 1}}, 422),
            ("post", "/products", {"json": {"sku": "N-1", "name": "a", "price_cents": True}}, 422),
            (
                "post",
                "/products",
                {"content": b"{not json", "headers": {"content-type": "application/json"}},
                422,
            ),
            ("post", "/products", {"json": {"sku": "N-1", "name": "é" * 600_000, "price_cents": 1}}, 413),
            ("patch", f"/products/{pid}", {"json": {"name": None}}, 422),
            ("patch", f"/products/{pid}", {"json": {"price_cents": None}}, 422),
            ("patch", f"/products/{pid}", {"json": "name"}, 422),
            ("post", "/categories", {"json": {"name": "\x00"}}, 422),
            ("post", f"/products/{pid}/reviews", {"json": {"rating": 3, "comment": "\x00"}}, 422),
            ("get", "/products", {"params": {"q": "\x00"}}, 422),
            ("get", "/products", {"params": {"q": "🙂' OR 1=1 --"}}, 200),
            ("get", "/products", {"params": {"sort": "\x00"}}, 422),
            ("get", "/products/%00", {}, 422),
            ("get", f"/products/{pid}", {"params": {"include_archived": "maybe"}}, 422),
        ]
        for method, url, kwargs, status in requests:
            headers = {**catalog.admin, **kwargs.pop("headers", {})}
            response = await client.request(method, url, headers=headers, **kwargs)
            assert response.status_code == status, (method, url, response.status_code, response.text[:300])
            if status == 200:
                assert response.json()["total"] == 0, response.text
            else:
                assert response.headers["content-type"].startswith("application/problem+json")
                slug = "payload-too-large" if status == 413 else "validation-error"
                assert response.json()["type"].endswith("/" + slug), response.text[:300]
        got = (await client.get(f"/products/{pid}")).json()
        assert got == product
