import hashlib
import math
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from aggregator import dedupe, names
from aggregator.model import KnownItem, ParsedItem

from helpers import seed_page

T0 = datetime(2026, 11, 20, tzinfo=timezone.utc)


def known(item: ParsedItem, id: int = 1, tags=()) -> KnownItem:
    return KnownItem(id=id, guid=f"urn:uuid:{id}", title=item.title, summary=item.summary,
                     content=item.content, published=item.published or T0,
                     tag_keys=frozenset(names.tag_key(t) for t in tags))


STORM_NORTH = ParsedItem(
    title="Storm hits northern coast",
    content="Heavy rain and winds of up to 120 km/h hit the northern coast overnight, cutting power "
    "to thousands of homes in three fishing towns, the regional grid operator said on Sunday.",
)
STORM_SOUTH = ParsedItem(
    title="Storm hits southern coast",
    content="A second storm front reached the southern beaches late on Monday, flooding the old "
    "harbour district and forcing the closure of two schools and the main ferry terminal.",
)


def test_listing_teaser_and_full_article_are_one_item():
    teaser = seed_page("000").items[0]
    article = seed_page("002").items[0]
    match = dedupe.decide(article, [known(teaser)])
    assert match is not None and match.rule == "same-title"
    # Also without the title's help: the teaser is the article's opening.
    retitled = ParsedItem(title="Lavrov: Moscow and Jerusalem coordinate again", content=article.content)
    match = dedupe.decide(retitled, [known(teaser)])
    assert match is not None and match.rule == "contained-text"


def test_another_outlets_report_of_the_same_event_stays_apart():
    article = seed_page("002").items[0]
    wire = seed_page("003").items[0]
    assert dedupe.decide(wire, [known(article)]) is None
    assert dedupe.decide(article, [known(wire)]) is None


def test_similar_titles_with_different_bodies_stay_apart():
    assert dedupe.decide(STORM_SOUTH, [known(STORM_NORTH)]) is None


def test_same_title_different_body_stays_apart():
    other = ParsedItem(title=STORM_NORTH.title, content=STORM_SOUTH.content)
    assert dedupe.decide(other, [known(STORM_NORTH)]) is None


def test_edited_headline_with_same_text_is_one_item():
    body = STORM_NORTH.content.replace("Sunday", "Sunday evening")
    edited = ParsedItem(title="Storm cuts power on northern coast", content=body)
    match = dedupe.decide(edited, [known(STORM_NORTH)])
    assert match is not None and match.rule != "same-title"


def test_headline_edited_by_a_comma_and_quotes_is_the_same_title():
    assert dedupe.normalize_title("Russia’s “plan” – explained…") == dedupe.normalize_title(
        "Russia's \"plan\" - explained"
    )
    assert dedupe.normalize_title("Storm hits, coast") != dedupe.normalize_title("Storm hits coast today")


def test_strongest_rule_wins_among_candidates():
    article = seed_page("002").items[0]
    teaser = seed_page("000").items[0]
    unrelated = seed_page("003").items[0]
    match = dedupe.decide(article, [known(unrelated, id=1), known(teaser, id=2)])
    assert match.item.id == 2


def test_merge_upgrades_teaser_to_article_and_keeps_the_teaser_as_summary():
    teaser = seed_page("000").items[0]
    article = seed_page("002").items[0]
    change = dedupe.merge(known(teaser), article, {})
    assert change.content == article.content
    assert change.summary is None  # the stored teaser stays the summary
    assert change.changes_entry


def test_merge_of_a_teaser_into_a_stored_article_adds_its_summary():
    teaser = seed_page("000").items[0]
    article = seed_page("002").items[0]
    change = dedupe.merge(known(article), teaser, {})
    assert change.content is None and change.title is None
    assert change.summary == teaser.summary


def test_merging_the_same_sighting_again_changes_nothing():
    item = seed_page("001").items[0]
    change = dedupe.merge(known(item, tags=item.tags), item, {names.tag_key(t): t for t in item.tags})
    assert not change.changes_entry


def test_merge_adds_only_new_tags():
    item = seed_page("001").items[0]
    change = dedupe.merge(known(item, tags=("idlib",)), item, {"idlib": "Idlib", "assad": "Assad"})
    assert change.new_tags == ("Assad",)


@pytest.mark.parametrize(
    "name,slug",
    [("Côte d'Ivoire", "cote-d-ivoire"), ("Idlib", "idlib"), ("  Middle East / Gulf ", "middle-east-gulf")],
)
def test_tag_slugs_are_lowercase_ascii(name, slug):
    assert names.tag_slug(name) == slug


def test_tag_keys_ignore_case_and_normal_form():
    assert names.tag_key("Energy") == names.tag_key("energy")
    assert names.tag_key("Cafe\u0301") == names.tag_key("Café")


def test_ids_are_uuid_urns_and_url_keys_are_hex():
    guid = dedupe.item_guid("Title", "Some text")
    assert guid.startswith("urn:uuid:")
    assert names.guid_key(guid) == guid[9:].replace("-", "")


def test_simhash_bands_catch_close_hashes():
    a = dedupe.simhash(dedupe.words(STORM_NORTH.content))
    flipped = a ^ 0b1011  # three bits apart
    assert dedupe.near(a, flipped) and not dedupe.near(a, a ^ (1 << dedupe.MAX_SIMHASH_DISTANCE + 1) - 1)
    top = (1 << 63) | a
    assert dedupe.near(top ^ 0b111, top - (1 << 64))  # as a signed 64-bit column keeps it
    assert dedupe.near(a, None)  # a store that kept no SimHash: it may be close
    assert any(x == y for x, y in zip(dedupe.simhash_bands(a), dedupe.simhash_bands(flipped), strict=True))


def simhash_by_definition(tokens: tuple[str, ...]) -> int:
    """Charikar's SimHash spelled out bit by bit, with the shingle hash the
    stored keys were made with (BLAKE2b's first 8 bytes, big-endian)."""
    hashes = [int.from_bytes(hashlib.blake2b(" ".join(s).encode(), digest_size=8).digest(), "big")
              for s in dedupe.shingles(tokens)]
    return sum(1 << bit for bit in range(64) if 2 * sum(h >> bit & 1 for h in hashes) > len(hashes))


def test_simhash_is_the_majority_of_shingle_hash_bits():
    tokens = dedupe.words(STORM_NORTH.content)
    assert dedupe.simhash(tokens) == simhash_by_definition(tokens) != 0


@given(st.lists(st.sampled_from(["rain", "storm", "côte", "a", "z" * 30, "1", "北"]), max_size=60))
def test_simhash_of_any_words_is_the_definitions(tokens):
    assert dedupe.simhash(tokens) == simhash_by_definition(tuple(tokens))


def related_by_definition(topics, holders, exclude, limit):
    """The items sharing the most topic keys, oldest first among equals:
    stored ids ascending, then the page's new items (-1, -2, …) in page order."""
    shared = {}
    for key in set(topics):
        for ref in holders.get(key, ()):
            if ref != exclude:
                shared[ref] = shared.get(ref, 0) + 1
    return sorted(shared, key=lambda ref: (-shared[ref], ref < 0, abs(ref)))[:limit]


@given(st.dictionaries(st.sampled_from("abcdefgh"), st.sets(st.integers(-40, 40).filter(bool), max_size=30)),
       st.lists(st.sampled_from("abcdefghij"), max_size=10), st.one_of(st.none(), st.integers(-40, 40)),
       st.integers(1, 12))
def test_related_ids_rank_by_shared_keys_then_age(holders, topics, exclude, limit):
    fp = dedupe.fingerprint("A headline", "Some text")
    fp = replace(fp, topics=tuple(topics))
    assert dedupe.related_ids(fp, holders, exclude, limit) == related_by_definition(topics, holders, exclude, limit)


TOPIC_WORDS = ["harbour", "ferry", "storm", "council", "budget", "river", "flood", "school"]


@given(*[st.lists(st.sampled_from(TOPIC_WORDS), min_size=1, max_size=40) for _ in range(4)])
def test_reports_are_related_by_the_cosine_of_their_topic_counts(title_a, text_a, title_b, text_b):
    a = dedupe.report_of(" ".join(title_a), " ".join(text_a))
    b = dedupe.report_of(" ".join(title_b), " ".join(text_b))
    counts_a, counts_b = Counter(title_a + text_a), Counter(title_b + text_b)
    norm_a, norm_b = (math.sqrt(sum(v * v for v in c.values())) for c in (counts_a, counts_b))
    cosine = sum(counts_a[w] * counts_b[w] for w in TOPIC_WORDS) / (norm_a * norm_b)
    expected = dedupe.headlines_related(" ".join(title_a), " ".join(title_b)) and cosine >= dedupe.RELATED_TEXT
    assert dedupe.is_related(a, b) == dedupe.is_related(b, a) == expected


@given(*[st.lists(st.sampled_from(TOPIC_WORDS[:4]), max_size=12) for _ in range(2)])
def test_jaccard_is_shared_shingles_over_all_shingles(a, b):
    def shingles(tokens):
        return {tuple(tokens[i:i + 3]) for i in range(len(tokens) - 2)} if len(tokens) >= 3 else {tuple(tokens)} - {()}

    sa, sb = shingles(a), shingles(b)
    expected = len(sa & sb) / len(sa | sb) if sa and sb else 0.0
    assert dedupe.jaccard(tuple(a), tuple(b)) == expected


def test_a_shared_band_alone_makes_a_candidate_only_when_the_texts_are_close():
    fp = dedupe.fingerprint(STORM_NORTH.title, STORM_NORTH.content)
    band = dedupe.identity_keys(fp)[-1]
    assert band[0] == "band3"
    far = fp.simhash ^ 0x0000_FFFF_FFFF_0000  # same outer bands, 32 bits apart
    near = fp.simhash ^ 0b111  # three bits apart
    assert not dedupe.is_candidate(fp, {band}, {far})
    assert dedupe.is_candidate(fp, {band}, {near})
    assert dedupe.is_candidate(fp, {band}, {None})  # kept by a store that recorded no SimHash
    assert dedupe.is_candidate(fp, {("title", fp.title_key)}, set())
    assert not dedupe.is_candidate(fp, set(), {near})


# Items a sighting may share keys with: its own title, lead and bands, each
# held by some of them, and SimHashes near and far.
@given(st.lists(st.tuples(st.sets(st.integers(0, 5)), st.sets(st.sampled_from([0, 0b111, 0xFFFF_0000_0000, None]),
                                                              min_size=1)), max_size=8),
       st.sets(st.integers(0, 7)))
@example([({0, 5}, {0xFFFF_0000_0000}), ({1, 4}, {0b111}), ({3}, {0xFFFF_0000_0000}), ({2}, {None})], {0})
def test_page_candidates_are_the_holders_is_candidate_keeps(items, let_go):
    """Found through the keys that hold them, as the page's own index does,
    and still the very items `is_candidate` keeps: `let_go` are items whose
    title key's holders no longer list them, as MAX_HOLDERS_PER_KEY newer
    items hold it."""
    fp = dedupe.fingerprint(STORM_NORTH.title, STORM_NORTH.content)
    own = dedupe.identity_keys(fp)
    state, holders = {}, {}
    if let_go & set(range(len(items))):
        newer = range(100, 100 + dedupe.MAX_HOLDERS_PER_KEY)
        holders[own[0]] = list(newer)
        state.update((ref, replace(known(STORM_SOUTH, id=ref), keys=frozenset({own[0]}),
                                   simhashes=frozenset({~fp.simhash}))) for ref in newer)
    for ref, (key_numbers, offsets) in enumerate(items):
        keys = frozenset(own[n] for n in key_numbers)
        state[ref] = replace(known(STORM_SOUTH, id=ref), keys=keys, simhashes=frozenset(
            None if offset is None else fp.simhash ^ offset for offset in offsets))
        for key in keys:
            if not (key[0] == "title" and ref in let_go):
                holders.setdefault(key, []).append(ref)
    holding = {ref for key in own for ref in holders.get(key, ())}
    expected = {ref for ref in holding if dedupe.is_candidate(fp, state[ref].keys, state[ref].simhashes)}
    assert sorted(dedupe.page_candidates(fp, own, holders, state)) == sorted(expected)


def sighting(item: ParsedItem):
    item = ParsedItem(item.title, item.summary, item.content, item.published or T0, item.tags)
    return item, dedupe.fingerprint(item.title, item.text)


def test_a_story_shown_twice_on_one_page_is_one_new_item():
    teaser = ParsedItem(title=STORM_NORTH.title, summary=" ".join(STORM_NORTH.content.split()[:15]),
                        tags=("Weather",))
    plan = dedupe.plan_page([sighting(teaser), sighting(STORM_SOUTH), sighting(STORM_NORTH)], {})
    assert [ref for ref, _ in plan.sightings] == [-1, -2, -1]
    assert (plan.new_items, plan.updated_items) == (2, 0)
    first = plan.items[0]
    assert first.content == STORM_NORTH.content and first.summary == teaser.summary
    assert first.new_tags == ("Weather",)


def test_a_page_merges_into_the_stored_item_and_keeps_its_id():
    teaser = ParsedItem(title=STORM_NORTH.title, summary=" ".join(STORM_NORTH.content.split()[:15]))
    stored = known(teaser, id=7)
    fp = dedupe.fingerprint(teaser.title, teaser.text)
    stored = KnownItem(**{**stored.__dict__, "keys": frozenset(dedupe.identity_keys(fp))})
    plan = dedupe.plan_page([sighting(STORM_NORTH)], {7: stored})
    assert plan.sightings == ((7, STORM_NORTH.title),)
    assert (plan.new_items, plan.updated_items) == (0, 1)
    assert plan.items[0].ref == 7 and plan.items[0].content == STORM_NORTH.content
    # Seen again with nothing new, it changes nothing and relates nothing.
    again = dedupe.plan_page([sighting(STORM_NORTH)], {7: dedupe.applied(stored, dedupe.merge(
        stored, STORM_NORTH, {}))})
    assert again.items == () and again.linking == ()


def test_short_and_long_texts_get_the_same_words_and_shingles_from_either_cache():
    """Headlines and teasers are cached apart from long texts; where a text is
    kept changes nothing of what is made of it."""
    sentence = "The harbour’s ferry — late again, said O’Brien. "
    for repeats in range(1, 12):  # across SHORT_TEXT_CHARS and SHORT_TEXT_WORDS
        text = sentence * repeats
        found = dedupe.words(text)
        assert found == ("the", "harbour's", "ferry", "late", "again", "said", "o'brien") * repeats
        assert dedupe.shingles(found) == {found[i:i + 3] for i in range(len(found) - 2)}
    longest = sentence * 11
    assert len(longest) > dedupe.SHORT_TEXT_CHARS
    assert len(dedupe.words(longest)) > dedupe.SHORT_TEXT_WORDS


def test_texts_of_few_words_still_cost_their_length_in_the_words_cache():
    """A text is the cache's key: 200 texts of 200 000 characters and one
    word each are 40 MB however few their words."""
    for n in range(200):
        assert dedupe.words(f"word{n} " + "— " * 100_000) == (f"word{n}",)
    held = sum(len(key[0]) for key in dedupe._costed_words.cache)
    assert held <= dedupe.WORDS_BYTES_CACHED
    assert dedupe.words("A short text, kept.") == ("a", "short", "text", "kept")
