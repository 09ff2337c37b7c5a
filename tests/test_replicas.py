"""One ingester and two replicas on one PostgreSQL, as real subprocesses."""

import subprocess
import sys
import urllib.request

from helpers import TAG_PAGE, Daemon, free_port, get, run, wait_for, write_seed


def test_replicas_serve_new_items_with_the_same_bytes(postgres_url, tmp_path, seed_dir):
    ingester = Daemon(tmp_path, seed_dir)
    ingester.write_config()
    ingester.config.write_text(ingester.config.read_text().replace(
        'url = "sqlite:///state/agg.db"', f'url = "{postgres_url}"'))
    assert run(ingester.config, "db", "upgrade").returncode == 0
    replicas = []
    try:
        ingester.start()
        ingester.ready()
        for _ in range(2):
            port = free_port()
            process = subprocess.Popen([sys.executable, "-m", "aggregator", "--config", str(ingester.config),
                                        "serve", "--no-ingest", "--port", str(port)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            replicas.append((process, f"http://127.0.0.1:{port}"))
        for process, base in replicas:
            assert wait_for(lambda base=base: _answers(base), 20), process.stderr

        # A second ingester on the same database (another host: its own pid
        # file) is refused by the database's advisory lock.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "config.toml").write_text(ingester.config.read_text())
        extra = subprocess.run([sys.executable, "-m", "aggregator", "--config", str(elsewhere / "config.toml"),
                                "serve", "--port", str(free_port())], capture_output=True, text=True, timeout=30)
        assert extra.returncode == 1
        assert "another aggregator is already ingesting into this database" in extra.stderr

        write_seed(seed_dir, "060_replicated.txt", TAG_PAGE.format(title="Seen by every replica"), minute=0)
        # The ingester too: it serves its new feeds once it has rendered them all.
        for base in [ingester.base] + [b for _, b in replicas]:
            assert wait_for(lambda base=base: b"Seen by every replica" in get(f"{base}/feeds/tags/idlib.atom"),
                            2.0)
        bodies = {get(f"{base}/feeds/tags/idlib.atom") for base in [ingester.base] + [b for _, b in replicas]}
        assert len(bodies) == 1
        etags = {_etag(f"{base}/feeds/all.rss") for base in [ingester.base] + [b for _, b in replicas]}
        assert len(etags) == 1
    finally:
        for process, _ in replicas:
            process.terminate()
            process.wait(timeout=10)
        assert ingester.stop() == 0
    assert all(process.returncode == 0 for process, _ in replicas)


def _answers(base):
    try:
        return get(f"{base}/readyz", 1) and True
    except OSError:
        return False


def _etag(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.headers["ETag"]
