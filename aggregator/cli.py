"""The `aggregator` command. Thin: parse arguments, call the modules, print."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from aggregator import __version__, daemon
from aggregator.config import CONFIG_ENV, DEFAULT_CONFIG, Settings, config_path, describe, load_settings
from aggregator.daemon import JsonFormatter, TextFormatter
from aggregator.errors import AggregatorError, ConfigError
from aggregator.ingest import run_once
from aggregator.model import FileStatus, ScanReport, StoredItem
from aggregator.names import counted
from aggregator.publish import export_feeds
from aggregator.search import BadQuery, parse_query
from aggregator.storage import Storage, missing_database

T = TypeVar("T")
START_SECONDS = 30  # the first scan of a large folder happens after the port opens
STOP_SECONDS = 10

log = logging.getLogger("aggregator")


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # APScheduler reports every run at INFO; our own scan line says more.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # The page readers say when a page gives them nothing; our own line says which file.
    for chatty in ("trafilatura", "htmldate", "courlan", "justext"):
        logging.getLogger(chatty).setLevel(logging.ERROR)


def item_json(item: StoredItem) -> dict[str, Any]:
    return {
        "id": item.guid,
        "key": item.key,
        "title": item.title,
        "tags": [tag.name for tag in item.tags],
        "summary": item.summary,
        "content": item.content,
        "published": item.published.isoformat(),
        "updated": item.updated.isoformat(),
        "sources": list(item.sources),
        "link": item.link,
    }


def from_store(settings: Settings, read: Callable[[Storage], T]) -> T:
    with Storage(settings.database_url) as storage:
        return read(storage)


def print_report(report: ScanReport) -> None:
    print(f"files: {report.files_seen} seen, {report.files_changed} changed, "
          f"{report.not_read_counts}, {report.missing} gone")
    print(f"items: {report.new_items} new, {report.updated_items} updated")
    for result in report.files_not_read:
        print(f"  {result.status}: {result.path}: {result.reason}")


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.port:
        settings = replace(settings, server_port=args.port)
    return asyncio.run(daemon.serve(settings, ingest=args.ingest))


def wait_until(done: Callable[[], bool], seconds: float, step: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(step)
    return done()


def local_url(settings: Settings, path: str) -> str:
    host = settings.server_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.server_port}{path}"


def answers(settings: Settings) -> bool:
    try:
        with urllib.request.urlopen(local_url(settings, "/healthz"), timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def cmd_start(settings: Settings, args: argparse.Namespace) -> int:
    pid_file = settings.daemon_pid_file
    pid = daemon.read_pid(pid_file)
    if pid and daemon.is_running(pid):
        print(f"aggregator: already running (pid {pid}); `aggregator stop` first", file=sys.stderr)
        return 1
    if pid:
        print(f"removing stale pid file {pid_file} (pid {pid} is gone)")
        pid_file.unlink(missing_ok=True)
    settings.daemon_log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "aggregator"]
    if settings.config_path:
        command += ["--config", str(settings.config_path)]
    command += ["--log-format", args.log_format, "serve"]
    with open(settings.daemon_log_file, "ab") as log_file:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                   start_new_session=True)
    up = wait_until(lambda: process.poll() is not None
                    or (answers(settings) and daemon.read_pid(pid_file) == process.pid), START_SECONDS, 0.1)
    if process.poll() is not None:
        print(f"aggregator: the service exited at start (status {process.returncode}); "
              f"see {settings.daemon_log_file}", file=sys.stderr)
        return 1
    if not up:
        print(f"aggregator: no answer within {START_SECONDS}s; see {settings.daemon_log_file}",
              file=sys.stderr)
        return 1
    print(f"aggregator started (pid {process.pid}), serving {settings.base_url}/")
    return 0


def cmd_stop(settings: Settings, args: argparse.Namespace) -> int:
    pid = daemon.read_pid(settings.daemon_pid_file)
    if pid is None or not daemon.is_running(pid):
        settings.daemon_pid_file.unlink(missing_ok=True)
        print("aggregator is not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    if wait_until(lambda: not daemon.is_running(pid), STOP_SECONDS, 0.05):
        print(f"aggregator stopped (pid {pid})")
        return 0
    print(f"aggregator: pid {pid} still running {STOP_SECONDS}s after SIGTERM", file=sys.stderr)
    return 1


def cmd_restart(settings: Settings, args: argparse.Namespace) -> int:
    return cmd_stop(settings, args) or cmd_start(settings, args)


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    """LSB exit codes: 0 running, 1 dead with a stale pid file, 3 stopped."""
    pid = daemon.read_pid(settings.daemon_pid_file)
    if pid is None:
        state, code = "stopped", 3
    elif not daemon.is_running(pid):
        state, code = f"dead (stale pid file {settings.daemon_pid_file}, pid {pid})", 1
    else:
        state, code = f"running (pid {pid})", 0
    if not args.json:
        print(f"aggregator is {state}")
        return code
    report: dict[str, Any] = {"state": state.split(" ")[0], "pid": pid}
    if code == 0:
        try:
            with urllib.request.urlopen(local_url(settings, "/status.json"), timeout=5) as response:
                report.update(json.load(response))
        except OSError as error:
            report["error"] = f"no answer from {local_url(settings, '/status.json')}: {error}"
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return code


def cmd_systemd_unit(settings: Settings, args: argparse.Namespace) -> int:
    print(daemon.systemd_unit(settings, args.user), end="")
    return 0


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    with Storage(settings.database_url) as storage, storage.ingest_lock():
        report = run_once(storage, settings.seeds_dir, settings.seeds_ignore)
        if report.changed_data or not settings.feeds_export_dir.exists():
            export_feeds(storage, settings)
    print_report(report)
    return 0


def print_items(items: list[StoredItem], as_json: bool) -> None:
    if as_json:
        json.dump([item_json(i) for i in items], sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        for item in items:
            tags = ", ".join(t.name for t in item.tags)
            print(f"{item.published:%Y-%m-%d}  {item.key}  {item.title}" + (f"  [{tags}]" if tags else ""))


def cmd_items(settings: Settings, args: argparse.Namespace) -> int:
    print_items(from_store(settings, Storage.all_items), args.json)
    return 0


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    try:
        query = parse_query(args.query)
    except BadQuery as error:  # 2, as grep: a query that cannot be read is no "nothing found"
        print(f"aggregator: {error}", file=sys.stderr)
        return 2
    found = from_store(settings, lambda storage: storage.search(query, args.limit, by_rank=args.sort == "rank"))
    print_items(found, args.json)
    return 0 if found else 1  # as grep: a script can tell "nothing" from "something"


def cmd_tags(settings: Settings, args: argparse.Namespace) -> int:
    tags = from_store(settings, Storage.tags)
    if args.json:
        print(json.dumps([{"name": t.name, "slug": t.slug, "items": n} for t, n in tags],
                         ensure_ascii=False, indent=2))
    else:
        for tag, count in tags:
            print(f"{tag.name}\t{tag.slug}\t{count}")
    return 0


def cmd_sources(settings: Settings, args: argparse.Namespace) -> int:
    sources = from_store(settings, Storage.sources)
    if args.json:
        print(json.dumps([
            {"path": s.path, "status": s.status, "reason": s.reason, "items": s.item_count,
             "checked_at": s.checked_at.isoformat() if s.checked_at else None}
            for s in sources.values()
        ], ensure_ascii=False, indent=2))
        return 0
    for source in sources.values():
        detail = counted(source.item_count, "item") if source.status == FileStatus.OK else source.reason
        print(f"{source.status}\t{source.path}\t{detail}")
    return 0


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    folder = Path(args.dir).resolve() if args.dir else settings.feeds_export_dir
    written, total = from_store(settings, lambda storage: export_feeds(storage, settings, folder))
    if written:
        print(f"{len(written)} of {counted(total, 'feed file')} written to {folder}")
    else:
        print(f"all {counted(total, 'feed file')} in {folder} were up to date")
    return 0


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    from aggregator.evaluate import evaluate

    result = evaluate(Path(args.dir), Path(args.expected))
    print("\n".join(result.lines()))
    return 0 if result.perfect else 1


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "check" and (missing := missing_database(settings.database_url)) is not None:
        # A check that created the file it looks for would find what it made.
        print(f"{missing}: `aggregator db upgrade` creates it", file=sys.stderr)
        return 1
    with Storage(settings.database_url, migrate=args.action == "upgrade") as storage:
        current, head = storage.schema_revisions()
    print(f"database schema: {current} (this aggregator: {head})")
    return 0


def cmd_config(settings: Settings, args: argparse.Namespace) -> int:
    for key, kind, default, help_text in describe():
        print(f"{key} ({kind}, default {default}): {help_text}")
    return 0


MAX_LISTED = 100_000


def positive(text: str) -> int:
    """A count from 1 up, for argparse: anything else is a usage error naming the value."""
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_LISTED):
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_LISTED}, got {text!r}")
    return int(text)


def common_options(default: object) -> argparse.ArgumentParser:
    """--config and --log-format, taken before or after the command. After it
    they default to nothing, so a value given before is kept."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--config", metavar="PATH", default=default,
                         help="configuration file (default: $AGGREGATOR_CONFIG, else ./config.toml)")
    options.add_argument("--log-format", choices=("text", "json"), default=default if default else "text",
                         help="log lines as text (default) or one JSON object per line")
    return options


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="aggregator", parents=[common_options(None)],
        description="Turn a folder of saved news pages into deduplicated RSS, Atom and JSON Feed feeds.")
    top.add_argument("--version", action="version", version=f"aggregator {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    after = common_options(argparse.SUPPRESS)

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text, parents=[after])
        command.set_defaults(func=func)
        return command

    serve = add("serve", cmd_serve, "scan the seed folder, rescan on changes and on a schedule, and "
                "serve the feeds, in the foreground (what a supervisor runs)")
    serve.add_argument("--no-ingest", dest="ingest", action="store_false",
                       help="a replica: serve what another process ingests into the same database")
    serve.add_argument("--port", type=int, help="listen on this port instead of server.port")
    add("start", cmd_start, "start the service in the background (pid file, log file)")
    add("stop", cmd_stop, "stop the background service (SIGTERM) and wait for it")
    add("restart", cmd_restart, "stop, then start the background service")
    add("status", cmd_status, "is the service running: exit 0 running, 1 dead, 3 stopped").add_argument(
        "--json", action="store_true", help="also the last scan, items and failed files")
    add("systemd-unit", cmd_systemd_unit, "print a systemd unit for this configuration").add_argument(
        "--user", action="store_true", help="a user service (systemctl --user) instead of a system one")
    add("ingest", cmd_ingest, "scan the seed folder once and report what changed")
    add("items", cmd_items, "list stored items").add_argument("--json", action="store_true")
    search = add("search", cmd_search, "list the items a query finds, newest first "
                 "(exit 1 when none does); the query language is the search page's")
    search.add_argument("query", help='e.g. \'idlib -assad\', \'"no-fly zone"\', \'tag:idlib since:2025-03-01\'')
    search.add_argument("--json", action="store_true", help="as `items --json`")
    search.add_argument("--limit", type=positive, default=50, help="at most this many items (default 50)")
    search.add_argument("--sort", choices=("newest", "rank"), default="newest",
                        help="newest first (default), or best first (a title match first)")
    add("tags", cmd_tags, "list tags with their slugs and item counts").add_argument(
        "--json", action="store_true")
    add("sources", cmd_sources, "list seed files with their status").add_argument(
        "--json", action="store_true")
    add("export", cmd_export, "write the static feed files").add_argument(
        "dir", nargs="?", help="folder to write to (default: feeds.export_dir)")
    evaluation = add("eval", cmd_eval, "score item identity on a labelled folder "
                     "(precision, recall, wrong and missed merges, tag accuracy)")
    evaluation.add_argument("dir", help="folder of seed files")
    evaluation.add_argument("expected", help="labels: JSON naming the sightings of each story")
    add("db", cmd_db, "check the database schema, or upgrade it to this version").add_argument(
        "action", choices=("upgrade", "check"))
    add("config", cmd_config, "list every configuration key with its default")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    path = config_path(args.config)
    try:
        settings = load_settings(path)
    except ConfigError as error:
        # Without a file, say where one was looked for: the defaults may not fit this folder.
        looked = "" if path else f" (no {DEFAULT_CONFIG} here and ${CONFIG_ENV} unset: the defaults were used)"
        print(f"aggregator: configuration error: {error}{looked}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, args.log_format)
    try:
        return args.func(settings, args)
    except AggregatorError as error:
        print(f"aggregator: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`aggregator items | head`): say nothing more,
        # and let nothing be flushed into the closed pipe at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
