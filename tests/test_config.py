import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from aggregator.config import OPTIONS, flatten, load_settings, settings_from
from aggregator.errors import ConfigError

from helpers import ROOT


def test_shipped_config_documents_every_key_with_its_default():
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    values = flatten(tomllib.loads(text))
    assert set(values) == {o.key for o in OPTIONS}
    for option in OPTIONS:
        assert values[option.key] == option.default, option.key
        name = option.key.split(".")[-1]
        comment = re.search(rf"((?:#.*\n)+){name} =", text)
        assert comment, f"{option.key} has no comment in config.toml"


def test_readme_documents_every_key():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [o.key for o in OPTIONS if f"`{o.key}`" not in readme]
    assert not missing


def test_the_public_address_follows_host_and_port_unless_set(tmp_path):
    (tmp_path / "seeds").mkdir()
    assert settings_from({"server.port": 8095}, tmp_path).base_url == "http://127.0.0.1:8095"
    assert settings_from({"server.host": "::1", "server.port": 8095}, tmp_path).base_url == "http://[::1]:8095"
    given = {"server.port": 8095, "server.base_url": "https://news.example.org/"}
    assert settings_from(given, tmp_path).base_url == "https://news.example.org"


def test_shipped_config_loads(tmp_path):
    settings = load_settings(ROOT / "config.toml")
    assert settings.seeds_dir == ROOT / "seeds"
    assert str(settings.database_url) == f"sqlite:///{ROOT / 'data' / 'aggregator.db'}"
    assert (settings.server_host, settings.server_port, settings.feeds_limit) == ("127.0.0.1", 8080, 50)


@pytest.mark.parametrize(
    "values,message",
    [
        ({"seeds.colour": "red"}, "seeds.colour: unknown configuration key"),
        ({"seeds.interval_seconds": "60"}, "seeds.interval_seconds: expected an integer, got '60'"),
        ({"seeds.interval_seconds": 0}, "seeds.interval_seconds: must be from 1 to 604 800, got 0"),
        ({"seeds.interval_seconds": 10**12}, "seeds.interval_seconds: must be from 1 to 604 800, got 1000000000000"),
        ({"seeds.settle_seconds": float("inf")}, "seeds.settle_seconds: must be from 0 to 3 600, got inf"),
        ({"seeds.settle_seconds": float("nan")}, "seeds.settle_seconds: must be from 0 to 3 600, got nan"),
        ({"feeds.limit": 2**63 - 1}, "feeds.limit: must be from 1 to 10 000"),
        ({"feeds.max_age_seconds": -1}, "feeds.max_age_seconds: must be from 0 to"),
        ({"seeds.max_file_bytes": 10}, "seeds.max_file_bytes: must be from 1 024 to"),
        ({"feeds.cache_bytes": 0}, "feeds.cache_bytes: must be from 1 048 576 to"),
        ({"feeds.title": "News\x01"}, "feeds.title: must not hold control characters (found '\\x01')"),
        ({"feeds.description": "a\nb"}, "feeds.description: must not hold control characters"),
        ({"feeds.language": "en_GB"}, "feeds.language: must be a language tag"),
        ({"server.port": True}, "server.port: expected an integer, got True"),
        ({"server.port": 70000}, "server.port: must be a port number from 1 to 65535"),
        ({"seeds.dir": "nowhere"}, "seeds.dir: folder"),
        ({"server.base_url": "example.org"}, "server.base_url: must be an absolute http"),
        ({"seeds.ignore": "*.tmp"}, "seeds.ignore: expected a list of strings"),
        ({"log.level": "loud"}, "log.level: must be one of"),
        ({"feeds.limit": 900}, "feeds.limit: 900 is more than feeds.max_limit (500)"),
        ({"database.url": "mysql://x"}, "database.url: 'mysql://x': the store runs on sqlite or postgresql"),
        ({"database.url": "postgresql://reader:s3cret@db.example:notaport/news"},
         "database.url: 'postgresql://reader:***@db.example:notaport/news' is not a valid SQLAlchemy URL"),
    ],
)
def test_bad_values_name_the_key(tmp_path, values, message):
    (tmp_path / "seeds").mkdir()
    with pytest.raises(ConfigError) as caught:
        settings_from(values, tmp_path)
    assert str(caught.value).startswith(message)


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "aggregator", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=60)


def test_bad_config_exits_2_with_one_line(tmp_path):
    config = tmp_path / "config.toml"
    (tmp_path / "seeds").mkdir()
    config.write_text('[feeds]\nlimit = "many"\n')
    result = run_cli("--config", str(config), "ingest")
    assert result.returncode == 2
    assert result.stderr == "aggregator: configuration error: feeds.limit: expected an integer, got 'many'\n"
    config.write_text("[feeds\n")
    result = run_cli("--config", str(config), "ingest")
    assert result.returncode == 2 and "is not valid TOML" in result.stderr
    assert result.stderr.count("\n") == 1


def test_without_a_config_file_the_error_says_where_one_was_looked_for(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AGGREGATOR_CONFIG"}
    result = subprocess.run([sys.executable, "-m", "aggregator", "tags"], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("(no config.toml here and $AGGREGATOR_CONFIG unset: the defaults were used)")


def test_config_from_environment(tmp_path):
    (tmp_path / "pages").mkdir()
    config = tmp_path / "elsewhere.toml"
    config.write_text('[seeds]\ndir = "pages"\n[database]\nurl = "sqlite:///db/a.db"\n')
    env = {"AGGREGATOR_CONFIG": str(config), "PATH": "/usr/bin:/bin"}
    result = run_cli("ingest", env=env)
    assert result.returncode == 0, result.stderr
    assert "files: 0 seen" in result.stdout
    assert (tmp_path / "db" / "a.db").exists()


@pytest.mark.parametrize("make", [lambda path: os.mkfifo(path), lambda path: path.mkdir()])
def test_a_config_path_that_is_no_regular_file_is_refused_at_once(tmp_path, make):
    path = tmp_path / "config.toml"
    make(path)
    with pytest.raises(ConfigError, match=r"is not a regular file|cannot be read"):
        load_settings(path)


def test_dev_zero_as_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_settings(Path("/dev/zero"))
