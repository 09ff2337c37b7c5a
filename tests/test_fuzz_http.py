"""Random requests to the real app on a real socket: whatever the method,
path, query and headers, no 5xx; every 304 is right; every feed body parses."""

import gzip
import http.client
import json
from collections.abc import Iterator
from urllib.parse import quote

import feedparser
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from aggregator.config import settings_from

from helpers import SEEDS, app_in_thread, free_port

KNOWN_PATHS = ["/", "/feeds/all.atom", "/feeds/all.rss", "/feeds/all.json", "/feeds/tags/idlib.atom",
               "/feeds/tags/assad+idlib.rss", "/feeds/tags/assad,idlib.json", "/feeds/tags/Idlib.json",
               "/feeds.opml", "/tags/idlib", "/tags/IDLIB", "/healthz", "/readyz", "/status.json", "/metrics"]
NUMBERS = ["0", "1", "2", "7", "500", "501", "-1", "1.5", "²", "①", "٣", "99999999999999999999",
           str(2**63 - 1), "9" * 5000, "", " 3", "0x10", "1e3"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, request) -> Iterator[str]:
    """The app serving a scanned copy of the seeds on a loopback port, in a
    thread of its own: hypothesis drives it from plain, blocking clients."""
    root = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    settings = settings_from({"seeds.dir": str(SEEDS), "database.url": f"sqlite:///{root / 'db.sqlite'}",
                              "feeds.export_dir": str(root / "feeds"), "feeds.limit": 7,
                              "server.base_url": f"http://127.0.0.1:{port}"}, root)
    with app_in_thread(settings, port):
        yield f"127.0.0.1:{port}"


def segment() -> st.SearchStrategy[str]:
    return st.text(max_size=30).map(lambda text: quote(text, safe="+,"))


paths = st.one_of(
    st.sampled_from(KNOWN_PATHS),
    st.builds(lambda s, fmt: f"/feeds/tags/{s}.{fmt}", segment(), st.sampled_from(["atom", "rss", "json", "xml"])),
    st.builds(lambda s: f"/tags/{s}", segment()),
    st.builds(lambda s: f"/items/{s}", segment()),
    st.builds(lambda a, b: f"/{a}/{b}", segment(), segment()),
)
queries = st.dictionaries(st.sampled_from(["limit", "page", "q", "x"]),
                          st.one_of(st.sampled_from(NUMBERS), st.text(max_size=20)), max_size=3)
http_dates = st.sampled_from(["Sat, 21 Nov 2026 12:00:00 GMT", "Mon, 01 Jan 2000 00:00:00 GMT",
                              "Fri, 31 Dec 9999 23:59:59 GMT", "yesterday", "", "Thu, 01 Jan 1970 00:00:00 GMT"])
headers = st.fixed_dictionaries({}, optional={
    "If-None-Match": st.one_of(st.sampled_from(['*', 'W/"x"', '"a", "b"', "", '"current"']), st.text(max_size=40)),
    "If-Modified-Since": st.one_of(http_dates, st.text(max_size=40)),
    "Range": st.sampled_from(["bytes=0-10", "bytes=-5", "bytes=99999999-", "lines=1-2", "bytes=a-b"]),
    "Accept-Encoding": st.sampled_from(["gzip", "gzip;q=0", "br, gzip;q=0.5", "identity", "*", "gzip;q=x", ""]),
    "Host": st.sampled_from(["evil.example", "127.0.0.1", "", "[::1]:1", "a" * 300]),
})
methods = st.sampled_from(["GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])


def safe_header(value: str) -> str:
    """What a client can send on one header line: no line breaks, Latin-1."""
    return "".join(c for c in value if c.isprintable() and ord(c) < 256)


def ask(address: str, method: str, target: str, sent: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(address, timeout=30)
    try:
        connection.putrequest(method, target, skip_host="Host" in sent, skip_accept_encoding=True)
        for name, value in sent.items():
            connection.putheader(name, safe_header(value))
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        connection.close()


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=methods, path=paths, query=queries, sent=headers)
def test_no_request_gets_a_5xx_and_every_answer_is_right(server, method, path, query, sent):
    target = path + ("?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items()) if query else "")
    if sent.get("If-None-Match") == '"current"':  # the real validator, now and then
        plain = ask(server, "GET", target, {"Accept-Encoding": sent.get("Accept-Encoding", "")})
        sent["If-None-Match"] = plain[1].get("ETag", '"none"')
    status, answer, body = ask(server, method, target, sent)
    assert status < 500, (method, target, sent, body[:300])
    if status == 304:
        # Right only when the representation asked for has these validators now.
        fresh = ask(server, "GET", target, {"Accept-Encoding": sent.get("Accept-Encoding", "")})
        assert fresh[0] == 200
        assert (answer["ETag"], answer["Last-Modified"]) == (fresh[1]["ETag"], fresh[1]["Last-Modified"])
    if status == 200 and method == "GET" and path.startswith("/feeds/"):
        if answer.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if answer["Content-Type"].startswith("application/feed+json"):
            assert isinstance(json.loads(body)["items"], list)
        else:
            parsed = feedparser.parse(body)
            assert not parsed.bozo, (target, parsed.get("bozo_exception"))
