"""A server for the serving benchmarks, in its own process so the load
generator does not share its CPU: either the real service or a bare aiohttp
handler returning the same bytes (the floor).

    python -m bench.serve_target service CONFIG PORT [ingest]
    python -m bench.serve_target bare BODYFILE PORT
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web


def bare(body_file: str, port: int) -> None:
    body = Path(body_file).read_bytes()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/atom+xml", charset="utf-8")

    app = web.Application()
    app.router.add_get("/feeds/all.atom", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def service(config: str, port: int, ingest: bool) -> None:
    from aggregator.config import load_settings
    from aggregator.web import make_app

    settings = load_settings(Path(config))
    app = make_app(settings, schedule=ingest)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    kind, arg, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "bare":
        bare(arg, port)
    else:
        service(arg, port, len(sys.argv) > 4 and sys.argv[4] == "ingest")
