"""`GET /docs`: Swagger UI over `/openapi.json`, served entirely by this server.

The UI's files come from the `swagger-ui-bundle-v2` wheel and are served under `/docs/assets/`,
so a self-hosted install with no way out to the internet still shows its API. The page loads the
schema from `/openapi.json` (never an embedded copy), so what it shows is exactly what that
endpoint publishes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.params import FromPath
from swagger_ui_bundle import swagger_ui_path

# The only files of the bundle the page uses (no source maps: they are for debugging the UI).
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cariosan API</title>
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>
SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
});
</script>
</body>
</html>
"""


def asset_path(name: str) -> Path:
    """The file of one UI asset inside the installed wheel."""
    return Path(str(swagger_ui_path)) / name


@get("/assets/{name:str}", include_in_schema=False, sync_to_thread=False)
def docs_asset(name: FromPath[str]) -> Response[bytes]:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFoundException(f"no docs asset {name!r}")
    return Response(
        asset_path(name).read_bytes(),
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=86400"},
    )


class OfflineSwaggerPlugin(OpenAPIRenderPlugin):
    """Litestar's render plugin slot at `/docs`, with the page above and its assets."""

    def __init__(self) -> None:
        super().__init__(path="/")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return PAGE.encode()

    def receive_router(self, router: Router) -> None:
        router.register(docs_asset)
