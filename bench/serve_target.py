"""The floor of the serving benchmarks: a bare aiohttp handler answering
each address with the same bytes the service gave for it (and its gzip, and
a 304 when asked with its ETag), with nothing else to do.

    python -m bench.serve_target ANSWERS.json PORT

ANSWERS.json maps a path to {"body": file, "gzip": file, "etag": ..., "type": ...}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aiohttp import web


def bare(answers_file: str, port: int) -> None:
    answers = {}
    for path, answer in json.loads(Path(answers_file).read_text()).items():
        answers[path] = (Path(answer["body"]).read_bytes(), Path(answer["gzip"]).read_bytes(),
                         answer["etag"], answer["type"])

    async def handler(request: web.Request) -> web.Response:
        body, gzipped, etag, content_type = answers[request.path]
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=gzipped, headers={"Content-Type": content_type, "Content-Encoding": "gzip",
                                                       "ETag": etag})
        return web.Response(body=body, headers={"Content-Type": content_type, "ETag": etag})

    app = web.Application()
    for path in answers:
        app.router.add_get(path, handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    bare(sys.argv[1], int(sys.argv[2]))
