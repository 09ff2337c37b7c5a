"""config.toml → frozen Settings. One table lists every option with its type,
default, help and check; config.toml, the README and `aggregator config`
are kept in step with it (a test fails when they are not)."""

from __future__ import annotations

import os
import socket
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from aggregator.errors import ConfigError, StorageError
from aggregator.model import SavedSearch
from aggregator.names import tag_slug
from aggregator.search import BadQuery, parse_query
from aggregator.seeds import DEFAULT_IGNORE
from aggregator.storage.engine import database_url

CONFIG_ENV = "AGGREGATOR_CONFIG"
MAX_CONFIG_BYTES = 1024 * 1024
DEFAULT_CONFIG = "config.toml"


def _between(low: int, high: int, unit: str = "") -> Callable[[float], str | None]:
    """A number in a range a running service can live with: a scan every 10^12
    seconds overflows the scheduler, an infinite settle time never reads a file."""
    def check(value: float) -> str | None:
        if low <= value <= high:  # false for NaN too
            return None
        return f"must be from {low:_} to {high:_}{unit}, got {value!r}".replace("_", " ")
    return check


def _plain_text(value: str) -> str | None:
    """Text that goes into feeds and pages: XML has no place for control characters."""
    bad = next((c for c in value if not c.isprintable()), None)
    return None if bad is None else f"must not hold control characters (found {bad!r})"


def _port(value: int) -> str | None:
    return None if 0 < value < 65536 else "must be a port number from 1 to 65535"


def _language(value: str) -> str | None:
    parts = value.split("-")
    ok = all(0 < len(part) <= 8 and part.isascii() and part.isalnum() for part in parts) and parts[0].isalpha()
    return None if ok else f"must be a language tag such as en or pt-BR, got {value!r}"


def _http_url(value: str) -> str | None:
    ok = value == "" or (value.startswith(("http://", "https://")) and len(value) > len("https://"))
    return None if ok else "must be an absolute http:// or https:// URL"


def _log_level(value: str) -> str | None:
    levels = ("debug", "info", "warning", "error")
    return None if value.lower() in levels else f"must be one of {', '.join(levels)}"


MAX_SAVED_SEARCHES = 100


def _saved_searches(value: list[dict[str, Any]]) -> str | None:
    if len(value) > MAX_SAVED_SEARCHES:
        return f"at most {MAX_SAVED_SEARCHES} saved searches, got {len(value)}"
    names, queries = set(), set()
    for n, search in enumerate(value, 1):
        if set(search) != {"name", "q"} or not all(isinstance(v, str) for v in search.values()):
            return f"search {n} must have a name and a q, both strings, and nothing else"
        if not search["name"].strip() or len(search["name"]) > 100 or _plain_text(search["name"]):
            return f"search {n}: name must be 1 to 100 characters of plain text"
        try:
            query = parse_query(search["q"])
        except BadQuery as error:
            return f"search {n} ({search['name']!r}): q: {error}"
        if tag_slug(search["name"]) in names:
            return f"search {n}: another search has the name {search['name']!r}"
        if query.text in queries:
            return f"search {n} ({search['name']!r}): another search has the same q"
        names.add(tag_slug(search["name"]))
        queries.add(query.text)
    return None


@dataclass(frozen=True)
class Option:
    key: str  # "section.name"
    type: str  # "str", "int", "float", "bool", "path", "globs", "url", "searches"
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None

    @property
    def field(self) -> str:
        return self.key.replace(".", "_")


DAY = 86_400
MB = 1024 * 1024

OPTIONS: tuple[Option, ...] = (
    Option("searches", "searches", [],
           "Saved searches, as [[searches]] tables with a name and a q: each is in the OPML and "
           "written to {feeds.export_dir}/searches/.", _saved_searches),
    Option("seeds.dir", "path", "seeds", "Folder of saved page text files to watch."),
    Option("seeds.interval_seconds", "int", 60,
           "Seconds between scheduled scans of the seed folder.", _between(1, 7 * DAY)),
    Option("seeds.ignore", "globs", list(DEFAULT_IGNORE),
           "File name patterns never read (hidden, editor swap and partial files)."),
    Option("seeds.watch", "bool", True,
           "React to file-system events at once; the interval scan stays as the safety net."),
    Option("seeds.settle_seconds", "float", 0.5,
           "A file modified more recently than this may still be being written: it waits.",
           _between(0, 3600)),
    Option("seeds.max_file_bytes", "int", 10 * MB,
           "Largest seed file read, in bytes; a larger one is recorded as skipped with the reason.",
           _between(1024, 1024 * MB)),
    Option("database.url", "url", "sqlite:///data/aggregator.db",
           "SQLAlchemy URL of the store; a relative SQLite path is relative to this file."),
    Option("server.host", "str", "127.0.0.1",
           "Address to listen on. Loopback by default: the service has no authentication, "
           "so exposing it is a choice to make (0.0.0.0, or a reverse proxy)."),
    Option("server.port", "int", 8080, "TCP port to listen on.", _port),
    Option("server.base_url", "str", "",
           "Public address of the service; every link in the feeds starts with it. "
           "Empty: http://{server.host}:{server.port}.", _http_url),
    Option("feeds.title", "str", "News aggregator", "Title of the overall feed; tag feeds add the tag.",
           _plain_text),
    Option("feeds.description", "str", "Deduplicated news from the seed folder.",
           "Subtitle / description of the feeds.", _plain_text),
    Option("feeds.language", "str", "en", "Language of the feeds (RSS <language>, Atom xml:lang).", _language),
    Option("feeds.limit", "int", 50, "Entries in a feed unless ?limit= asks for another number.",
           _between(1, 10_000)),
    Option("feeds.max_limit", "int", 500, "Highest ?limit= a client may ask for.", _between(1, 10_000)),
    Option("feeds.max_age_seconds", "int", 300,
           "Cache-Control max-age of feed responses: how long clients may reuse them.", _between(0, 365 * DAY)),
    Option("feeds.cache_bytes", "int", 64 * MB,
           "Bytes of rendered feeds (and their gzip) the server keeps in memory; the oldest go first.",
           _between(MB, 16 * 1024 * MB)),
    Option("feeds.export_dir", "path", "feeds",
           "Folder the rendered feeds are also written to, for any static web server."),
    Option("log.level", "str", "info", "Least important log messages shown.", _log_level),
    Option("log.access", "bool", True,
           "One line per HTTP request (at info level), written by a thread of its own."),
    Option("daemon.pid_file", "path", "data/aggregator.pid",
           "Where `aggregator serve` records its process id (used by start, stop and status)."),
    Option("daemon.log_file", "path", "data/aggregator.log",
           "Where `aggregator start` sends the detached service's log."),
)


@dataclass(frozen=True)
class Settings:
    searches: tuple[SavedSearch, ...]
    seeds_dir: Path
    seeds_interval_seconds: int
    seeds_ignore: tuple[str, ...]
    seeds_watch: bool
    seeds_settle_seconds: float
    seeds_max_file_bytes: int
    database_url: URL  # parsed and checked once, here
    server_host: str
    server_port: int
    server_base_url: str
    feeds_title: str
    feeds_description: str
    feeds_language: str
    feeds_limit: int
    feeds_max_limit: int
    feeds_max_age_seconds: int
    feeds_cache_bytes: int
    feeds_export_dir: Path
    log_level: str
    log_access: bool
    daemon_pid_file: Path
    daemon_log_file: Path
    config_path: Path | None = None

    @property
    def base_url(self) -> str:
        """The public address: as configured, else the address the server listens on
        (a wildcard address names this host)."""
        if self.server_base_url:
            return self.server_base_url.rstrip("/")
        host = socket.gethostname() if self.server_host in ("", "0.0.0.0", "::") else self.server_host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.server_port}"


def _check_type(option: Option, value: Any) -> str | None:
    if option.type == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return None
        return f"expected a number, got {value!r}"
    if option.type == "bool":
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    expected = {
        "str": (str, "a string"),
        "path": (str, "a path string"),
        "url": (str, "a URL string"),
        "int": (int, "an integer"),
    }
    if option.type == "globs":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return None
        return "expected a list of strings"
    if option.type == "searches":
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return None
        return "expected [[searches]] tables, each with a name and a q"
    kind, name = expected[option.type]
    if isinstance(value, bool) or not isinstance(value, kind):
        return f"expected {name}, got {value!r}"
    return None


def _resolve(option: Option, value: Any, base: Path) -> Any:
    if option.type == "path":
        return (base / Path(value).expanduser()).resolve()
    if option.type == "globs":
        return tuple(value)
    if option.type == "searches":
        return tuple(SavedSearch(name=s["name"].strip(), q=parse_query(s["q"]).text, slug=tag_slug(s["name"]))
                     for s in value)
    if option.type == "float":
        return float(value)
    if option.type == "url":
        # Relative SQLite paths are taken relative to the config file.
        try:
            return database_url(value, base)
        except StorageError as error:
            raise ConfigError(f"{option.key}: {error}") from None
    return value


def flatten(document: dict[str, Any]) -> dict[str, Any]:
    """{"seeds": {"dir": x}} → {"seeds.dir": x}; a non-table at the top stays as is."""
    flat: dict[str, Any] = {}
    for section, table in document.items():
        if isinstance(table, dict):
            for name, value in table.items():
                flat[f"{section}.{name}"] = value
        else:
            flat[section] = table
    return flat


def settings_from(values: dict[str, Any], base: Path, config_path: Path | None = None) -> Settings:
    """Check raw values (flat keys) and build Settings; ConfigError names the key."""
    known = {option.key: option for option in OPTIONS}
    for key in values:
        if key not in known:
            raise ConfigError(f"{key}: unknown configuration key")
    resolved: dict[str, Any] = {}
    for option in OPTIONS:
        value = values.get(option.key, option.default)
        problem = _check_type(option, value) or (option.check(value) if option.check else None)
        if problem:
            raise ConfigError(f"{option.key}: {problem}")
        resolved[option.field] = _resolve(option, value, base)
    settings = Settings(**resolved, config_path=config_path)
    if settings.feeds_limit > settings.feeds_max_limit:
        raise ConfigError(f"feeds.limit: {settings.feeds_limit} is more than feeds.max_limit "
                          f"({settings.feeds_max_limit}), the most a feed may hold")
    if not settings.seeds_dir.is_dir():
        raise ConfigError(f"seeds.dir: folder {str(settings.seeds_dir)!r} does not exist")
    return settings


def config_path(explicit: str | None) -> Path | None:
    """--config wins, then $AGGREGATOR_CONFIG, then ./config.toml if present."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    default = Path(DEFAULT_CONFIG)
    return default if default.exists() else None


def load_settings(path: Path | None) -> Settings:
    if path is None:
        return settings_from({}, Path.cwd())
    try:
        # Opened without waiting and checked before it is read: a FIFO or a
        # device given as the config file would block or never end.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ConfigError(f"config file {str(path)!r} is not a regular file")
            document = tomllib.loads(handle.read(MAX_CONFIG_BYTES).decode("utf-8"))
    except FileNotFoundError as error:
        raise ConfigError(f"config file {str(path)!r} not found") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {error}") from error
    return settings_from(flatten(document), path.resolve().parent, config_path=path.resolve())


def describe() -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) of every option, for `aggregator config`."""
    return [(o.key, o.type, repr(o.default), o.help) for o in OPTIONS]


assert {o.field for o in OPTIONS} == {f.name for f in fields(Settings)} - {"config_path"}
