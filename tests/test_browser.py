"""The pages in a real headless Chromium, driven over the DevTools protocol."""

import asyncio
import shutil
import tempfile

import aiohttp
import pytest

from aggregator.service import INGESTER, settings_of

from helpers import free_port, write_seed

PHONE = (390, 844)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("chromium is not installed (Debian package chromium; .ci/run installs it)")


class Page:
    def __init__(self, ws):
        self.ws, self.next_id = ws, 0

    async def call(self, method, **params):
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json(timeout=30)
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    async def evaluate(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def open(self, url):
        await self.call("Page.navigate", url=url)
        for _ in range(100):
            if await self.evaluate("document.readyState") == "complete" and await self.evaluate("location.href") == url:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{url} did not load")


@pytest.fixture
async def browser():
    binary = chromium_binary()
    port = free_port()
    profile = tempfile.mkdtemp()
    process = await asyncio.create_subprocess_exec(
        binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
        f"--window-size={PHONE[0]},{PHONE[1]}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                        targets = [t for t in await response.json() if t["type"] == "page"]
                    if targets:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            async with session.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                await page.call("Emulation.setDeviceMetricsOverride", width=PHONE[0], height=PHONE[1],
                                deviceScaleFactor=1, mobile=True)
                yield page
    finally:
        process.kill()
        await process.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def test_pages_read_well_on_a_phone(served, browser):
    client, base = served
    # A long tag name narrows the column of feed links beside it.
    write_seed(settings_of(client.app).seeds_dir, "tagged.txt",
               "Contents tagged with Libraries and archives\n\n  • Library hours grow\n\n"
               "    The central library opens on Sundays from next month, the council said.\n")
    await client.app[INGESTER].scan()
    await browser.open(f"{base}/")
    assert await browser.evaluate("document.querySelectorAll('ul.items li').length") == 31
    assert await browser.evaluate("document.documentElement.scrollWidth") <= PHONE[0]
    # A feed's name ("JSON Feed") is never broken over two lines.
    assert await browser.evaluate(
        "[...document.querySelectorAll('.feeds a')].filter(a => a.getClientRects().length > 1).length") == 0
    feeds = await browser.evaluate(
        "[...document.querySelectorAll('link[rel=alternate]')].map(l => l.type + ' ' + l.href)")
    assert feeds == [f"application/rss+xml {base}/feeds/all.rss", f"application/atom+xml {base}/feeds/all.atom",
                     f"application/feed+json {base}/feeds/all.json"]
    # Follow the first tag link, then the first item, as a person would.
    await browser.open(await browser.evaluate("document.querySelector('table a').href"))
    assert await browser.evaluate("document.querySelector('h1').textContent") == "Assad"
    await browser.open(await browser.evaluate("document.querySelector('ul.items a').href"))
    assert await browser.evaluate("document.documentElement.scrollWidth") <= PHONE[0]
    text = await browser.evaluate("document.querySelector('article').innerText")
    assert "Only a teaser of this story has been seen so far." in text


async def test_hostile_titles_show_as_text(served, browser):
    client, base = served
    write_seed(settings_of(client.app).seeds_dir, "evil.txt",
               "<script>document.title='owned'</script><img src=x onerror=alert(1)>\n\nBody text.")
    await client.app[INGESTER].scan()
    await browser.open(f"{base}/")
    link = await browser.evaluate(
        "[...document.querySelectorAll('ul.items a')].find(a => a.textContent.includes('script')).href")
    await browser.open(link)
    assert await browser.evaluate("document.title") != "owned"
    assert await browser.evaluate("document.querySelectorAll('article img, article script').length") == 0
    assert await browser.evaluate("document.querySelector('h1').textContent") == (
        "<script>document.title='owned'</script><img src=x onerror=alert(1)>")


async def test_an_items_original_address_is_shown_and_fits_a_phone(served, browser):
    client, base = served
    address = "https://www.islandherald.example/news/2025/03/12/" + "a-very-long-address-segment-" * 8 + "end"
    body = "".join(f"<p>Paragraph {n} of an article saved from a browser, long enough to be read as one.</p>"
                   for n in range(6))
    write_seed(settings_of(client.app).seeds_dir, "saved.html",
               f'<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="canonical" href="{address}">'
               f'<meta property="og:type" content="article"></head><body><article><h1>A saved article</h1>'
               f"{body}</article></body></html>")
    await client.app[INGESTER].scan()
    await browser.open(f"{base}/")
    await browser.open(await browser.evaluate(
        "[...document.querySelectorAll('ul.items a')].find(a => a.textContent === 'A saved article').href"))
    assert await browser.evaluate("document.querySelector('p.link a').href") == address
    assert await browser.evaluate("document.documentElement.scrollWidth") <= PHONE[0]


async def test_a_search_typed_in_the_box_finds_and_marks_its_words_on_a_phone(served, browser):
    _client, base = served
    await browser.open(f"{base}/")
    # As a person would: type into the box in the header and press its button.
    await browser.evaluate("document.querySelector('form[role=search] input[name=q]').value = 'idlib -assad'")
    await browser.evaluate("document.querySelector('form[role=search] button').click()")
    for _ in range(100):
        if "/search?" in await browser.evaluate("location.href") and \
                await browser.evaluate("document.readyState") == "complete":
            break
        await asyncio.sleep(0.05)
    assert await browser.evaluate("location.href") == f"{base}/search?q=idlib+-assad"
    results = await browser.evaluate("[...document.querySelectorAll('ul.items li')].map(li => li.innerText)")
    assert results and all("assad" not in text.lower() for text in results)
    marked = await browser.evaluate("[...document.querySelectorAll('ul.items mark')].map(m => m.textContent)")
    assert marked and {word.lower() for word in marked} == {"idlib"}
    assert await browser.evaluate("document.querySelector('input[name=q]').value") == "idlib -assad"
    assert await browser.evaluate("document.documentElement.scrollWidth") <= PHONE[0]
    feeds = await browser.evaluate("[...document.querySelectorAll('link[rel=alternate]')].map(l => l.href)")
    assert f"{base}/feeds/search.atom?q=idlib+-assad" in feeds
