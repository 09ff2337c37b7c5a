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


# A label longer than this is a page's run-on text, not a tag.
MAX_TAG_CHARS = 100
# Slugs name files in the export folder: far below any file system's 255 bytes.
MAX_SLUG_CHARS = 80
# Characters with no glyph: controls, zero-width and format characters,
# surrogates, private use and unassigned code points.
INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def clean_tag(name: str) -> str | None:
    """A tag name as stored, or None when there is none to show: invisible
    characters removed, white space collapsed, and none over MAX_TAG_CHARS."""
    visible = "".join(c for c in name if unicodedata.category(c) not in INVISIBLE)
    text = " ".join(visible.split())
    return text if text and len(text) <= MAX_TAG_CHARS else None


def clean_tags(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in map(clean_tag, names) if name is not None)


def tag_slug(name: str) -> str:
    """Lowercase ASCII, accents folded, other runs of characters one "-":
    "Côte d'Ivoire" → "cote-d-ivoire". A long one is cut, and a hash of the
    name keeps cut slugs apart."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    digest = hashlib.sha256(tag_key(name).encode()).hexdigest()[:8]
    if not slug:
        return "tag-" + digest
    if len(slug) > MAX_SLUG_CHARS:
        return slug[: MAX_SLUG_CHARS - len(digest) - 1].rstrip("-") + "-" + digest
    return slug


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
