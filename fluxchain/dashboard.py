"""The web dashboard: static files served at `/` by the node's API app, and by
`flux-wallet dashboard` (wallet/dashboard.py), which answers the same page's reads with
verified answers. Outside `fluxchain.api` so the wallet serves it without the node's API.

The dashboard is plain HTML, CSS and JavaScript shipped inside the package (no build
step, no CDN, nothing fetched from elsewhere), so it works offline on a laptop devnet.
It reads the same public API as every other client and writes nothing: a spec built on
the Deploy page is checked by `POST /apps/validate` and handed to `flux-wallet`, so keys
never enter the browser.

Safety is by construction rather than by care: the scripts put chain data into the page
only as text (`textContent`), and every response carries a Content-Security-Policy that
allows scripts from this origin's files alone, so even markup that slipped into the DOM
could not run an inline handler or an injected `<script>`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

STATIC_DIR: Final = Path(__file__).parent / "api" / "static"  # package data (setup.cfg)

# One policy for every response (API JSON included): nothing but this origin's own files.
# connect-src 'self' also covers the same-origin websocket in current browsers.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS: Final[dict[str, str]] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",  # a JSON body is never run as a script
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # for browsers older than frame-ancestors
}


async def get_index(request: web.Request) -> web.FileResponse:
    """The single page; its routes live after '#', so every URL is served by this one."""
    response = web.FileResponse(STATIC_DIR / "index.html")
    # Revalidate on every load, so a node upgrade never leaves a stale page in a browser.
    response.headers["Cache-Control"] = "no-cache"
    return response


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def add_dashboard(app: web.Application) -> None:
    """Serve the dashboard at `/` and its files under `/static/`, with security headers."""
    app.router.add_get("/", get_index)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
    app.on_response_prepare.append(_add_security_headers)
