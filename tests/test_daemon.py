"""The service as operators run it: a real subprocess, real signals, real
file-system events, a real datagram socket standing in for systemd."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from helpers import TAG_PAGE, Daemon, get, run, wait_for, write_seed


def test_dropped_file_shows_in_its_tag_feed_within_two_seconds(daemon):
    daemon.start()
    daemon.ready()
    assert len(daemon.feed("/feeds/tags/idlib.atom").entries) == 10
    write_seed(daemon.seeds, "050_new.txt", TAG_PAGE.format(title="Fresh story from the watcher"), minute=0)
    os.utime(daemon.seeds / "050_new.txt")  # written just now, as a scraper would
    dropped = time.monotonic()
    found = wait_for(lambda: len(daemon.feed("/feeds/tags/idlib.atom").entries) == 11, 2.0)
    assert found, f"not in the tag feed {time.monotonic() - dropped:.1f}s after the drop"
    assert daemon.stop() == 0


def test_a_burst_of_files_is_coalesced_into_few_scans(daemon):
    daemon.start()
    daemon.ready()
    for n in range(300):
        (daemon.seeds / f"burst_{n:03}.txt").write_text(TAG_PAGE.format(title=f"Burst story number {n}"))
    assert wait_for(lambda: len(daemon.feed("/feeds/tags/idlib.atom?limit=500").entries) == 310, 30, 0.2)
    metrics = get(f"{daemon.base}/metrics").decode()
    scans = next(float(line.split()[-1]) for line in metrics.splitlines()
                 if line.startswith('aggregator_scans_total{result="ok"}'))
    assert scans <= 8, f"{scans} scans for one burst"


def test_sigterm_stops_within_five_seconds_with_status_zero(daemon):
    daemon.start()
    daemon.ready()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=5) == 0
    log = daemon.log.read_text()
    assert "stopping" in log and "stopped" in log


def test_systemd_notification_ready_watchdog_stopping(daemon, tmp_path):
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(20)
        daemon.start({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
        messages = []
        while "READY=1" not in messages:
            messages.append(sock.recv(256).decode())
        # READY only once the first scan is done and the port answers.
        assert len(daemon.feed("/feeds/all.atom").entries) == 30
        assert "WATCHDOG=1" in messages or sock.recv(256).decode() == "WATCHDOG=1"
        daemon.process.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in messages:
            messages.append(sock.recv(256).decode())
    assert daemon.process.wait(timeout=5) == 0


def test_sighup_reloads_config_and_keeps_it_when_bad(daemon):
    daemon.start()
    daemon.ready()
    assert daemon.feed("/feeds/all.atom").feed.title == "Test feeds"
    daemon.write_config(title="Renamed feeds")
    daemon.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: daemon.feed("/feeds/all.atom").feed.title == "Renamed feeds", 5)
    daemon.config.write_text(daemon.config.read_text() + "\n[feeds\n")
    daemon.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload refused" in daemon.log.read_text(), 5)
    assert daemon.feed("/feeds/all.atom").feed.title == "Renamed feeds"
    assert daemon.stop() == 0


def test_second_daemon_on_the_same_database_is_refused(daemon, tmp_path):
    daemon.start()
    daemon.ready()
    (tmp_path / "second").mkdir()
    other = Daemon(tmp_path / "second", daemon.seeds)
    other.config.write_text(daemon.config.read_text().replace(str(daemon.port), str(other.port))
                            .replace('"sqlite:///state/agg.db"', f'"sqlite:///{tmp_path}/state/agg.db"'))
    result = subprocess.run([sys.executable, "-m", "aggregator", "--config", str(other.config), "serve"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"another aggregator (pid {daemon.process.pid}) is already ingesting" in result.stderr
    assert run(daemon.config, "ingest").returncode == 1
    assert daemon.stop() == 0


def test_start_status_stop_with_pid_file(daemon):
    assert run(daemon.config, "status").returncode == 3
    started = run(daemon.config, "start")
    assert started.returncode == 0, started.stderr
    pid = int((daemon.config.parent / "state" / "agg.pid").read_text())
    assert f"pid {pid}" in started.stdout
    status = run(daemon.config, "status", "--json")
    assert status.returncode == 0
    report = json.loads(status.stdout)
    assert report["state"] == "running" and report["items"] == 30
    assert report["last_scan"]["files_seen"] == 5 and report["last_scan"]["failed"] == []
    again = run(daemon.config, "start")
    assert again.returncode == 1 and f"already running (pid {pid})" in again.stderr
    os.kill(pid, signal.SIGKILL)  # a crash leaves the pid file behind
    assert wait_for(lambda: run(daemon.config, "status").returncode == 1, 5)
    restarted = run(daemon.config, "start")
    assert restarted.returncode == 0 and "removing stale pid file" in restarted.stdout
    stopped = run(daemon.config, "stop")
    assert stopped.returncode == 0 and "aggregator stopped" in stopped.stdout
    assert run(daemon.config, "status").returncode == 3
    assert run(daemon.config, "stop").returncode == 0  # stopping a stopped service is fine


def test_json_logs_name_the_file_on_every_ingest_line(daemon):
    daemon.start(None, "--log-format", "json")
    daemon.ready()
    assert daemon.stop() == 0
    lines = [json.loads(line) for line in daemon.log.read_text().splitlines()]
    ingest = [line for line in lines if line["logger"] == "aggregator.ingest"]
    assert len(ingest) == 5 and all(line["path"] in line["message"] for line in ingest)


def test_systemd_unit_is_ready_to_install(daemon):
    unit = run(daemon.config, "systemd-unit").stdout
    for line in ("Type=notify", "Restart=on-failure", "WatchdogSec=30", "NoNewPrivileges=yes", "LimitNOFILE=65536",
                 "ProtectSystem=strict", "ProtectHome=read-only", "ExecReload=/bin/kill -HUP $MAINPID",
                 f"ExecStart={sys.executable} -m aggregator --config {daemon.config} serve",
                 "WantedBy=multi-user.target"):
        assert line in unit.splitlines(), line
    writable = next(line for line in unit.splitlines() if line.startswith("ReadWritePaths="))
    assert str(daemon.seeds) in writable and str(daemon.config.parent / "state") in writable
    user = run(daemon.config, "systemd-unit", "--user").stdout
    assert "WantedBy=default.target" in user and "ProtectHome=read-only" not in user


@pytest.mark.parametrize("enabled", [True, False])
def test_the_access_log_has_one_line_per_request_unless_switched_off(tmp_path, seed_dir, enabled):
    daemon = Daemon(tmp_path, seed_dir, f"[log]\naccess = {'true' if enabled else 'false'}\n")
    daemon.start()
    try:
        daemon.ready()
        for n in range(25):
            get(f"{daemon.base}/feeds/all.atom?limit={n + 1}")
        assert daemon.stop() == 0  # the writer thread empties its queue before the process ends
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
    lines = [line for line in daemon.log.read_text().splitlines() if "aiohttp.access" in line]
    feed_lines = [line for line in lines if '"GET /feeds/all.atom?limit=' in line]
    if not enabled:
        assert lines == []
        return
    assert len(feed_lines) == 25
    message = feed_lines[0].split(" INFO aiohttp.access: ")[1]
    assert message.startswith('127.0.0.1 "GET /feeds/all.atom?limit=1 HTTP/1.1" 200 ')
