"""The ingest path against a real SQLite file."""

import os
import shutil

import sqlalchemy

from aggregator import dedupe
from aggregator.ingest import BATCH_BYTES, BATCH_FILES, BATCH_SECONDS, batch_full, candidates, run_once, scan_file
from aggregator.read import read_page
from aggregator.seeds import Listing
from aggregator.storage import KEYS_PER_QUERY, MAX_ITEMS_PER_KEY, Storage

from helpers import SEEDS, both_databases, seed_page, write_seed


def scan(storage, settings, clock):
    clock.advance()
    return run_once(storage, settings.seeds_dir, settings.seeds_ignore, clock)


def ids_by_title(storage):
    return {item.title: item.guid for item in storage.all_items()}


@both_databases
def test_shipped_seeds_give_30_items_with_tags(storage, settings, clock):
    report = scan(storage, settings, clock)
    assert (report.files_seen, report.files_changed, len(report.files_not_read)) == (5, 5, 0)
    assert sum(f.parsed_items for f in report.files) == 31
    assert [f.path for f in report.files] == sorted(path.name for path in settings.seeds_dir.iterdir())
    assert (report.new_items, report.updated_items) == (30, 1)
    items = storage.all_items()
    assert len(items) == 30
    assert {(t.name, t.slug, n) for t, n in storage.tags()} == {("Idlib", "idlib", 10), ("Assad", "assad", 10)}
    assert len(storage.newest_items(100, tag_slugs=("idlib",))) == 10
    assert len({item.guid for item in items}) == 30


@both_databases
def test_teaser_and_article_merge_into_one_item(storage, settings, clock):
    scan(storage, settings, clock)
    teaser, article = seed_page("000").items[0], seed_page("002").items[0]
    [merged] = [i for i in storage.all_items() if i.title == article.title]
    assert merged.content == article.content
    assert merged.summary == teaser.summary
    assert merged.sources == ("000_80a9e1c70313a31c.txt", "002_8df2fe3ddce01457.txt")


@both_databases
def test_wire_article_is_dated_by_its_dateline(storage, settings, clock):
    scan(storage, settings, clock)
    [wire] = [i for i in storage.all_items() if i.title.endswith("— Lavrov")]
    assert wire.published.isoformat() == "2025-12-17T00:00:00+00:00"
    assert wire.summary.startswith("The top diplomat says")


@both_databases
def test_rescan_adds_nothing_and_keeps_every_id(storage, settings, clock):
    scan(storage, settings, clock)
    before = {i.guid: i for i in storage.all_items()}
    report = scan(storage, settings, clock)
    assert (report.files_changed, report.new_items, report.updated_items) == (0, 0, 0)
    # Touched but identical files are hashed, not parsed again.
    for path in settings.seeds_dir.iterdir():
        os.utime(path)
    report = scan(storage, settings, clock)
    assert (report.files_changed, report.new_items, report.updated_items) == (0, 0, 0)
    assert {i.guid: i for i in storage.all_items()} == before


@both_databases
def test_changed_file_adds_only_its_new_item(storage, settings, clock):
    scan(storage, settings, clock)
    before = ids_by_title(storage)
    listing = next(settings.seeds_dir.glob("000_*"))
    text = listing.read_text(encoding="utf-8")
    addition = ("Ceasefire talks resume in Astana\n\nDelegations from Russia, Turkey and Iran met again "
                "in Astana on Thursday to discuss the demilitarised zone around Idlib … Read more\n\n")
    write_seed(settings.seeds_dir, listing.name, addition + text)
    report = scan(storage, settings, clock)
    assert (report.files_changed, report.new_items, report.updated_items) == (1, 1, 0)
    after = ids_by_title(storage)
    assert len(after) == 31
    assert {t: g for t, g in after.items() if t in before} == before


@both_databases
def test_deleted_file_keeps_its_items(storage, settings, clock):
    scan(storage, settings, clock)
    before = ids_by_title(storage)
    next(settings.seeds_dir.glob("001_*")).unlink()
    report = scan(storage, settings, clock)
    assert report.missing == 1
    assert ids_by_title(storage) == before
    assert storage.sources()["001_467ccc5a45811305.txt"].status == "missing"


@both_databases
def test_a_file_that_comes_back_unchanged_is_seen_again(storage, settings, clock, tmp_path):
    scan(storage, settings, clock)
    before = ids_by_title(storage)
    path = next(settings.seeds_dir.glob("001_*"))
    away = path.rename(tmp_path / path.name)  # a rename keeps its size and mtime
    assert scan(storage, settings, clock).missing == 1
    away.rename(path)
    report = scan(storage, settings, clock)
    assert (report.files_changed, report.new_items, report.updated_items) == (1, 0, 0)
    assert storage.sources()[path.name].status == "ok"
    assert ids_by_title(storage) == before


@both_databases
def test_renamed_file_keeps_ids(storage, settings, clock):
    scan(storage, settings, clock)
    before = ids_by_title(storage)
    old = next(settings.seeds_dir.glob("004_*"))
    old.rename(settings.seeds_dir / "renamed-assad.txt")
    report = scan(storage, settings, clock)
    assert (report.new_items, report.updated_items) == (0, 0)
    assert ids_by_title(storage) == before


@both_databases
def test_teaser_upgraded_later_keeps_its_first_id(storage, settings, clock):
    article = next(settings.seeds_dir.glob("002_*"))
    held_back = article.rename(settings.seeds_dir.parent / article.name)
    scan(storage, settings, clock)
    title = seed_page("002").items[0].title
    first = next(i for i in storage.all_items() if i.title == title)
    assert first.content is None
    held_back.rename(article)
    report = scan(storage, settings, clock)
    assert (report.new_items, report.updated_items) == (0, 1)
    upgraded = next(i for i in storage.all_items() if i.title == title)
    assert upgraded.guid == first.guid
    assert upgraded.content and upgraded.summary == first.summary
    assert upgraded.updated > first.updated and upgraded.published == first.published


@both_databases
def test_item_on_two_tag_pages_gets_both_tags(storage, settings, clock):
    idlib = next(settings.seeds_dir.glob("001_*")).read_text(encoding="utf-8")
    write_seed(settings.seeds_dir, "005_energy.txt",
               idlib.replace("Contents tagged with Idlib", "Contents tagged with Energy"))
    write_seed(settings.seeds_dir, "006_energy_lower.txt",
               idlib.replace("Contents tagged with Idlib", "Contents tagged with ENERGY"))
    scan(storage, settings, clock)
    assert len(storage.all_items()) == 30
    counts = {t.name: n for t, n in storage.tags()}
    assert counts == {"Idlib": 10, "Assad": 10, "Energy": 10}  # first spelling seen is kept


@both_databases
def test_bad_files_are_recorded_and_the_scan_goes_on(storage, settings, clock):
    write_seed(settings.seeds_dir, "empty.txt", "")
    (settings.seeds_dir / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00")
    write_seed(settings.seeds_dir, "prose.txt", "Just some words that never form a page layout. " * 20)
    write_seed(settings.seeds_dir, ".hidden.txt", "Title\n\nBody of a hidden file.")
    write_seed(settings.seeds_dir, "draft.txt.swp", "Title\n\nBody of a swap file.")
    report = scan(storage, settings, clock)
    assert report.files_seen == 8
    assert {f.path: f.status for f in report.files_not_read} == {"empty.txt": "skipped", "prose.txt": "skipped"}
    assert report.not_read_counts == "2 skipped, 0 failed"  # a page that is not news did not fail
    sources = storage.sources()
    assert sources["empty.txt"].reason == "empty file: no text"
    # An image is no failure whatever its name: it is recorded as ignored, with what it is.
    assert (sources["image.txt"].status, sources["image.txt"].reason) == ("ignored", "not a page: an image")
    assert sources["prose.txt"].reason.startswith("no known layout")
    assert len(storage.all_items()) == 30


@both_databases
def test_a_good_file_turning_bad_loses_nothing(storage, settings, clock):
    scan(storage, settings, clock)
    before = ids_by_title(storage)
    write_seed(next(settings.seeds_dir.glob("004_*")).parent, next(settings.seeds_dir.glob("004_*")).name, "")
    report = scan(storage, settings, clock)
    assert [f.status for f in report.files] == ["skipped"]
    assert ids_by_title(storage) == before


@both_databases
def test_file_vanishing_before_it_is_read_fails_then_recovers(storage, settings, clock):
    path = write_seed(settings.seeds_dir, "late.txt", "A late title\n\nThe body of a late story.")
    [seed] = [s for s in Listing(settings.seeds_dir) if s.rel == "late.txt"]
    moved = path.rename(settings.seeds_dir.parent / "late.txt")
    result = scan_file(storage, seed, None, clock)
    assert result.status == "failed" and result.reason.startswith("cannot read file")
    assert storage.sources()["late.txt"].status == "failed"
    moved.rename(path)
    scan(storage, settings, clock)
    assert storage.sources()["late.txt"].status == "ok"


def test_a_file_is_one_transaction(storage, settings, clock):
    """A write failing in the middle of a file leaves none of that file."""
    with storage.engine.begin() as connection:
        connection.execute(sqlalchemy.text(
            "CREATE TRIGGER refuse AFTER INSERT ON items WHEN NEW.title LIKE 'UN accuses%' "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"))
    report = scan(storage, settings, clock)
    failed = {f.path: f.reason for f in report.files_not_read}
    assert list(failed) == ["001_467ccc5a45811305.txt"]
    assert report.not_read_counts == "0 skipped, 1 failed"
    assert "disk full" in failed["001_467ccc5a45811305.txt"]
    assert [(t.slug, n) for t, n in storage.tags()] == [("assad", 10)]
    assert len(storage.all_items()) == 20  # 9 + 1 merged + 1 wire + 10 Assad, none of 001
    with storage.engine.begin() as connection:
        connection.execute(sqlalchemy.text("DROP TRIGGER refuse"))
    report = scan(storage, settings, clock)  # the failed file is tried again
    assert report.new_items == 10 and len(storage.all_items()) == 30


def test_files_share_a_transaction_up_to_the_batch_bounds(storage, settings, clock):
    """Each transaction rewrites every index page it touched: a cold ingest
    of small files one transaction each wrote its store eight times over."""
    for n in range(BATCH_FILES + 6):
        write_seed(settings.seeds_dir, f"100_{n:03}.txt",
                   f"Harbour ferry number {n} sails again\n\nThe ferry company said ferry {n} sails "
                   f"to island {n * 7} again from Monday, with {n * 3} crossings a week.")
    commits = []
    sqlalchemy.event.listen(storage.engine, "commit", lambda _connection: commits.append(1))
    report = scan(storage, settings, clock)
    assert report.files_changed == BATCH_FILES + 11 and report.new_items == BATCH_FILES + 36
    assert len(commits) == 2  # a batch of BATCH_FILES files, then the rest
    assert len(storage.all_items()) == BATCH_FILES + 36
    assert all(source.status == "ok" for source in storage.sources().values())


def test_a_batch_is_committed_before_it_outgrows_its_bounds():
    seed = next(iter(Listing(SEEDS)))
    assert not batch_full([], BATCH_BYTES * 2, 0.0, BATCH_SECONDS * 2)  # a batch always takes one file
    assert not batch_full([seed], 1, 0.0, 0.0)
    assert batch_full([seed], BATCH_BYTES, 0.0, 0.0)  # a large file starts a batch of its own
    assert batch_full([seed], 1, 0.0, BATCH_SECONDS)  # a stop abandons at most this much work
    assert batch_full([seed] * BATCH_FILES, 1, 0.0, 0.0)


def test_ids_survive_a_copy_of_the_database(storage, settings, clock, tmp_path):
    scan(storage, settings, clock)
    before = ids_by_title(storage)
    storage.close()
    copy = tmp_path / "copy.db"
    shutil.copy(settings.database_url.database, copy)
    restored = Storage(f"sqlite:///{copy}")
    try:
        report = scan(restored, settings, clock)
        assert report.new_items == 0 and ids_by_title(restored) == before
    finally:
        restored.close()


@both_databases
def test_ignore_patterns_come_from_the_config(make_settings, clock, tmp_path):
    settings = make_settings(**{"seeds.ignore": ["00[0-2]_*"]})
    store = Storage(settings.database_url)
    try:
        report = scan(store, settings, clock)
        assert report.files_seen == 2 and len(store.all_items()) == 11
    finally:
        store.close()


@both_databases
def test_a_key_shared_by_many_items_reads_only_the_newest(storage, tmp_path, clock):
    """A stock headline over 60 different stories: looking it up reads the 50
    newest items only, and each story is still found by its own opening words
    (the page has more keys than one lookup statement takes)."""
    folder = tmp_path / "stock"
    folder.mkdir()
    count = MAX_ITEMS_PER_KEY + 10
    blocks = [f"Daily briefing\n\nStory number {n} opens with its own words about event {n} and then "
              f"goes on to tell what happened in place {n} … Read more" for n in range(count)]
    write_seed(folder, "briefings.txt", "\n\n".join(blocks) + "\n")
    report = run_once(storage, folder, clock=clock)
    assert report.new_items == count
    page = read_page((folder / "briefings.txt").read_bytes(), clock())
    fps = [dedupe.fingerprint(item.title, item.text) for item in page.items]
    assert len({key for fp in fps for key in dedupe.identity_keys(fp)}) > KEYS_PER_QUERY
    probe = dedupe.fingerprint("Daily briefing", "Words no story on the page has ever used at all here.")
    with storage.writer(clock()) as writer:
        found = candidates(writer, [probe])
        newest = sorted(candidates(writer, fps))[-MAX_ITEMS_PER_KEY:]
    assert sorted(found) == newest and len(found) == MAX_ITEMS_PER_KEY
    shutil.copy(folder / "briefings.txt", folder / "again.txt")
    report = run_once(storage, folder, clock=clock)
    assert (report.files_changed, report.new_items) == (1, 0)
    assert storage.item_count() == count


def tag_feed(storage, slugs, match_all=False, page_size=100):
    """A tag feed's guids, read page by page."""
    guids, offset = [], 0
    while page := storage.newest_items(page_size, offset, slugs, match_all):
        guids += [item.guid for item in page]
        offset += page_size
    return guids


def expected_feed(storage, slugs, match_all=False):
    """The same feed worked out from every item in feed order."""
    wanted = set(slugs)
    test = wanted.issubset if match_all else wanted.intersection
    return [item.guid for item in storage.all_items() if test({tag.slug for tag in item.tags})]


@both_databases
def test_tag_feeds_follow_an_item_whose_date_moves_earlier(storage, settings, clock):
    scan(storage, settings, clock)
    newest = storage.newest_items(1, 0, ("idlib",))[0]
    page = write_seed(settings.seeds_dir, "early_copy.txt",
                      f"Contents tagged with Idlib\n\n  • {newest.title}\n\n    {newest.summary}\n")
    earlier = newest.published.replace(year=newest.published.year - 1)
    os.utime(page, (earlier.timestamp(), earlier.timestamp()))
    report = scan(storage, settings, clock)
    assert (report.new_items, report.updated_items) == (0, 1)
    [moved] = [item for item in storage.all_items() if item.guid == newest.guid]
    assert moved.published == earlier
    idlib = tag_feed(storage, ("idlib",))
    assert idlib[-1] == newest.guid and len(idlib) == 10
    for slugs, match_all in [(("idlib",), False), (("assad",), False),
                             (("assad", "idlib"), False), (("assad", "idlib"), True)]:
        for page_size in (3, 100):
            assert tag_feed(storage, slugs, match_all, page_size) == expected_feed(storage, slugs, match_all)
