"""A deterministic seed folder in the four layouts, with the overlap real
folders have: about 20 % of teasers later appear as full articles, 10 % of
items on two tag pages, and some edited headlines. Then HTML articles and
listings and RSS files of the same stories, as people save them beside."""

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
    return write_text_pages(folder, files, seed)[0]


def write_text_pages(folder: Path, files: int, seed: int = 1) -> tuple[int, list[Story]]:
    """Write `files` text pages; (the sightings written, the stories told)."""
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
        write(folder / f"{n:06}.txt", text, n)
        sightings += count
    return sightings, stories


def write(path: Path, text: str, n: int) -> None:
    path.write_text(text, encoding="utf-8")
    stamp = 1_700_000_000 + n * 60
    os.utime(path, (stamp, stamp))


def link(s: Story) -> str:
    return f"https://news.bench.example/story/{s.number}?utm_source=bench"


def html_article(s: Story) -> str:
    body = "".join(f"<p>{p}</p>" for p in s.paragraphs)
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{s.title} | Bench News</title>'
            f'<link rel="canonical" href="{link(s)}"><meta property="og:title" content="{s.title}">'
            f'<meta property="og:type" content="article">'
            f'<meta property="article:published_time" content="2024-06-01T10:00:00Z"></head><body>'
            f'<header><nav><a href="/">Home</a> <a href="/news">News</a></nav></header>'
            f'<main><article><h1>{s.title}</h1>{body}</article></main>'
            f'<footer>© Bench News</footer></body></html>')


def html_listing(page: list[Story], rng: random.Random) -> str:
    blocks = "".join(f'<article><h2><a href="{link(s)}">{s.title}</a></h2><p>{teaser(s, rng.randint(15, 30))}</p>'
                     f'</article>' for s in page)
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>Bench News</title></head><body>'
            f'<header><nav><a href="/">Home</a> <a href="/news">News</a></nav></header>'
            f'<main>{blocks}</main><aside class="most-read"><a href="/a">Most read story</a></aside></body></html>')


def rss(page: list[Story], rng: random.Random) -> str:
    items = "".join(f"<item><title>{s.title}</title><link>{link(s)}</link><guid>{s.number}</guid>"
                    f"<description>{teaser(s, rng.randint(15, 30))}</description></item>" for s in page)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Bench News</title>'
            f'<link>https://news.bench.example/</link><description>Bench</description>{items}</channel></rss>')


def write_web_pages(folder: Path, stories: list[Story], files: int, seed: int = 2) -> dict[str, int]:
    """Write `files` pages of stories already told, in turn an HTML article,
    an HTML listing and an RSS file; the sightings written, by kind."""
    rng = random.Random(seed)
    sightings = {"html": 0, "feed": 0}
    for n in range(files):
        if n % 3 == 0:
            write(folder / f"web{n:06}.html", html_article(rng.choice(stories)), n)
            sightings["html"] += 1
        elif n % 3 == 1:
            write(folder / f"web{n:06}.html", html_listing(rng.sample(stories, 9), rng), n)
            sightings["html"] += 9
        else:
            write(folder / f"web{n:06}.rss", rss(rng.sample(stories, ITEMS_PER_PAGE), rng), n)
            sightings["feed"] += ITEMS_PER_PAGE
    return sightings


def write_long_listing(path: Path, items: int, seed: int = 3) -> int:
    """One listing page of `items` distinct stories whose teasers are cut from
    one template, as a site's archive saved whole: the hardest page for its
    own dedup, as every teaser shares SimHash bands and topic words with many
    others. Returns the page's size in bytes."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(
        f"{' '.join(rng.choice(WORDS) for _ in range(4)).capitalize()} {n}\n\n"
        f"Teaser {n}, about {n * 17} people and {n * 3} boats in the harbour, cut … Read more\n"
        for n in range(items))
    path.write_text(text, encoding="utf-8")
    return len(text.encode())
