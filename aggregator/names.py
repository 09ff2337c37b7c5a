"""How items and tags are named in rows and addresses. Pure."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid


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
