"""Running as a service: the foreground `serve` loop with systemd
notification and signals, the pid file behind start/stop/status, and the
systemd unit."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import resource
import signal
import socket
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from aggregator.config import Settings, load_settings
from aggregator.errors import AggregatorError, ConfigError
from aggregator.service import INGESTER, reload
from aggregator.web import make_app

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 3.0  # in-flight requests get this long; the whole stop stays under 5 s
# A connection that completes no request this long after it opened or after
# its last answer is closed (aiohttp's keep-alive timer, which partial headers
# do not reset): idle clients and ones trickling their headers do not hold
# descriptors for long.
IDLE_SECONDS = 15.0
# Descriptors kept for everything but client connections: the store, its
# log, the seed files being read, the watcher, the export.
RESERVED_FILES = 128
OPEN_FILES_WANTED = 65_536  # what the systemd unit asks for (LimitNOFILE)


# --- systemd notification (sd_notify protocol: one datagram per state) ---------


def notify(state: str) -> bool:
    """Tell systemd our state when it started us with Type=notify."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract socket namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError as error:
        log.warning("cannot notify systemd at %s: %s", os.environ["NOTIFY_SOCKET"], error)
        return False


def watchdog_interval() -> float | None:
    """Half the WatchdogSec systemd asked for, or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None


async def watchdog(interval: float) -> None:
    # Pinging from the event loop: a loop that hangs stops the pings, and
    # systemd restarts the service.
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)


# --- the pid file ---------------------------------------------------------------


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def is_running(pid: int) -> bool:
    """Alive and an aggregator (not another program that got the pid later)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the signal check
    return b"aggregator" in cmdline


def write_pid(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, path)


def remove_pid(path: Path) -> None:
    if read_pid(path) == os.getpid():
        path.unlink(missing_ok=True)


# --- serve ----------------------------------------------------------------------------


def reload_config(app: web.Application, settings: Settings) -> Settings:
    """SIGHUP: read the config again; a bad one is logged and the old kept."""
    try:
        new = load_settings(settings.config_path)
    except ConfigError as error:
        log.error("reload refused, keeping the running configuration: %s", error)
        return settings
    fixed = [key for key, old, now in (
        ("seeds.dir", settings.seeds_dir, new.seeds_dir),
        ("database.url", settings.database_url, new.database_url),
        ("server.host", settings.server_host, new.server_host),
        ("server.port", settings.server_port, new.server_port),
    ) if old != now]
    if fixed:
        log.warning("reload: %s only change with a restart; keeping the running values",
                    ", ".join(fixed))
        new = replace(new, seeds_dir=settings.seeds_dir, database_url=settings.database_url,
                      server_host=settings.server_host, server_port=settings.server_port)
    reload(app, new)
    logging.getLogger().setLevel(new.log_level.upper())
    log.info("configuration reloaded from %s", settings.config_path)
    return new


def connection_cap() -> int:
    """Client connections at once: what the descriptor limit leaves."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = OPEN_FILES_WANTED
    return max(16, min(OPEN_FILES_WANTED, soft - RESERVED_FILES))


class CappedSite(web.TCPSite):
    """A TCP site that holds at most `cap` connections: a new one past it
    closes the oldest, so a crowd of idle clients can neither use up the
    descriptors the store and the seed files need nor lock out /healthz."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, cap: int):
        super().__init__(runner, host, port)
        self.cap = cap

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None

        def connection() -> asyncio.BaseProtocol:
            # A closed connection leaves the list a moment later; those still
            # open (a transport) are the ones that count.
            still_open = [handler for handler in server.connections if handler.transport is not None]
            for oldest in still_open[: max(0, len(still_open) - self.cap + 1)]:
                oldest.force_close()
            return server()

        self._server = await asyncio.get_running_loop().create_server(
            connection, self._host, self._port, backlog=self._backlog, reuse_address=self._reuse_address)


class QueuedAccessLog(AbstractAccessLogger):
    """The access log, one line per request, as every other log line (text or
    JSON, to the same handlers), but made and written by a thread of its own,
    a batch at a time: on the event loop a request costs one tuple put on a
    queue. (aiohttp's own logger formats and writes each line on the loop,
    which cost a third of the requests a cached feed could be served at.)"""

    queue: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.queue.put((wall_clock(), request.remote, request.method, request.raw_path, request.version,
                        response.status, response.body_length or response.content_length or 0, time))

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    @classmethod
    def writer(cls, logger: logging.Logger) -> threading.Thread:
        """The thread that writes the lines, until None is queued."""
        def write() -> None:
            line = cls.queue.get()
            while line is not None:
                time.sleep(ACCESS_LOG_BATCH_SECONDS)  # one wake-up and one write for many requests
                batch = [line]
                while not cls.queue.empty() and (line := cls.queue.get()) is not None:
                    batch.append(line)
                emit(logger, batch)
                if line is not None:  # not told to stop: wait for the next request
                    line = cls.queue.get()

        thread = threading.Thread(target=write, name="access-log", daemon=True)
        thread.start()
        return thread


ACCESS_LOG_BATCH_SECONDS = 0.1
wall_clock = time.time


ACCESS_MESSAGE = '%s "%s %s HTTP/%d.%d" %d %d %.6fs'


def access_message(line: tuple) -> str:
    _created, remote, method, path, version, status, size, seconds = line
    return ACCESS_MESSAGE % (remote, method, path, *version, status, size, seconds)


def access_record(logger: logging.Logger, line: tuple) -> logging.LogRecord:
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, access_message(line), None, None)
    record.created = line[0]
    record.msecs = (line[0] % 1) * 1000
    return record


def emit(logger: logging.Logger, lines: list[tuple]) -> None:
    """Hand access lines to the logger's handlers (and its ancestors'): a
    stream with our text format gets them made straight into one write;
    any other handler gets a record each."""
    records: list[logging.LogRecord] | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if handler.level > logging.INFO:
                continue
            if (isinstance(handler, logging.StreamHandler) and type(handler).emit is logging.StreamHandler.emit
                    and isinstance(handler.formatter, TextFormatter) and not handler.filters):
                text = "".join(handler.formatter.line(line[0], "INFO", logger.name, access_message(line))
                               for line in lines)
                with handler.lock:
                    handler.stream.write(text)
                    handler.flush()
                continue
            if records is None:
                records = [access_record(logger, line) for line in lines]
            for record in records:
                handler.handle(record)
        current = current.parent if current.propagate else None


class OncePerMinute(logging.Filter):
    """Lets a message through once a minute: when the process is out of
    descriptors, asyncio logs every failed accept (hundreds of thousands of
    lines a minute otherwise)."""

    def __init__(self, starts: str):
        super().__init__()
        self.starts = starts
        self.next_allowed = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.starts):
            return True
        now = time.monotonic()
        if now < self.next_allowed:
            return False
        self.next_allowed = now + 60
        return True


async def serve(settings: Settings, ingest: bool = True) -> int:
    """Run until SIGTERM or SIGINT; 0 on a clean stop. With ingest=False, a
    replica: it serves what another process ingests into the same database."""
    # The pid file belongs to the ingesting service (start/stop/status);
    # replicas are run by their own supervisor, often several per host.
    pid = read_pid(settings.daemon_pid_file) if ingest else None
    if pid and pid != os.getpid() and is_running(pid):
        print(f"aggregator: already running (pid {pid}, {settings.daemon_pid_file})", file=sys.stderr)
        return 1
    app = make_app(settings, ingest=ingest)
    access = logging.getLogger("aiohttp.access")
    runner = web.AppRunner(app, access_log_class=QueuedAccessLog, access_log=access if settings.log_access else None,
                           shutdown_timeout=SHUTDOWN_SECONDS, keepalive_timeout=IDLE_SECONDS)
    access_writer = QueuedAccessLog.writer(access)
    logging.getLogger("asyncio").addFilter(OncePerMinute("socket.accept() out of system resource"))
    try:
        await runner.setup()  # the store, its ingest lock, the ingester and the watcher
        site = CappedSite(runner, settings.server_host, settings.server_port, connection_cap())
        await site.start()
        if ingest:
            write_pid(settings.daemon_pid_file)
    except (AggregatorError, OSError) as error:
        print(f"aggregator: cannot start: {error}", file=sys.stderr)
        await runner.cleanup()
        QueuedAccessLog.queue.put(None)
        return 1
    log.info("serving %s on http://%s:%d (feeds at %s/feeds/all.atom)", settings.seeds_dir,
             settings.server_host, settings.server_port, settings.base_url)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    current = settings

    def on_hangup() -> None:
        nonlocal current
        current = reload_config(app, current)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    pinger = asyncio.create_task(watchdog(interval)) if (interval := watchdog_interval()) else None
    first_scan = asyncio.create_task(app[INGESTER].first_scan.wait())
    await asyncio.wait([first_scan, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    if first_scan.done():
        notify("READY=1")
        log.info("ready: first scan done, listening")
    await stop.wait()
    log.info("stopping")
    notify("STOPPING=1")
    if pinger:
        pinger.cancel()
    await runner.cleanup()
    QueuedAccessLog.queue.put(None)
    access_writer.join(2)
    if ingest:
        remove_pid(settings.daemon_pid_file)
    log.info("stopped")
    if app[INGESTER].busy:
        # The worker thread is inside a transaction nobody will commit, and
        # the interpreter would wait for it at exit: leave without it.
        logging.shutdown()
        os._exit(0)
    return 0


# --- logging -------------------------------------------------------------------------------


class TextFormatter(logging.Formatter):
    """`2026-11-22 08:10:35,343 INFO aiohttp.access: …`, the date part made
    once a second: the access log writes thousands of lines a second."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._stamp: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.stamp(record.created)

    def stamp(self, created: float) -> str:
        second = int(created)
        stamp = self._stamp
        if stamp[0] != second:
            stamp = self._stamp = (second, time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second)))
        return f"{stamp[1]},{int((created - second) * 1000):03d}"

    def line(self, created: float, level: str, name: str, message: str) -> str:
        """What format() makes of a record with no exception, from its parts: no record needed."""
        return f"{self.stamp(created)} {level} {name}: {message}\n"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if hasattr(record, "path"):
            entry["path"] = record.path
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


# --- the systemd unit ---------------------------------------------------------------------


def systemd_unit(settings: Settings, user: bool) -> str:
    config = f" --config {settings.config_path}" if settings.config_path else ""
    url = settings.database_url
    sqlite_file = url.database if url.get_backend_name() == "sqlite" and url.database else None
    writable = sorted({
        str(settings.seeds_dir),
        str(settings.feeds_export_dir),
        str(settings.daemon_pid_file.parent),
        *([str(Path(sqlite_file).parent)] if sqlite_file and sqlite_file != ":memory:" else []),
    })
    lines = [
        "[Unit]",
        "Description=aggregator: deduplicated news feeds from a folder of saved pages",
        "After=network.target",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={sys.executable} -m aggregator{config} serve",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=2",
        f"LimitNOFILE={OPEN_FILES_WANTED}",
        "WatchdogSec=30",
        "TimeoutStopSec=10",
        f"WorkingDirectory={settings.config_path.parent if settings.config_path else Path.cwd()}",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        *([] if user else ["ProtectHome=read-only"]),
        "PrivateTmp=yes",
        f"ReadWritePaths={' '.join(writable)}",
        "",
        "[Install]",
        f"WantedBy={'default.target' if user else 'multi-user.target'}",
    ]
    return "\n".join(lines) + "\n"
