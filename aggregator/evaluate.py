"""How well item identity works on a labelled folder: `aggregator eval DIR
EXPECTED.json`. The labels say which sightings (file, title shown) are one
story, which tags it has, its original address and its date; the folder is
ingested into a scratch database and the grouping compared pair by pair.
Files that are no page at all are labelled with the status they must get."""

from __future__ import annotations

import itertools
import json
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aggregator.clock import utc_now
from aggregator.errors import ConfigError, first_line
from aggregator.ingest import run_once
from aggregator.model import StoredItem
from aggregator.read import read_page
from aggregator.storage import Storage

Sighting = tuple[str, str]  # (file, title as the page shows it)


@dataclass(frozen=True)
class Labels:
    story_of: dict[Sighting, str]
    tags: dict[str, frozenset[str]]  # story → case-folded tag names
    content_from: dict[str, Sighting]  # story → the sighting whose text must be the content
    links: dict[str, str] = field(default_factory=dict)  # story → its original address
    dates: dict[str, datetime] = field(default_factory=dict)  # story → its date, where a source gives it
    not_pages: dict[str, str] = field(default_factory=dict)  # file → the status it must get


@dataclass(frozen=True)
class Evaluation:
    stories: int
    items: int
    precision: float
    recall: float
    wrong_merges: int  # extra stories inside predicted items
    missed_merges: int  # extra items a story was split into
    tag_accuracy: float
    link_accuracy: float = 1.0  # of the stories labelled with an address
    date_accuracy: float = 1.0  # of the stories labelled with a date
    problems: tuple[str, ...] = field(default=())

    @property
    def perfect(self) -> bool:
        return (self.precision, self.recall, self.wrong_merges, self.missed_merges, self.tag_accuracy,
                self.link_accuracy, self.date_accuracy, self.problems) == (1.0, 1.0, 0, 0, 1.0, 1.0, 1.0, ())

    def lines(self) -> list[str]:
        return [
            f"stories: {self.stories} labelled, {self.items} items stored",
            f"precision: {self.precision:.3f}",
            f"recall: {self.recall:.3f}",
            f"wrong merges: {self.wrong_merges}",
            f"missed merges: {self.missed_merges}",
            f"tag accuracy: {self.tag_accuracy:.1%}",
            f"link accuracy: {self.link_accuracy:.1%}",
            f"date accuracy: {self.date_accuracy:.1%}",
            *self.problems,
        ]


def load_labels(path: Path) -> Labels:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        stories = document["stories"]
        story_of = {(file, title): name for name, story in stories.items()
                    for file, title in story["sightings"]}
        tags = {name: frozenset(t.casefold() for t in story.get("tags", [])) for name, story in stories.items()}
        content = {name: tuple(story["content_from"]) for name, story in stories.items()
                   if story.get("content_from")}
        links = {name: story["link"] for name, story in stories.items() if story.get("link")}
        dates = {name: datetime.fromisoformat(story["published"]) for name, story in stories.items()
                 if story.get("published")}
        not_pages = dict(document.get("not_pages", {}))
    except OSError as error:
        raise ConfigError(f"labels {str(path)!r} cannot be read: {error.strerror or error}") from None
    except KeyError as error:
        raise ConfigError(f"labels {str(path)!r} unusable: no {error} in a story or at the top") from None
    except (ValueError, TypeError, AttributeError) as error:
        raise ConfigError(f"labels {str(path)!r} unusable: {first_line(error)}") from None
    return Labels(story_of, tags, content, links, dates, not_pages)  # type: ignore[arg-type]


def pair_counts(gold: dict[Sighting, str], predicted: dict[Sighting, str]) -> tuple[int, int, int]:
    """(true, false, missed) same-story pairs over the labelled sightings."""
    true = false = missed = 0
    for a, b in itertools.combinations(sorted(gold), 2):
        same_gold = gold[a] == gold[b]
        same_pred = a in predicted and b in predicted and predicted[a] == predicted[b]
        true += same_gold and same_pred
        false += same_pred and not same_gold
        missed += same_gold and not same_pred
    return true, false, missed


def share(right: int, total: int) -> float:
    return right / total if total else 1.0


def score(labels: Labels, predicted: dict[Sighting, str], items: dict[str, StoredItem],
          texts: dict[Sighting, str], statuses: dict[str, str] | None = None) -> Evaluation:
    """Compare a predicted grouping (sighting → item id) and the items (by id)
    with the labels; `statuses` are the seed files' statuses by path. Pure."""
    item_tags = {guid: frozenset(t.name.casefold() for t in item.tags) for guid, item in items.items()}
    gold = labels.story_of
    true, false, missed = pair_counts(gold, predicted)
    stories_in_item: dict[str, set[str]] = defaultdict(set)
    items_of_story: dict[str, set[str]] = defaultdict(set)
    for sighting, story in gold.items():
        if sighting in predicted:
            stories_in_item[predicted[sighting]].add(story)
            items_of_story[story].add(predicted[sighting])
    problems = [f"not found: {file}: {title}" for file, title in sorted(set(gold) - set(predicted))]
    problems += [f"not labelled: {file}: {title}" for file, title in sorted(set(predicted) - set(gold))]
    tags_right = links_right = dates_right = 0
    for story in sorted(labels.tags):
        split_into = items_of_story.get(story, set())
        main = Counter(predicted[s] for s in gold if gold[s] == story and s in predicted).most_common(1)
        if main and item_tags.get(main[0][0], frozenset()) == labels.tags[story]:
            tags_right += 1
        elif main:
            problems.append(f"tags of {story}: {sorted(item_tags.get(main[0][0], ()))}, "
                            f"expected {sorted(labels.tags[story])}")
        if len(split_into) > 1:
            problems.append(f"split: {story} is {len(split_into)} items")
        item = items.get(main[0][0]) if main else None
        source = labels.content_from.get(story)
        if source and item and item.content != texts.get(source):
            problems.append(f"content of {story} is not the text of {source[0]}")
        if story in labels.links:
            if item and item.link == labels.links[story]:
                links_right += 1
            else:
                problems.append(f"link of {story}: {item and item.link}, expected {labels.links[story]}")
        if story in labels.dates:
            if item and item.published == labels.dates[story]:
                dates_right += 1
            else:
                problems.append(f"date of {story}: {item and item.published.isoformat()}, "
                                f"expected {labels.dates[story].isoformat()}")
    for file, status in sorted(labels.not_pages.items()):
        if (statuses or {}).get(file) != status:
            problems.append(f"status of {file}: {(statuses or {}).get(file)}, expected {status}")
    for stories in stories_in_item.values():
        if len(stories) > 1:
            problems.append(f"merged: {', '.join(sorted(stories))}")
    return Evaluation(
        stories=len(labels.tags),
        items=len(set(predicted.values())),
        precision=true / (true + false) if true + false else 1.0,
        recall=true / (true + missed) if true + missed else 1.0,
        wrong_merges=sum(len(s) - 1 for s in stories_in_item.values()),
        missed_merges=sum(len(i) - 1 for i in items_of_story.values()),
        tag_accuracy=share(tags_right, len(labels.tags)),
        link_accuracy=share(links_right, len(labels.links)),
        date_accuracy=share(dates_right, len(labels.dates)),
        problems=tuple(problems),
    )


def evaluate(folder: Path, labels_path: Path) -> Evaluation:
    if not folder.is_dir():
        raise ConfigError(f"{str(folder)!r} is not a folder of seed files")
    labels = load_labels(labels_path)
    with tempfile.TemporaryDirectory() as scratch, Storage(f"sqlite:///{Path(scratch) / 'eval.db'}") as storage:
        run_once(storage, folder)
        found = storage.sightings()
        items = {item.guid: item for item in storage.all_items()}
        statuses = {path: str(source.status) for path, source in storage.sources().items()}
    predicted = {(file, title): guid for file, _pos, title, guid in found}
    return score(labels, predicted, items, _sighting_texts(folder, labels), statuses)


def _sighting_texts(folder: Path, labels: Labels) -> dict[Sighting, str]:
    """The full text each `content_from` sighting shows on its page."""
    texts = {}
    for file, title in labels.content_from.values():
        page = read_page((folder / file).read_bytes(), utc_now(), file)
        for item in page.items:
            if item.title == title:
                texts[(file, title)] = item.content
    return texts
