"""The `aggregator` command. Thin: parse arguments, call the modules, print."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from aggregator import __version__
from aggregator.config import Settings, config_path, describe, load_settings
from aggregator.errors import AggregatorError, ConfigError
from aggregator.ingest import run_once
from aggregator.model import ScanReport, StoredItem
from aggregator.publish import export_feeds
from aggregator.storage import Storage

log = logging.getLogger("aggregator")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # APScheduler reports every run at INFO; our own scan line says more.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


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
    }


def print_report(report: ScanReport) -> None:
    failed = report.files_failed
    print(f"files: {report.files_seen} seen, {report.files_changed} changed, "
          f"{len(failed)} failed, {report.missing} gone")
    print(f"items: {report.new_items} new, {report.updated_items} updated")
    for result in failed:
        print(f"  {result.status}: {result.path}: {result.reason}")


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from aiohttp import web

    from aggregator.web import make_app

    log.info("serving %s on http://%s:%d (feeds at %s/feeds/all.atom)", settings.seeds_dir,
             settings.server_host, settings.server_port, settings.base_url)
    web.run_app(make_app(settings), host=settings.server_host, port=settings.server_port,
                print=None, access_log_format='%a "%r" %s %b %Tfs')
    return 0


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    storage = Storage(settings.database_url)
    try:
        report = run_once(storage, settings.seeds_dir, settings.seeds_ignore)
        if report.changed_data or not settings.feeds_export_dir.exists():
            export_feeds(storage, settings)
    finally:
        storage.close()
    print_report(report)
    return 0


def cmd_items(settings: Settings, args: argparse.Namespace) -> int:
    storage = Storage(settings.database_url)
    try:
        items = storage.all_items()
    finally:
        storage.close()
    if args.json:
        json.dump([item_json(i) for i in items], sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        for item in items:
            tags = ", ".join(t.name for t in item.tags)
            print(f"{item.published:%Y-%m-%d}  {item.key}  {item.title}" + (f"  [{tags}]" if tags else ""))
    return 0


def cmd_tags(settings: Settings, args: argparse.Namespace) -> int:
    storage = Storage(settings.database_url)
    try:
        tags = storage.tags()
    finally:
        storage.close()
    if args.json:
        print(json.dumps([{"name": t.name, "slug": t.slug, "items": n} for t, n in tags],
                         ensure_ascii=False, indent=2))
    else:
        for tag, count in tags:
            print(f"{tag.name}\t{tag.slug}\t{count}")
    return 0


def cmd_sources(settings: Settings, args: argparse.Namespace) -> int:
    storage = Storage(settings.database_url)
    try:
        sources = storage.sources()
    finally:
        storage.close()
    if args.json:
        print(json.dumps([
            {"path": s.path, "status": s.status, "reason": s.reason, "items": s.item_count,
             "checked_at": s.checked_at.isoformat() if s.checked_at else None}
            for s in sources.values()
        ], ensure_ascii=False, indent=2))
        return 0
    for source in sources.values():
        detail = f"{source.item_count} items" if source.status == "ok" else source.reason
        print(f"{source.status}\t{source.path}\t{detail}")
    return 0


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    folder = Path(args.dir).resolve() if args.dir else settings.feeds_export_dir
    storage = Storage(settings.database_url)
    try:
        written = export_feeds(storage, settings, folder)
    finally:
        storage.close()
    print(f"{len(written)} feed files written to {folder}")
    return 0


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    from aggregator.evaluate import evaluate

    result = evaluate(Path(args.dir), Path(args.expected))
    print("\n".join(result.lines()))
    return 0 if result.perfect else 1


def cmd_config(settings: Settings, args: argparse.Namespace) -> int:
    for key, kind, default, help_text in describe():
        print(f"{key} ({kind}, default {default}): {help_text}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="aggregator",
        description="Turn a folder of saved news pages into deduplicated RSS and Atom feeds.")
    top.add_argument("--config", metavar="PATH",
                     help="configuration file (default: $AGGREGATOR_CONFIG, else ./config.toml)")
    top.add_argument("--version", action="version", version=f"aggregator {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(func=func)
        return command

    add("serve", cmd_serve, "scan the seed folder, rescan on a schedule and serve the feeds")
    add("ingest", cmd_ingest, "scan the seed folder once and report what changed")
    add("items", cmd_items, "list stored items").add_argument("--json", action="store_true")
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
    add("config", cmd_config, "list every configuration key with its default")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings(config_path(args.config))
    except ConfigError as error:
        print(f"aggregator: configuration error: {error}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    try:
        return args.func(settings, args)
    except AggregatorError as error:
        print(f"aggregator: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
