"""How items, tags and original links are named in rows and addresses. Pure."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from urllib.parse import unquote_plus, urlsplit, urlunsplit


def guid_key(guid: str) -> str:
    """URL-safe form of an item id, for /items/{key}."""
    if guid.startswith("urn:uuid:"):
        return uuid.UUID(guid[9:]).hex
    return hashlib.sha256(guid.encode()).hexdigest()[:32]


def tag_key(name: str) -> str:
    """Tags compare case-insensitively and by Unicode normal form."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def tag_slug(name: str) -> str:
    """Lowercase ASCII, accents folded, other runs of characters one "-":
    "Côte d'Ivoire" → "cote-d-ivoire"."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    return slug or "tag-" + hashlib.sha256(tag_key(name).encode()).hexdigest()[:8]


def counted(count: int, noun: str) -> str:
    """ "1 item", "2 items" (nouns with a plain plural)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# Query parameters that say how a reader came to a page, not which page it is.
TRACKING_PARAMETERS = frozenset({"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "igshid",
                                 "ref_src", "yclid", "_ga", "wt.mc_id"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_tracking(key: str) -> bool:
    return key.startswith("utm_") or key in TRACKING_PARAMETERS


def canonical_link(address: str) -> str | None:
    """An item's original address in one spelling, or None when it is not an
    absolute http(s) URL: scheme and host lowercased, default port, fragment
    and tracking parameters (utm_*, fbclid …) dropped; the rest kept as given."""
    address = address.strip()
    if not address.isprintable() or " " in address:  # no address holds white space or control characters
        return None
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    if port is not None and port != DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    # Filtered piece by piece, so the parameters kept keep their spelling.
    query = "&".join(piece for piece in parts.query.split("&")
                     if piece and not _is_tracking(unquote_plus(piece.split("=", 1)[0]).lower()))
    return urlunsplit((scheme, host, parts.path or "/", query, ""))
