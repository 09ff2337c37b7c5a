"""One scan of the seed folder: seeds → parse → dedupe → storage.

Each changed file is written whole or not at all (files share a transaction
in small batches), so a crash never leaves half a file in the store; a bad
file is recorded with its reason and the scan goes on.
Blocking: run it in a worker thread, never on the event loop."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from aggregator import dedupe
from aggregator.clock import Clock, utc_now
from aggregator.errors import AggregatorError, SeedError
from aggregator.model import (
    FileResult,
    FileState,
    FileStatus,
    Fingerprint,
    KnownItem,
    PagePlan,
    ParsedItem,
    PlannedItem,
    ScanReport,
    SourceFile,
)
from aggregator.names import counted
from aggregator.read import read_page
from aggregator.seeds import (
    DEFAULT_IGNORE,
    DEFAULT_MAX_FILE_BYTES,
    Listing,
    SeedFile,
    asset_reason,
    by_name,
    content_hash,
    read_seed,
)
from aggregator.storage import MAX_ITEMS_PER_TOPIC, Storage, Writer

log = logging.getLogger(__name__)


def mtime_of(seed: SeedFile) -> datetime:
    return datetime.fromtimestamp(seed.mtime_ns / 1e9, tz=timezone.utc)


def source_of(seed: SeedFile, sha256: str, status: FileStatus, reason: str | None = None,
              items: int = 0) -> SourceFile:
    return SourceFile(seed.rel, seed.size, seed.mtime_ns, sha256, status, reason, items)


def sightings_of(items: tuple[ParsedItem, ...], seen: datetime) -> list[tuple[ParsedItem, Fingerprint]]:
    """A page's items, each dated and fingerprinted. An undated sighting is as
    old as the saved page: merges take the earliest date of all sightings,
    whatever order the files come in."""
    return [(replace(item, published=item.published or seen),
             dedupe.fingerprint(item.title, item.text, item.link, item.entry_id))
            for item in items]


def candidates(writer: Writer, fps: list[Fingerprint]) -> dict[int, KnownItem]:
    """Stored items that may be one of the fingerprinted texts, by id: the
    store reads the rows of their keys, dedup keeps the candidates."""
    by_key = dedupe.lookup_keys(fps)
    found = dedupe.candidate_keys(writer.keyed_rows(by_key), by_key)
    if not found:
        return {}
    return {item.id: item for item in writer.known_items(found, with_tags=True)}


def related_candidates(writer: Writer, sightings: list[tuple[str, Fingerprint]]) -> list[KnownItem]:
    """For each (headline, fingerprint), the stored items that may report the
    same event: found by headline topic-word pairs, kept when the headlines
    are related (read before any text is)."""
    keys = {key for _, fp in sightings for key in dedupe.topic_index_keys(fp)}
    rows = writer.keyed_rows(keys, MAX_ITEMS_PER_TOPIC)
    wanted = dedupe.related_wanted(sightings, rows)
    if not wanted:
        return []
    close = dedupe.related_headlines(writer.titles(wanted), wanted)
    if not close:
        return []
    return writer.known_items(dedupe.topic_keys_of(rows, close))


def plan_with_store(writer: Writer, sightings: list[tuple[ParsedItem, Fingerprint]]) -> PagePlan:
    """Decide what a page changes, reading the store only for candidates."""
    plan = dedupe.plan_page(sightings, candidates(writer, [fp for _, fp in sightings]))
    plan = replace(plan, items=tuple(free_guids(writer, plan.items)))
    linking = [(sightings[position][0].title, sightings[position][1]) for position in plan.linking]
    related = related_candidates(writer, linking) if linking else []
    return replace(plan, links=dedupe.plan_links(plan, sightings, related))


def free_guids(writer: Writer, items: tuple[PlannedItem, ...]) -> list[PlannedItem]:
    """Only two distinct stories with the same title and the same text could
    share an id, and those are merged; numbering keeps the insert safe anyway."""
    taken = writer.taken_guids([item.guid for item in items if item.is_new])
    result = []
    for item in items:
        n, guid = 1, item.guid
        while item.is_new and guid in taken:
            n += 1
            guid = dedupe.item_guid(item.title, f"{item.text}\n#{n}")
            taken |= writer.taken_guids([guid])
        result.append(replace(item, guid=guid))
    return result


def ingest_file(storage: Storage, seed: SeedFile, data: bytes, sha256: str, now: datetime,
                grown: bool = False) -> FileResult:
    """`grown`: the version read before is where this one starts; the file
    was still being written then, and what only that version showed (a
    teaser cut mid-word) gives way to this one."""
    # An undated item is as old as the saved page, but never in the future.
    seen = min(mtime_of(seed), now)
    try:
        if (asset := asset_reason(seed.rel, data)) is not None:
            raise SeedError(asset, FileStatus.IGNORED)
        page = read_page(data, seen, seed.rel)
    except SeedError as error:
        with storage.writer(now) as w:
            w.record_source(source_of(seed, sha256, error.status, str(error)))
        # A saved page's images and styles are expected, not worth a warning each.
        level = logging.DEBUG if error.status == FileStatus.IGNORED else logging.WARNING
        log.log(level, "%s: %s: %s", seed.rel, error.status, error, extra={"path": seed.rel})
        return FileResult(seed.rel, error.status, str(error))
    sightings = sightings_of(page.items, seen)  # pure work, before the transaction
    with storage.writer(now) as w:
        if grown and (forgotten := w.forget_items_only_from(seed.rel)):
            log.info("%s: grew since it was read: %s of its earlier version replaced", seed.rel,
                     counted(forgotten, "item"), extra={"path": seed.rel})
        plan = plan_with_store(w, sightings)  # reads only: the write lock is taken below
        source_id = w.record_source(source_of(seed, sha256, FileStatus.OK, items=len(page.items)))
        w.save(plan, source_id)
    log.info("%s: %s page, %s (%d new, %d updated)", seed.rel, page.layout,
             counted(len(page.items), "item"), plan.new_items, plan.updated_items, extra={"path": seed.rel})
    return FileResult(seed.rel, FileStatus.OK, None, plan.new_items, plan.updated_items, len(page.items),
                      seed.mtime_ns / 1e9)


def scan_file(storage: Storage, seed: SeedFile, previous: FileState | None, clock: Clock,
              max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> FileResult | None:
    """Read one file whose size or mtime changed; None when its bytes did not.
    `previous`: what its last read left, if it was ever listed."""
    known_sha = previous.sha256 if previous is not None and previous.settled else None
    known_size = previous.size if previous is not None and previous.status == FileStatus.OK else 0
    try:
        if seed.odd is not None:
            raise SeedError(seed.odd)
        data = read_seed(seed, max_bytes)
    except SeedError as error:
        # Not read (a link, a FIFO, too large, unreadable): recorded with the
        # reason, and what earlier versions of it gave stays.
        log.warning("%s: %s: %s", seed.rel, error.status, error, extra={"path": seed.rel})
        with storage.writer(clock()) as w:
            w.record_source(source_of(seed, known_sha or "", error.status, str(error)))
        return FileResult(seed.rel, error.status, str(error))
    sha256 = content_hash(data)
    if sha256 == known_sha:
        with storage.writer(clock()) as w:
            w.touch_source(seed.rel, seed.size, seed.mtime_ns)
        return None
    grown = known_sha is not None and 0 < known_size < len(data) and content_hash(data[:known_size]) == known_sha
    return ingest_file(storage, seed, data, sha256, clock(), grown)


def run_once(storage: Storage, folder: Path, ignore: tuple[str, ...] = DEFAULT_IGNORE,
             clock: Clock = utc_now, settle_seconds: float = 0.0,
             stopping: Callable[[], bool] = lambda: False,
             max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> ScanReport:
    """Scan the folder once. A file modified less than `settle_seconds` ago may
    still be being written: it is left for a later scan (counted as deferred).
    `stopping` is asked between files, so a shutdown waits for one file only."""
    started = clock()
    storage.check_file()  # a replaced database fails the scan, not each file
    known = storage.folder_state()
    now_ns = time.time_ns()
    settled_before = now_ns - int(settle_seconds * 1e9)
    present: set[str] = set()
    changed: list[SeedFile] = []
    deferred = 0
    # Unchanged files are passed over as they are listed: on a rescan of tens
    # of thousands of files, nothing is kept of them but their names.
    listing = Listing(folder, ignore)
    for seed in listing:
        present.add(seed.rel)
        # Only a recent mtime means "still being written"; one in the future
        # (a clock that was ahead) would otherwise defer the file forever.
        if settled_before < seed.mtime_ns <= now_ns:
            deferred += 1
        elif seed[1:4] not in known.settled:  # (rel, size, mtime_ns) as last read
            changed.append(seed)
    results = scan_changed(storage, by_name(changed), known.listed, clock, max_file_bytes, stopping)
    gone = sorted(path for path in known.listed - present if not listing.is_unseen(path))
    if gone:
        with storage.writer(clock()) as w:
            w.mark_missing(gone)
    return ScanReport(started=started, finished=clock(), files_seen=len(present),
                      files=tuple(results), missing=len(gone), deferred=deferred)


# Files share a transaction up to these bounds: a stop that cannot wait
# abandons at most one batch, read again on the next start.
BATCH_FILES = 64
BATCH_BYTES = 4 * 1024 * 1024
BATCH_SECONDS = 1.0


def batch_full(written: Sequence[SeedFile], size: int, opened: float, now: float) -> bool:
    """Commit the files written so far before reading one of `size` bytes?"""
    return bool(written) and (len(written) >= BATCH_FILES or now - opened >= BATCH_SECONDS
                              or sum(seed.size for seed in written) + size > BATCH_BYTES)


def scan_changed(storage: Storage, seeds: Iterable[SeedFile], listed: AbstractSet[str], clock: Clock,
                 max_file_bytes: int, stopping: Callable[[], bool]) -> list[FileResult]:
    """Read the changed files, several to a transaction (`batch_full`). When a
    file or a commit fails, the batch is rolled back and each of its files
    is read again in a transaction of its own: one file's failure still
    costs no other file anything."""
    results: dict[str, FileResult | None] = {}

    def scan(seed: SeedFile) -> FileResult | None:
        # A file never read, or marked missing, has no state worth a query.
        previous = storage.file_state(seed.rel) if seed.rel in listed else None
        return scan_file(storage, seed, previous, clock, max_file_bytes)

    with storage.batch() as batch:
        def alone(seed: SeedFile) -> FileResult | None:
            try:
                result = scan(seed)
                batch.commit()
                return result
            except Exception as error:
                batch.rollback()
                return failed(seed, error)

        def again_alone(written: list[SeedFile]) -> None:
            """The batch was rolled back: each of its files in a transaction of its own."""
            results.update((seed.rel, alone(seed)) for seed in written)
            written.clear()

        def commit(written: list[SeedFile]) -> None:
            try:
                batch.commit()
            except AggregatorError:
                again_alone(written)
            written.clear()

        written: list[SeedFile] = []
        opened = time.monotonic()
        for seed in seeds:
            if stopping():
                break
            if batch_full(written, seed.size, opened, time.monotonic()):
                commit(written)
            if not written:
                opened = time.monotonic()
            try:
                results[seed.rel] = scan(seed)
            except Exception as error:
                batch.rollback()
                if not written:  # it was alone: its failure is its own
                    results[seed.rel] = failed(seed, error)
                    continue
                again_alone(written)
                results[seed.rel] = alone(seed)
            else:
                written.append(seed)
        commit(written)
    return [result for result in results.values() if result is not None]


def failed(seed: SeedFile, error: Exception) -> FileResult:
    """The result of a file the store refused, or a bug met: logged, and the
    file is read again by the next scan (its source row is unchanged)."""
    if isinstance(error, AggregatorError):
        # The store refused this file (locked, full …): nothing of it was written.
        log.error("%s: failed: %s", seed.rel, error, extra={"path": seed.rel})
        return FileResult(seed.rel, FileStatus.FAILED, str(error))
    # A bug must not stop the other files.
    log.error("%s: failed: unexpected error", seed.rel, exc_info=error, extra={"path": seed.rel})
    return FileResult(seed.rel, FileStatus.FAILED, f"unexpected error: {error!r}")
