"""A deterministic seed folder in the four layouts, with the overlap real
folders have: about 20 % of teasers later appear as full articles, 10 % of
items on two tag pages, and some edited headlines."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

WORDS = ("government minister council report city market energy prices storm coast harbour "
         "election talks agreement workers union strike rail airport bridge school hospital "
         "budget court ruling police investigation farmers harvest drought rain river bank "
         "rates inflation exports imports company profits shares investors museum festival "
         "league match coach season record museum library transport housing rents builders "
         "climate summit delegates treaty border refugees aid doctors vaccine research study").split()
TAGS = [f"Topic {n}" for n in range(40)]
ITEMS_PER_PAGE = 10


@dataclass(frozen=True)
class Story:
    number: int
    title: str
    paragraphs: tuple[str, ...]


def story(rng: random.Random, number: int) -> Story:
    title = f"{' '.join(rng.choice(WORDS) for _ in range(5)).capitalize()} {number}"
    paragraphs = tuple(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(25, 45))).capitalize() + f" ({number}.{p})."
        for p in range(rng.randint(2, 4))
    )
    return Story(number, title, paragraphs)


def teaser(s: Story, words: int) -> str:
    return " ".join(s.paragraphs[0].split()[:words])


def generate(folder: Path, files: int, seed: int = 1) -> int:
    """Write `files` pages; returns the number of item sightings written."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    stories: list[Story] = []
    sightings = 0
    for n in range(files):
        kind = rng.random()
        if kind < 0.2 and stories:
            # A full article of a story teased before (sometimes under an edited headline).
            s = rng.choice(stories)
            title = s.title + (" – update" if rng.random() < 0.2 else "")
            text = f"{title}\n\n" + "\n\n".join(s.paragraphs) + "\n"
            count = 1
        elif kind < 0.25:
            s = story(rng, len(stories))
            stories.append(s)
            text = (f"All news\n\n{s.title}\n\n{teaser(s, 12)}\n\n"
                    f"MOSCOW, December {rng.randint(1, 28)}. /TASS/. " + "\n\n".join(s.paragraphs) + "\n")
            count = 1
        else:
            page = []
            for _ in range(ITEMS_PER_PAGE):
                if stories and rng.random() < 0.1:
                    page.append(rng.choice(stories))  # seen before, on another page
                else:
                    stories.append(story(rng, len(stories)))
                    page.append(stories[-1])
            if kind < 0.6:
                text = "\n\n".join(f"{s.title}\n\n{teaser(s, rng.randint(15, 30))} … Read more" for s in page[:9])
                count = 9
            else:
                text = f"Contents tagged with {rng.choice(TAGS)}\n\n" + "".join(
                    f"  • {s.title}\n\n    {teaser(s, rng.randint(15, 30))} …\n\n" for s in page)
                count = ITEMS_PER_PAGE
        path = folder / f"{n:06}.txt"
        path.write_text(text, encoding="utf-8")
        stamp = 1_700_000_000 + n * 60
        os.utime(path, (stamp, stamp))
        sightings += count
    return sightings
