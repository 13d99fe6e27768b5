"""Who calls the API: a bearer token on every /api/v1 request, acting as its staff user with that user's scope.

Only the Authorization header counts. A console session cookie is ignored here on purpose: the API takes no CSRF
token, so if a cookie signed API requests in, any site could make a signed-in browser act through the API.
"""

from __future__ import annotations

import re

from aiohttp import web

from store.audit import request_address
from store.models import StaffRole, StaffUser, utcnow
from store.staff import find_token
from web.keys import DATABASE
from web.middleware import Handler, error_response, json_errors

API_PREFIX = "/api/v1"
BEARER = re.compile(r"Bearer +([A-Za-z0-9_-]{43})", re.IGNORECASE)  # secrets.token_urlsafe(32)
REALM = 'Bearer realm="closeloop"'
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

API_USER = web.RequestKey("api_user", StaffUser)


@web.middleware
async def api_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate every /api/v1 request by its bearer token; answer 401 with a challenge for anything else."""
    if request.path != API_PREFIX and not request.path.startswith(API_PREFIX + "/"):
        return await handler(request)
    address = request_address.set(request.remote)  # audit entries written while handling it carry the address
    try:
        user = await _bearer_user(request)
        if user is None:
            response = _unauthorized(has_credentials="Authorization" in request.headers)
        else:
            request[API_USER] = user
            # Errors become JSON here rather than further out, so that they get the headers below too.
            response = await json_errors(request, handler)
    finally:
        request_address.reset(address)
    response.headers.update(API_HEADERS)
    return response


async def _bearer_user(request: web.Request) -> StaffUser | None:
    found = BEARER.fullmatch(request.headers.get("Authorization", "").strip())
    if found is None:
        return None
    holder = await find_token(request.app[DATABASE], found.group(1), now=utcnow())
    return None if holder is None else holder.user


def _unauthorized(*, has_credentials: bool) -> web.Response:
    if not has_credentials:
        response = error_response(401, "Unauthorized", "send Authorization: Bearer <token>")
        response.headers["WWW-Authenticate"] = REALM
        return response
    response = error_response(401, "Unauthorized", "the token is unknown, revoked or expired, or its user inactive")
    response.headers["WWW-Authenticate"] = f'{REALM}, error="invalid_token"'
    return response


def api_user(request: web.Request) -> StaffUser:
    """The token's user (the guard has refused every request without one)."""
    return request[API_USER]


def require_api_role(request: web.Request, *roles: StaffRole, why: str) -> StaffUser:
    """The token's user if their role is one of ``roles``; admins pass every role check.

    Raises:
        web.HTTPForbidden: any other role; ``why`` says what the role is needed for.
    """
    user = api_user(request)
    if user.role != StaffRole.ADMIN and user.role not in roles:
        raise web.HTTPForbidden(text=why)
    return user
