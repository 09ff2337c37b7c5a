"""Every address the service answers, and the one builder of links to them.

The route table below is what the server registers (web.py) and what every
link in feeds, pages and the OPML is built from, so a link and its route
cannot drift apart. The feed format pattern comes from the formats table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from aggregator.render import FORMATS

FORMAT = "{fmt:" + "|".join(re.escape(fmt) for fmt in FORMATS) + "}"

ROUTES = {
    "index": "/",
    "tag_page": "/tags/{slug}",
    "item_page": "/items/{key}",
    "overall_feed": f"/feeds/all.{FORMAT}",
    "tag_feed": f"/feeds/tags/{{tags}}.{FORMAT}",
    "search_feed": f"/feeds/search.{FORMAT}",
    "search_page": "/search",
    "subscriptions": "/feeds.opml",
    "healthz": "/healthz",
    "readyz": "/readyz",
    "metrics": "/metrics",
    "status": "/status.json",
}

# Left as typed in a search's address: `tag:idlib` and `since:2025-03-01`
# read as they were written (RFC 3986 allows them in a query), and a reader
# that fetched the address as typed finds its own address in the feed.
QUERY_SAFE = ":"

# A variable part of a route, "{name}" or "{name:pattern}".
_PART = re.compile(r"\{(\w+)(?::[^{}]*)?\}")


def path(route: str, **parts: str) -> str:
    """The path of a route with its variable parts filled in (and quoted; "+"
    and "," stay: they combine tags)."""
    return _PART.sub(lambda match: quote(parts[match[1]], safe="+,"), ROUTES[route])


def feed_path(tags: str, fmt: str) -> str:
    """The overall feed (no tags), or the feed of "a", "a+b" (any) or "a,b" (all)."""
    return path("tag_feed", tags=tags, fmt=fmt) if tags else path("overall_feed", fmt=fmt)


@dataclass(frozen=True)
class Urls:
    """Absolute links, all starting with the service's public address."""

    base: str  # no trailing "/"

    def index(self) -> str:
        return self.base + path("index")

    def tag_page(self, slug: str) -> str:
        return self.base + path("tag_page", slug=slug)

    def tag_scheme(self) -> str:
        """The prefix of tag pages: a feed category's scheme."""
        return self.base + path("tag_page", slug="")

    def item_page(self, key: str) -> str:
        return self.base + path("item_page", key=key)

    def feed(self, fmt: str, tags: str = "", query: str = "") -> str:
        return self.base + feed_path(tags, fmt) + query

    def search_page(self, q: str = "", **params: object) -> str:
        """The search page, for the query and any other parameters (sort, page) given."""
        query = urlencode({"q": q, **params}, safe=QUERY_SAFE) if q else ""
        return self.base + path("search_page") + (f"?{query}" if query else "")

    def search_feed(self, fmt: str, q: str, query: str = "") -> str:
        """The feed of a search; `query` holds its other parameters ("&limit=5")."""
        return self.base + path("search_feed", fmt=fmt) + "?" + urlencode({"q": q}, safe=QUERY_SAFE) + query

    def subscriptions(self) -> str:
        return self.base + path("subscriptions")
