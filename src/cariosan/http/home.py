"""`GET /` of `cariosan serve`: a short page that names the product and points to the API docs.

(`cariosan dev` serves its demo chat app there instead: see http/demo.py.)
"""

from __future__ import annotations

from litestar import MediaType, get

from cariosan import __version__

PAGE = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Cariosan</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto;">
<h1>Cariosan</h1>
<p>A self-hosted chat backend (version {__version__}): REST for writes and history, one
WebSocket for live events.</p>
<p>API reference: <a href="/docs">/docs</a> (schema: <a href="/openapi.json">/openapi.json</a>).</p>
</body>
</html>
"""


@get("/", include_in_schema=False, media_type=MediaType.HTML, sync_to_thread=False)
def home() -> str:
    return PAGE


ROUTES = [home]
