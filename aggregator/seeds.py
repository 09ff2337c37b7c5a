"""The seed folder: which files count, whether they changed, bytes → text."""

from __future__ import annotations

import codecs
import errno
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
from aggregator.model import FileStatus

# Editor swap files, partial downloads and hidden files are never pages.
DEFAULT_IGNORE = (".*", "*~", "*.swp", "*.swx", "*.tmp", "*.part", "*.crdownload", "#*#")
DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024  # a long article is 100 KB; a larger file is no page

BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class SeedFile(NamedTuple):
    """An entry of the seed folder as a scan finds it (a named tuple: a rescan
    builds one per file)."""

    path: str  # absolute, as the file system spells it (not always valid UTF-8)
    rel: str  # relative to the seed folder, "/"-separated, shown safely: the file's name in the store
    size: int
    mtime_ns: int
    odd: str | None = None  # why it is no file to read (a link, a FIFO …); None for a regular file


@functools.lru_cache(maxsize=16)
def _ignore_pattern(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    # One compiled expression for all the globs: a rescan tests every name.
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def is_ignored(name: str, patterns: tuple[str, ...]) -> bool:
    pattern = _ignore_pattern(patterns)
    return pattern is not None and pattern.match(name) is not None


def shown_name(name: str) -> str:
    """A file name as it may be stored, logged and printed: bytes that are not
    UTF-8 as \\xNN, control characters (a newline) escaped, so no name forges
    a log line or breaks a row of `aggregator sources`."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else _escaped(c) for c in name)


def _escaped(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode keeps it
        return f"\\x{code - 0xDC00:02x}"
    return char.encode("unicode_escape").decode("ascii")


def odd_reason(mode: int) -> str | None:
    """Why an entry that is no folder is not read, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link: not followed, nothing outside the seed folder is read"
    if stat.S_ISFIFO(mode):
        return "a FIFO, not a file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a file"
    return "not a regular file"


class Listing:
    """The entries below the seed folder, in the order the folder lists them;
    links are not followed. A folder below it that cannot be listed is noted
    in `unlisted` (its files are not missing, only unseen); the seed folder
    itself not listable is a SeedError: an empty listing would mark every
    file missing."""

    def __init__(self, folder: Path, ignore: tuple[str, ...] = DEFAULT_IGNORE):
        self.folder = folder
        self.ignore = ignore
        self.unlisted: list[str] = []  # "/"-terminated names of folders that could not be read
        self.folders: list[str] = []  # every folder listed, the seed folder first (what the watcher watches)

    def __iter__(self) -> Iterator[SeedFile]:
        pending = [(str(self.folder), "")]  # (folder, its name relative to the seed folder with a "/")
        ignored = _ignore_pattern(self.ignore)
        while pending:
            current, prefix = pending.pop()
            try:
                entries = list(os.scandir(current))
            except OSError as error:
                if not prefix:
                    raise SeedError(f"cannot list the seed folder {current}: {error.strerror or error}",
                                    FileStatus.FAILED) from error
                self.unlisted.append(prefix)  # removed or unreadable mid-scan; the next scan looks again
                continue
            self.folders.append(current)
            for entry in entries:
                if ignored is not None and ignored.match(entry.name):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)  # one call tells file, folder or link
                except OSError:
                    continue
                name = entry.name if entry.name.isprintable() else shown_name(entry.name)
                if stat.S_ISREG(info.st_mode):  # nearly every entry: no more work than this
                    yield SeedFile(entry.path, prefix + name, info.st_size, info.st_mtime_ns)
                elif stat.S_ISDIR(info.st_mode):
                    pending.append((entry.path, f"{prefix}{name}/"))
                else:
                    yield SeedFile(entry.path, prefix + name, info.st_size, info.st_mtime_ns, odd_reason(info.st_mode))

    def is_unseen(self, rel: str) -> bool:
        """Is a stored file below a folder this listing could not read."""
        return rel.startswith(tuple(self.unlisted))


def read_seed(seed: SeedFile, max_bytes: int) -> bytes:
    """A seed file's bytes, read as the file it was listed as: a link swapped
    in since is not followed (O_NOFOLLOW), a FIFO does not block (O_NONBLOCK),
    and anything but a regular file, or a file over `max_bytes`, is refused
    with the reason before a byte is read."""
    try:
        fd = os.open(seed.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise SeedError(odd_reason(stat.S_IFLNK) or "", FileStatus.SKIPPED) from error
        raise SeedError(f"cannot read file: {error.strerror or error}", FileStatus.FAILED) from error
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if (odd := odd_reason(info.st_mode)) is not None:
            raise SeedError(odd)
        if info.st_size > max_bytes:
            raise SeedError(too_big(info.st_size, max_bytes))
        try:
            data = handle.read(max_bytes + 1)  # a file still growing stops here too
        except OSError as error:
            raise SeedError(f"cannot read file: {error.strerror or error}", FileStatus.FAILED) from error
    if len(data) > max_bytes:
        raise SeedError(too_big(len(data), max_bytes))
    return data


def too_big(size: int, max_bytes: int) -> str:
    return f"too large: over {max_bytes} bytes (seeds.max_file_bytes), {size} or more"


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
