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

BOMS = (
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


# The folder a browser saves a page's images, styles and scripts into, beside
# the page: "Name_files" (and as other languages' browsers name it).
ASSET_FOLDER_SUFFIXES = ("_files", "-dateien", "_fichiers", "_archivos", "_arquivos", "_file", "_bestanden",
                         "_pliki", "_filer", "-tiedostot", "_soubory")
ASSET_SUFFIXES = {
    **dict.fromkeys((".css",), "a stylesheet"),
    **dict.fromkeys((".js", ".mjs", ".map", ".wasm"), "a script"),
    **dict.fromkeys((".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".svg", ".ico", ".bmp", ".tif", ".tiff"),
                    "an image"),
    **dict.fromkeys((".woff", ".woff2", ".ttf", ".otf", ".eot"), "a font"),
    **dict.fromkeys((".mp3", ".mp4", ".m4a", ".ogg", ".oga", ".webm", ".wav"), "a sound or video"),
}
# What assets open with, for those saved under another name.
ASSET_MAGIC = ((b"\x89PNG", "an image"), (b"\xff\xd8\xff", "an image"), (b"GIF8", "an image"),
               (b"RIFF", "an image, sound or video"), (b"wOFF", "a font"), (b"wOF2", "a font"),
               (b"OTTO", "a font"), (b"\x00\x01\x00\x00", "a font"), (b"ID3", "a sound"))


def asset_reason(rel: str, data: bytes | None = None) -> str | None:
    """Why a file is a page's asset, not a page (None when it is not one):
    it lies in a saved page's asset folder, or its name or first bytes say so."""
    *folders, name = rel.split("/")
    for folder in folders:
        if folder.lower().endswith(ASSET_FOLDER_SUFFIXES):
            return f"asset of a saved page (in {folder}/)"
    kind = ASSET_SUFFIXES.get(os.path.splitext(name)[1].lower())
    if kind is None and data is not None:
        kind = next((what for magic, what in ASSET_MAGIC if data.startswith(magic)), None)
    return f"not a page: {kind}" if kind else None


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
    for bom, encoding in BOMS:
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
