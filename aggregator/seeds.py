"""The seed folder: which files count, whether they changed, bytes → text."""

from __future__ import annotations

import codecs
import fnmatch
import functools
import hashlib
import operator
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import charset_normalizer

from aggregator.errors import SeedError

# Editor swap files, partial downloads and hidden files are never pages.
DEFAULT_IGNORE = (".*", "*~", "*.swp", "*.swx", "*.tmp", "*.part", "*.crdownload", "#*#")

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class SeedFile(NamedTuple):
    """A file in the seed folder as a scan finds it (a named tuple: a rescan
    builds one per file)."""

    path: str  # absolute
    rel: str  # relative to the seed folder, "/"-separated: the file's name in the store
    size: int
    mtime_ns: int


@functools.lru_cache(maxsize=16)
def _ignore_pattern(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    # One compiled expression for all the globs: a rescan tests every name.
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def is_ignored(name: str, patterns: tuple[str, ...]) -> bool:
    pattern = _ignore_pattern(patterns)
    return pattern is not None and pattern.match(name) is not None


def seed_files(folder: Path, ignore: tuple[str, ...] = DEFAULT_IGNORE) -> Iterator[SeedFile]:
    """Regular files below the folder, in the order the folder lists them.
    Links are not followed: nothing outside the folder is ever read."""
    pending = [(str(folder), "")]  # (folder, its name relative to the seed folder with a "/")
    ignored = _ignore_pattern(ignore)
    while pending:
        current, prefix = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue  # a folder removed or unreadable mid-scan; the next scan sees it again
        for entry in entries:
            if ignored is not None and ignored.match(entry.name):
                continue
            try:
                info = entry.stat(follow_symlinks=False)  # one call tells file, folder or link
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield SeedFile(entry.path, prefix + entry.name, info.st_size, info.st_mtime_ns)
            elif stat.S_ISDIR(info.st_mode):
                pending.append((entry.path, f"{prefix}{entry.name}/"))


def by_name(seeds: Iterable[SeedFile]) -> list[SeedFile]:
    return sorted(seeds, key=operator.itemgetter(1))  # by rel


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes) -> str:
    """Bytes of a saved page → text. A byte order mark decides; else UTF-8;
    else a detector guesses the legacy encoding. Raises SeedError for empty
    and binary files."""
    if not data.strip():
        raise SeedError("empty file: no text")
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as error:
                raise SeedError(f"not valid {encoding} despite its byte order mark: {error.reason}") from error
    if b"\x00" in data:
        raise SeedError("binary file: contains NUL bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        raise SeedError("binary file: no text encoding fits its bytes")
    # Western single-byte code pages often fit equally well; among equals take
    # windows-1252, what browsers read "latin-1" pages as and what most
    # legacy saved pages are.
    for match in matches:
        if match.encoding == "cp1252" and (match.chaos, match.coherence) == (best.chaos, best.coherence):
            return str(match)
    return str(best)
