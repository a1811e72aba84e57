"""One typed client per service API (eShop's ``Services/*``): pages use ``api.products.search(...)``,
never URLs. :class:`Api` is built per request for the browser behind it."""

from __future__ import annotations

from typing import Any

from web_service.clients.http import ApiError, ServiceApis, ServiceDown
from web_service.clients.inventory import InventoryClient
from web_service.clients.notifications import NotificationsClient
from web_service.clients.orders import OrdersClient
from web_service.clients.payments import PaymentsClient
from web_service.clients.products import ProductsClient
from web_service.clients.users import UsersClient
from web_service.session import REFRESH_MARGIN_S, Refresher, TokenPair, Visitor


class SignInRequired(Exception):
    """The page needs a signed-in user and the browser has no (longer a) valid sign-in."""


class Api:
    """The six services as the browser behind one request may call them."""

    def __init__(
        self, apis: ServiceApis, visitor: Visitor, refresher: Refresher, client_ip: str | None = None
    ) -> None:
        self._apis = apis
        self.visitor = visitor
        self._refresher = refresher
        self._client_ip = client_ip
        # False once a response has started (a live stream): a refreshed token could no longer reach the
        # cookie, and the user service revokes a login whose used refresh token comes back.
        self.may_refresh = True
        self.users = UsersClient(self)
        self.products = ProductsClient(self)
        self.inventory = InventoryClient(self)
        self.orders = OrdersClient(self)
        self.payments = PaymentsClient(self)
        self.notifications = NotificationsClient(self)

    async def json(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Any:
        token = await self.access_token() if auth else None
        kwargs = {
            "params": params,
            "json": json,
            "data": data,
            "headers": headers,
            "client_ip": self._client_ip,
        }
        try:
            response = await self._apis.call(service, method, path, token=token, **kwargs)
        except ApiError as exc:
            if exc.status != 401 or token is None:
                raise
            # Refused before it ran (the token expired or was revoked): refresh once and try again.
            token = await self.access_token(force_refresh=True)
            if token is None:
                raise SignInRequired from exc
            response = await self._apis.call(service, method, path, token=token, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def access_token(self, *, force_refresh: bool = False) -> str | None:
        """The browser's access token, refreshed first when it expires soon; None when not signed in
        (a sign-in the user service no longer honours is dropped from the session)."""
        pair = self.visitor.tokens()
        if pair is None:
            return None
        if not force_refresh and self.visitor.access_expires_in() > REFRESH_MARGIN_S:
            return pair.access
        if not self.may_refresh:
            raise SignInRequired
        fresh = await self._refresher.refresh(pair.refresh, self._refresh)
        if fresh is None:
            self.visitor.sign_out()
            self.visitor.flash("Your session has ended. Please sign in again.", "warning")
            return None
        self.visitor.store_tokens(fresh)
        return fresh.access

    async def _refresh(self, refresh_token: str) -> TokenPair | None:
        try:
            answer = await self.users.refresh(refresh_token)
        except ApiError as exc:
            if exc.status in (401, 403, 422):
                return None
            raise
        return TokenPair(answer["access_token"], answer["refresh_token"])


__all__ = ["Api", "ApiError", "ServiceApis", "ServiceDown", "SignInRequired"]
