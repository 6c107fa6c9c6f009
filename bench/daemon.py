"""The daemon end to end: latency at a steady rate, a burst against ``scan``, idle CPU.

    python bench/daemon.py                  # 50 files/s for 60 s per mode; burst 10,000; idle 100,000
    python bench/daemon.py --quick          # 10 s per mode; burst 1,000; idle 10,000 (15 s)
    python bench/daemon.py --profile        # also py-spy the daemon during the burst and the idle window
    python bench/daemon.py --keep           # keep the scratch folder (printed) for inspection

Every measurement runs a real ``stacwatchd run --config …`` subprocess (real inotify, real
files, JSON log at level debug on its stdout, read incrementally here) with its own fresh
watched folder and catalog under a scratch folder in /tmp, ``workers = --workers`` and
``settle_seconds = --settle`` (default 1.0). ``$NOTIFY_SOCKET`` is a socket of ours, drained
continuously, and ``WATCHDOG_USEC`` matches the unit file's ``WatchdogSec=60s``.

1. latency — files are written into the watched folder at a fixed rate (absolute
   schedule, ``--rate`` files/s for ``--duration`` s), in two modes, each with a fresh
   daemon: **closed** (open the final name, write, close: ready after ``settle_seconds``)
   and **renamed** (write a hidden ``.name.tmp`` beside it, close, ``os.rename``: ready at
   once). t0 is the wall clock right after the close (renamed: right after the rename,
   which follows the close by microseconds). The Item is on disk when the writer logs
   its ``item_added`` event (logged after the batch's files were renamed into place), so
   latency = that event's ``timestamp`` − t0. An independent check polls the filesystem
   (every 5 ms) for every 10th file's Item JSON (``fs-poll``). The first ``--warmup``
   files (collection and partition creation) are left out of the percentiles.
   Target: p99 ≤ settle + 250 ms.
2. burst — ``--burst`` distinct rasters (``_common.distinct_rasters``: varied CRS, size,
   type, bands, layout; written once, hard-linked into a staging folder beside the
   watched one for each repeat), all dated inside one month (``--burst-span-days``: one
   partition, the worst case for partition rewrites), are ``os.rename``d into the watched
   folder as fast as possible (``--burst-mode copy`` copies them instead). Drain = last
   ``item_added`` timestamp − first move. The daemon is stopped and the same files are
   scanned (``stacwatchd scan --config``, same watch, same workers) into a fresh catalog;
   throughput ratio = scan seconds (scan's own figure, imports excluded, like the
   daemon's drain) / drain seconds. Target ≥ 0.8. Peak RSS Σ = the highest sum of VmRSS
   over the daemon and all its descendants (its build processes), sampled every
   0.2 s; PSS Σ the same with PSS, which splits shared pages instead of counting them once
   per process (target ≤ 250 MB summed); scan's tree is measured the same way. Partition rewrites are counted
   two ways: renames onto each ``catalog.json`` under the catalog (inotify, in this
   process) and batches (``batch_written`` events) holding an Item of that partition.
3. idle — ``--idle-files`` COGs in sub-folders of ``--chunk`` in the watched folder, dated
   over three years (~37 partitions), cataloged by ``stacwatchd scan`` (timed), then the
   daemon is started; its start-up reconcile's ``duration_ms`` (``reconciled`` event) is
   reported, then its CPU time (utime + stime, /proc/<pid>/stat) over ``--idle-seconds``
   of nothing happening, as % of one core, and its RSS. The periodic reconcile
   (every ``reconcile_interval`` = 600 s) falls outside the window; its amortised cost is
   the start-up reconcile's CPU time / 600 s, reported beside it.

The load average is recorded before every part (other jobs may share the machine).
``main(argv)`` returns the results dict (also written to bench/out/daemon.json).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DEFAULT_OUT = BENCH_DIR / "out" / "daemon.json"
QUICK_OUT = BENCH_DIR / "out" / "daemon-quick.json"
PACKAGES = ("stacwatchd", "watchdog", "rasterio", "structlog")
COLLECTION = "scenes"
START = datetime(2024, 1, 1, tzinfo=UTC)

TARGET_LATENCY_MARGIN_MS = 250.0
TARGET_BURST_RATIO = 0.8
TARGET_RSS_MIB = 200.0  # latency and idle: the daemon process
TARGET_BURST_RSS_MB = 250.0  # burst: every process of the daemon summed (build children included)

_STAMP = re.compile(r"_(\d{4})(\d{2})\d{2}T\d{6}$")
_SCAN_LINE = re.compile(r"^scan: .*\(([0-9.]+) s\)\s*$", re.M)
_CLK_TCK = os.sysconf("SC_CLK_TCK")

Log = Callable[[str], None]


class BenchError(RuntimeError):
    """A step did not produce what it should; the numbers would be meaningless."""


# ======================================================================================
# The daemon process, its log and its notify socket
# ======================================================================================


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def code_version() -> dict[str, Any]:
    """The stacwatchd sources every subprocess imports: git HEAD, local changes, content hash.

    Other people may commit while a long run goes on; each part records what it ran.
    """
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO / "stacwatchd").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    head = dirty = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "stacwatchd"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.split("\n")
        dirty = [line for line in dirty if line.strip()]
    return {"sources_sha256": digest.hexdigest()[:16], "git_head": head, "uncommitted_stacwatchd": dirty}


def _parse_ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class LogTail:
    """The daemon's JSON log, read incrementally (never re-read from the start)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self._offset = 0
        self._rest = b""

    def poll(self) -> int:
        """Read what was appended since the last call; returns how many events."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return 0
        self._offset += len(data)
        data = self._rest + data
        lines = data.split(b"\n")
        self._rest = lines.pop()
        n = 0
        for line in lines:
            if not line.startswith(b"{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            self.counts[event.get("event", "")] += 1
            n += 1
        return n

    def named(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.events[since:] if e.get("event") == name]

    def problems(self, since: int = 0) -> Counter[str]:
        """Warnings and errors since event index ``since``, by event name."""
        return Counter(e.get("event", "") for e in self.events[since:] if e.get("level") in ("warning", "error", "critical"))


class NotifyListener:
    """Our $NOTIFY_SOCKET: a thread keeps it drained (sd_notify's send blocks when full)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.last_status = ""
        self.messages = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self.sock], [], [], 0.2)
            if not readable:
                continue
            try:
                text = self.sock.recv(65536).decode(errors="replace")
            except OSError:
                return
            self.messages += 1
            for field in text.split("\n"):
                if field == "READY=1":
                    self.ready.set()
                elif field == "STOPPING=1":
                    self.stopping.set()
                elif field.startswith("STATUS="):
                    self.last_status = field[7:]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class RssSampler:
    """VmRSS of a process every ``interval`` s in a thread (VmHWM is the authoritative peak)."""

    def __init__(self, pid: int, interval: float = 0.2, status: Callable[[], str] | None = None) -> None:
        self.pid = pid
        self.status = status
        self.samples: list[tuple[float, int]] = []
        self.statuses: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), name="rss", daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            kb = proc_status_kb(self.pid, "VmRSS")
            if kb is None:
                return
            now = time.time()
            self.samples.append((now, kb))
            if self.status is not None:
                self.statuses.append((now, self.status()))

    def stop(self) -> dict[str, float | None]:
        self._stop.set()
        self._thread.join(2)
        kbs = [kb for _, kb in self.samples]
        return {"max_mib": max(kbs) / 1024 if kbs else None, "last_mib": kbs[-1] / 1024 if kbs else None}


class Daemon:
    """One ``stacwatchd run`` over one watched folder and one catalog (as tests/daemon_support.py)."""

    def __init__(self, base: Path, *, settle: float, workers: int, reconcile: float = 600.0, level: str = "debug") -> None:
        self.base = base
        self.watched = base / "incoming"
        self.catalog = base / "catalog"
        self.watched.mkdir(parents=True, exist_ok=True)
        self.config = base / "config.toml"
        self.log_path = base / "daemon.log"
        self.settle = settle
        self.workers = workers
        self.config.write_text(
            config_text(self.catalog, self.watched, settle=settle, workers=workers, reconcile=reconcile, level=level)
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.log = LogTail(self.log_path)
        self.notify: NotifyListener | None = None
        self.started_at = 0.0
        self.ready_s: float | None = None
        self.code: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 120.0) -> Daemon:
        self.notify = NotifyListener(self.base / "notify.sock")
        env = dict(os.environ, NOTIFY_SOCKET=str(self.notify.path), WATCHDOG_USEC="60000000")
        env.pop("WATCHDOG_PID", None)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.code = code_version()
        self.started_at = time.monotonic()
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stacwatchd", "run", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
            )
        deadline = time.monotonic() + timeout
        while not self.notify.ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise BenchError(f"daemon did not become ready: {self.log_path.read_text(errors='replace')[-3000:]}")
        self.ready_s = time.monotonic() - self.started_at
        return self

    def wait_events(self, name: str, count: int, timeout: float, interval: float = 0.2, since: int = 0) -> list[dict[str, Any]]:
        """Poll the log until ``count`` events named ``name`` (after index ``since``) were logged."""
        deadline = time.monotonic() + timeout
        while True:
            self.log.poll()
            found = self.log.named(name, since)
            if len(found) >= count:
                return found
            if self.process is not None and self.process.poll() is not None:
                raise BenchError(f"daemon exited ({self.process.returncode}) waiting for {count}× {name}; log {self.log_path}")
            if time.monotonic() > deadline:
                raise BenchError(
                    f"timed out after {timeout:.0f} s waiting for {count}× {name} (got {len(found)}); log {self.log_path}"
                )
            time.sleep(interval)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def status_kb(self, key: str) -> int | None:
        return proc_status_kb(self.pid, key)

    def threads(self) -> int | None:
        return self.status_kb("Threads")

    def stop(self, timeout: float = 120.0) -> tuple[int, float]:
        """SIGTERM and wait; returns (exit code, seconds to exit)."""
        assert self.process is not None
        t0 = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise BenchError(f"daemon did not exit within {timeout:.0f} s of SIGTERM") from None
        seconds = time.monotonic() - t0
        self.log.poll()
        self.close()
        return self.process.returncode, seconds

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.notify is not None:
            self.notify.close()
            self.notify = None


def config_text(catalog: Path, watched: Path, *, settle: float, workers: int, reconcile: float, level: str) -> str:
    return (
        f'settle_seconds = {settle}\nworkers = {workers}\nobserver = "inotify"\nreconcile_interval = {reconcile}\n'
        f'[log]\nformat = "json"\nlevel = "{level}"\n'
        f'[catalog]\nroot = "{catalog}"\ntitle = "Benchmark"\n'
        f'[[watch]]\npath = "{watched}"\n'
        f'[watch.collection]\nid = "{COLLECTION}"\n'
    )


# ======================================================================================
# Counting catalog rewrites with inotify (in this process)
# ======================================================================================

_IN_CREATE = 0x100
_IN_MOVED_TO = 0x80
_IN_Q_OVERFLOW = 0x4000
_IN_ISDIR = 0x40000000
_EVENT = struct.Struct("iIII")
_CATALOG_NAMES = (b"catalog.json", b"collection.json")


class CatalogWrites:
    """Renames onto catalog.json / collection.json below a catalog root, counted by path.

    The writer stages every file as a hidden temp file and ``os.replace``s it, so each
    rewrite is one IN_MOVED_TO. Folders are watched down to ``depth`` (root=0, collection=1,
    year=2, month=3); Item folders below are not. A folder created and written before our
    watch on it was in place shows a catalog we never saw renamed: it is counted once and
    listed in ``missed`` (the true count may be one or two higher).
    """

    def __init__(self, root: Path, depth: int = 3) -> None:
        self.root = root
        self.depth = depth
        self.counts: Counter[str] = Counter()
        self.missed: set[str] = set()
        self.overflows = 0
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._wds: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._watch(root, "", 0)
        self._thread = threading.Thread(target=self._run, name="catalog-writes", daemon=True)
        self._thread.start()

    def _watch(self, folder: Path, rel: str, depth: int) -> None:
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(folder), _IN_CREATE | _IN_MOVED_TO)
        if wd < 0:
            return  # vanished already
        self._wds[wd] = (rel, depth)
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                if depth < self.depth and not entry.name.startswith(".") and not any(w[0] == child for w in self._wds.values()):
                    self._watch(Path(entry.path), child, depth + 1)
            elif entry.name.encode() in _CATALOG_NAMES and child not in self.counts:
                self.counts[child] += 1
                self.missed.add(child)

    def _run(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self._fd], [], [], 0.1)
            if readable:
                self._drain()
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                return
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                if mask & _IN_Q_OVERFLOW:
                    self.overflows += 1
                    continue
                where = self._wds.get(wd)
                if where is None:
                    continue
                rel, depth = where
                child = f"{rel}/{name.decode()}" if rel else name.decode()
                if mask & _IN_ISDIR:
                    if mask & _IN_CREATE and depth < self.depth and not name.startswith(b"."):
                        self._watch(self.root / child, child, depth + 1)
                elif mask & _IN_MOVED_TO and name in _CATALOG_NAMES:
                    self.counts[child] += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self._fd)

    def partitions(self) -> dict[str, int]:
        """Rewrites of every partition catalog (not the root catalog, not collection.json)."""
        return {k: v for k, v in self.counts.items() if k.count("/") >= 2 and k.endswith("/catalog.json")}


# ======================================================================================
# py-spy (optional)
# ======================================================================================


class PySpy:
    """``py-spy record --format raw`` of a running pid until stopped; summarised by function."""

    def __init__(self, pid: int, out: Path, rate: int = 100) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        exe = shutil.which("py-spy")
        if exe is None:
            self.error = "py-spy not found (pip install py-spy)"
            return
        self.error = None
        out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)  # attach

    def stop(self, top: int = 25) -> dict[str, Any]:
        if self.proc is None:
            return {"error": self.error}
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.out.exists():
            return {"error": f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}"}
        return summarise_collapsed(self.out, top) | {"file": str(self.out)}


_ROLES = (
    ("writer", "Pipeline._write_loop"),
    ("workers", "Pipeline._work_loop"),
    ("settler", "Settler._run"),
    ("reconcile", "Daemon._reconcile_loop"),
    ("main loop", "Daemon.run"),
    ("watcher", "watchdog/"),
)


#: Leaf frames of threads that are blocked, not running (py-spy's idle detection misses them).
_WAITS = ("Condition.wait (threading.py)", "InotifyFD._check_inotify_fd (", "select (", "Event.wait (threading.py)")


def summarise_collapsed(path: Path, top: int) -> dict[str, Any]:
    """Self and inclusive sample counts per function from py-spy's collapsed stacks, overall
    and per daemon thread role (writer, workers, settler, reconcile, main loop, watcher).
    Samples whose innermost frame is a wait (``_WAITS``) are counted apart, not profiled."""
    waiting = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    roles: Counter[str] = Counter()
    role_own: dict[str, Counter[str]] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        if frames[-1].startswith(_WAITS):
            waiting += n
            continue
        role = next((name for name, marker in _ROLES if marker in stack), "other")
        roles[role] += n
        role_own.setdefault(role, Counter())[frames[-1]] += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n

    def pct(n: int, of: int) -> float:
        return round(100 * n / max(of, 1), 1)

    total -= waiting
    return {
        "samples": total,
        "waiting_samples": waiting,
        "roles": {r: (n, pct(n, total)) for r, n in roles.most_common()},
        "self": [(f, n, pct(n, total)) for f, n in own.most_common(top)],
        "inclusive": [(f, n, pct(n, total)) for f, n in inclusive.most_common(top)],
        "self_by_role": {
            r: [(f, n, pct(n, roles[r])) for f, n in c.most_common(10)]
            for r, c in role_own.items()
            if r in ("writer", "workers", "main loop", "settler")
        },
    }


# ======================================================================================
# Files
# ======================================================================================


def item_rel(item_id: str) -> str:
    """The Item JSON's path inside the catalog (partition year/month from the name's stamp)."""
    m = _STAMP.search(item_id)
    if m is None:
        raise BenchError(f"no date stamp in {item_id}")
    return f"{COLLECTION}/{m.group(1)}/{m.group(2)}/{item_id}/{item_id}.json"


def partition_of_id(item_id: str) -> str:
    m = _STAMP.search(item_id)
    return f"{COLLECTION}/{m.group(1)}/{m.group(2)}" if m else "?"


def count_item_files(catalog: Path) -> int:
    n = 0
    for _, dirs, names in os.walk(catalog / COLLECTION):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        n += sum(1 for name in names if name.endswith(".json") and name not in ("catalog.json", "collection.json"))
    return n


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def run_scan_measured(config: Path, log: Log) -> dict[str, Any]:
    """Like run_scan, but reaps the child with wait4 for its CPU time, and samples its tree
    for memory (its own peak from VmHWM)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    out_path = config.with_suffix(".scan.out")
    t0 = time.monotonic()
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stacwatchd", "scan", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
        tree = _common.TreeMonitor(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        tree_peaks = tree.stop()
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = out_path.read_text(errors="replace")
    m = _SCAN_LINE.search(text)
    if proc.returncode not in (0, 1) or m is None:
        raise BenchError(f"scan failed ({proc.returncode}): {text[-2000:]}")
    line = m.group(0).strip()
    log(f"  {line}")
    return {
        "seconds": float(m.group(1)),
        "wall_s": wall,
        "summary": line,
        "exit": proc.returncode,
        "peak_rss_mib": tree_peaks["peak_main_rss_mib"],
        "peak_rss_sum_mib": tree_peaks["peak_rss_sum_mib"],
        "peak_pss_sum_mib": tree_peaks["peak_pss_sum_mib"],
        "processes": tree_peaks["peak_processes"],
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


# ======================================================================================
# 1. latency at a steady rate
# ======================================================================================


class FsPoller:
    """Polls for Item JSON files every ``interval`` s: first-seen time per expected path."""

    def __init__(self, catalog: Path, interval: float = 0.005) -> None:
        self.catalog = catalog
        self.pending: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), name="fs-poll", daemon=True)
        self._thread.start()

    def expect(self, rel: str, t0: float) -> None:
        with self._lock:
            self.pending[rel] = t0

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with self._lock:
                todo = list(self.pending)
            for rel in todo:
                if os.path.exists(self.catalog / rel):
                    now = time.time()
                    with self._lock:
                        t0 = self.pending.pop(rel)
                    self.seen[rel] = now - t0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def steady_rate(
    daemon: Daemon, mode: str, blobs: list[tuple[str, bytes]], args: argparse.Namespace, log: Log, label: str
) -> dict[str, Any]:
    """Write ``blobs`` into the running daemon's watched folder at ``args.rate``; latency row."""
    mark = len(daemon.log.events)
    poller = FsPoller(daemon.catalog)
    rate = args.rate
    closes: dict[str, float] = {}
    slips: list[float] = []
    log(f"[{label}] {len(blobs):,} files at {rate:g}/s into {daemon.watched} (settle {args.settle:g} s) …")
    cpu0 = daemon.cpu_seconds()
    t_begin = time.monotonic()
    for i, (name, data) in enumerate(blobs):
        due = t_begin + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        slips.append(max(0.0, -delay))
        final = daemon.watched / name
        if mode == "closed":
            with open(final, "wb") as fh:
                fh.write(data)
            t0 = time.time()
        else:
            temp = daemon.watched / f".{name}.tmp"
            with open(temp, "wb") as fh:
                fh.write(data)
            os.rename(temp, final)
            t0 = time.time()
        closes[str(final)] = t0
        if i % 10 == 0:
            poller.expect(item_rel(name[: -len(".tif")]), t0)
    t_written = time.monotonic()
    added = daemon.wait_events("item_added", len(blobs), timeout=max(args.settle * 3 + 120, len(blobs) * 0.5), since=mark)
    cpu1 = daemon.cpu_seconds()
    t_done = time.monotonic()
    time.sleep(0.3)
    poller.stop()
    daemon.log.poll()
    latencies: dict[str, float] = {}
    for event in added:
        path = event.get("path")
        if path in closes and path not in latencies:
            latencies[path] = (_parse_ts(event["timestamp"]) - closes[path]) * 1000
    order = [str(daemon.watched / name) for name, _ in blobs]
    missing = [p for p in order if p not in latencies]
    if missing:
        raise BenchError(f"[{label}] {len(missing)} files have no item_added event, e.g. {missing[:3]}")
    warm = order[: args.warmup]
    measured = [latencies[p] for p in order[args.warmup :]] or [latencies[p] for p in order]
    fs = [v * 1000 for v in poller.seen.values()]
    target = args.settle * 1000 + TARGET_LATENCY_MARGIN_MS
    p99 = _common.percentile(measured, 99)
    batches = daemon.log.named("batch_written", mark)
    row = {
        "mode": mode,
        "files": len(blobs),
        "measured": len(measured),
        "rate_per_s": rate,
        "achieved_rate_per_s": len(blobs) / max(t_written - t_begin, 1e-9),
        "max_slip_ms": max(slips) * 1000,
        "settle_s": args.settle,
        "p50_ms": _common.percentile(measured, 50),
        "p90_ms": _common.percentile(measured, 90),
        "p99_ms": p99,
        "max_ms": max(measured),
        "min_ms": min(measured),
        "warmup_ms": [round(latencies[p], 1) for p in warm],
        "fs_poll_n": len(fs),
        "fs_poll_p50_ms": _common.percentile(fs, 50) if fs else None,
        "fs_poll_p99_ms": _common.percentile(fs, 99) if fs else None,
        "fs_poll_unseen": len(poller.pending),
        "over_settle_p99_ms": p99 - (args.settle * 1000 if mode == "closed" else 0.0),
        "target_p99_ms": target,
        "meets_target": p99 <= target,
        "cpu_pct": 100 * (cpu1 - cpu0) / max(t_done - t_begin, 1e-9),
        "batches": len(batches),
        "items_per_batch": len(blobs) / max(len(batches), 1),
        "batch_ms_median": _common.median(float(b.get("duration_ms", 0)) for b in batches) if batches else None,
        "batch_ms_max": max((float(b.get("duration_ms", 0)) for b in batches), default=None),
        "warnings": dict(daemon.log.problems(mark)),
    }
    log(
        f"[{label}] p50 {row['p50_ms']:.0f} ms, p99 {p99:.0f} ms (target ≤ {target:.0f}), "
        f"fs-poll p99 {row['fs_poll_p99_ms'] or float('nan'):.0f} ms, {row['batches']} batches "
        f"(median {row['batch_ms_median'] or 0:.0f} ms), CPU {row['cpu_pct']:.1f} %"
    )
    return row


def measure_latency(
    mode: str, blobs: list[tuple[str, bytes]], args: argparse.Namespace, workdir: Path, log: Log
) -> dict[str, Any]:
    base = _fresh(workdir / f"latency-{mode}")
    daemon = Daemon(base, settle=args.settle, workers=args.workers)
    load = load_average()
    daemon.start()
    try:
        daemon.wait_events("reconciled", 1, timeout=60)
        row = steady_rate(daemon, mode, blobs, args, log, f"latency {mode}")
        hwm = daemon.status_kb("VmHWM")
        code, stop_s = daemon.stop()
    finally:
        daemon.close()
    row |= {
        "code": daemon.code,
        "catalog_items_before": 0,
        "peak_rss_mib": hwm / 1024 if hwm else None,
        "exit_code": code,
        "stop_s": stop_s,
        "load_before": load,
        "load_after": load_average(),
    }
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return row


# ======================================================================================
# 2. burst versus scan
# ======================================================================================


def measure_burst(args: argparse.Namespace, workdir: Path, log: Log) -> dict[str, Any]:
    """``--burst-repeats`` bursts (daemon, then scan, each time); the verdicts use the median
    ratio and the worst peak RSS, because a run can land in either of two regimes (the
    writer keeping up with small batches, or falling behind with batches of max_batch)."""
    pool = workdir / "burst-rasters"
    log(
        f"[burst] writing {args.burst:,} distinct rasters dated over {args.burst_span_days:g} days (once; hard-linked per repeat) …"
    )
    t = time.monotonic()
    rasters = _common.distinct_rasters(pool, args.burst, prefix="burst", start=START, span_days=args.burst_span_days)
    gen_s = time.monotonic() - t
    runs = [burst_once(args, workdir, log, rep, rasters, gen_s) for rep in range(args.burst_repeats)]
    shutil.rmtree(pool, ignore_errors=True)
    ratios = [r["ratio_to_scan"] for r in runs]
    peaks = [r["peak_rss_sum_mib"] for r in runs if r["peak_rss_sum_mib"] is not None]
    pss = [r["peak_pss_sum_mib"] for r in runs if r["peak_pss_sum_mib"] is not None]
    median_ratio = _common.median(ratios)
    worst_rss = max(peaks) if peaks else None
    summary = {
        "files": args.burst,
        "repeats": len(runs),
        "mode": args.burst_mode,
        "ratio_to_scan_median": median_ratio,
        "ratio_to_scan_all": ratios,
        "meets_ratio_target": median_ratio >= TARGET_BURST_RATIO,
        "peak_rss_mib_max": worst_rss,
        "peak_rss_mib_all": peaks,
        "peak_pss_mib_max": max(pss) if pss else None,
        "peak_pss_mib_all": pss,
        "meets_rss_target": worst_rss is not None and worst_rss * 1.048576 <= TARGET_BURST_RSS_MB,
        "meets_pss_target": bool(pss) and max(pss) * 1.048576 <= TARGET_BURST_RSS_MB,
        "drain_s_median": _common.median(r["drain_s"] for r in runs),
        "scan_s_median": _common.median(r["scan_s"] for r in runs),
        "busiest_partition": runs[0]["busiest_partition"],
        "busiest_partition_rewrites_all": [r["busiest_partition_rewrites"] for r in runs],
        "runs": runs,
    }
    return summary


def burst_once(args: argparse.Namespace, workdir: Path, log: Log, rep: int, rasters: list[Path], gen_s: float) -> dict[str, Any]:
    n = args.burst
    base = _fresh(workdir / f"burst-{rep + 1}")
    staging = base / "staging"
    paths = sorted(_common.link_subset(rasters, staging))
    _common.warm_page_cache(paths)
    _common.settle()

    daemon = Daemon(base, settle=args.settle, workers=args.workers)
    load = load_average()
    daemon.start()
    spy: PySpy | None = None
    try:
        daemon.wait_events("reconciled", 1, timeout=60)
        mark = len(daemon.log.events)
        writes = CatalogWrites(daemon.catalog)
        rss = RssSampler(daemon.pid, status=lambda: daemon.notify.last_status if daemon.notify else "")
        tree = _common.TreeMonitor(daemon.pid)
        if args.profile:
            spy = PySpy(daemon.pid, args.profile_dir / f"daemon-burst-{rep + 1}.pyspy.txt")
        cpu0 = daemon.cpu_seconds()
        log(f"[burst {rep + 1}/{args.burst_repeats}] {args.burst_mode} {n:,} files into {daemon.watched} …")
        t_first = time.time()
        if args.burst_mode == "move":
            for p in paths:
                os.rename(p, daemon.watched / p.name)
        else:
            for p in paths:
                shutil.copyfile(p, daemon.watched / p.name)
        t_arrived = time.time()
        added = daemon.wait_events("item_added", n, timeout=max(600.0, n * 0.2), interval=0.5, since=mark)
        cpu1 = daemon.cpu_seconds()
        time.sleep(1.0)  # the last batch's catalog renames
        profile = spy.stop() if spy is not None else None
        spy = None
        hwm = daemon.status_kb("VmHWM")
        rss_seen = rss.stop()
        tree_peaks = tree.stop()
        threads = daemon.threads()
        daemon.log.poll()
        writes.stop()
        problems = daemon.log.problems(mark)
        events_lost = daemon.log.counts["events_lost"]
        code, stop_s = daemon.stop()
    finally:
        if spy is not None:
            spy.stop()
        daemon.close()
    stamps = sorted(_parse_ts(e["timestamp"]) for e in added)
    t_last = max(stamps)
    # RSS over time beside the Items already written and the daemon's STATUS= queue figure.
    timeline = []
    queue_re = re.compile(r"queue (\d+), building (\d+)")
    statuses = dict(rss.statuses)
    last = -1.0
    for when, kb in rss.samples:
        if when - last < 1.0 and when < t_last:
            continue
        last = when
        m = queue_re.search(statuses.get(when, ""))
        written = sum(1 for t in stamps if t <= when)
        timeline.append([round(when - t_first, 1), round(kb / 1024, 1), written, int(m.group(1)) if m else None])
    drain_s = t_last - t_first
    on_disk = count_item_files(daemon.catalog)
    if on_disk != n:
        raise BenchError(f"[burst] {on_disk} Item files on disk for {n} inputs")

    # Partition rewrites from the log: each batch rewrites the partitions its Items are in.
    by_batch: Counter[str] = Counter()
    touched: set[str] = set()
    batch_sizes: list[int] = []
    files_written = 0
    in_batch = 0
    for event in daemon.log.events[mark:]:
        name = event.get("event")
        if name == "item_added":
            touched.add(partition_of_id(event.get("item_id", "")))
            in_batch += 1
        elif name == "batch_written":
            for part in touched:
                by_batch[part] += 1
            batch_sizes.append(int(event.get("ops", in_batch)))
            files_written += int(event.get("files_written", 0))
            touched, in_batch = set(), 0
    partitions = {k.removesuffix("/catalog.json"): v for k, v in writes.partitions().items()}
    busiest, busiest_n = max(partitions.items(), key=lambda kv: kv[1]) if partitions else ("–", 0)
    missed = sorted(m for m in writes.missed if m != "catalog.json")  # the root predates the watch

    log(
        f"[burst {rep + 1}/{args.burst_repeats}] drained {n:,} in {drain_s:.1f} s; scanning the same files into a fresh catalog …"
    )
    scan_cfg = base / "scan.toml"
    scan_cfg.write_text(
        config_text(
            base / "catalog-scan", daemon.watched, settle=args.settle, workers=args.workers, reconcile=600, level="warning"
        )
    )
    _common.settle()
    load_scan = load_average()
    scan_code = code_version()
    scan = run_scan_measured(scan_cfg, log)
    ratio = scan["seconds"] / drain_s
    rss_mib = hwm / 1024 if hwm else None
    result = {
        "repeat": rep + 1,
        "files": n,
        "code": daemon.code,
        "scan_code": scan_code,
        "mode": args.burst_mode,
        "span_days": args.burst_span_days,
        "generate_s": gen_s,
        "arrival_s": t_arrived - t_first,
        "first_item_s": min(stamps) - t_first,
        "drain_s": drain_s,
        "daemon_items_per_s": n / drain_s,
        "daemon_cpu_s": cpu1 - cpu0,
        "scan_s": scan["seconds"],
        "scan_wall_s": scan["wall_s"],
        "scan_items_per_s": n / scan["seconds"],
        "scan_peak_rss_mib": scan["peak_rss_mib"],
        "scan_cpu_s": scan["cpu_s"],
        "scan_summary": scan["summary"],
        "ratio_to_scan": ratio,
        "meets_ratio_target": ratio >= TARGET_BURST_RATIO,
        "peak_rss_mib": rss_mib,
        "peak_rss_sampled_mib": rss_seen["max_mib"],
        "peak_rss_sum_mib": tree_peaks["peak_rss_sum_mib"],
        "peak_pss_sum_mib": tree_peaks["peak_pss_sum_mib"],
        "processes": tree_peaks["peak_processes"],
        "scan_peak_rss_sum_mib": scan["peak_rss_sum_mib"],
        "scan_peak_pss_sum_mib": scan["peak_pss_sum_mib"],
        "meets_rss_target": tree_peaks["peak_rss_sum_mib"] * 1.048576 <= TARGET_BURST_RSS_MB,
        "threads": threads,
        "rss_timeline": timeline,  # [s since first move, RSS MiB, Items written, STATUS= queue]
        "batches": len(batch_sizes) or None,  # None: the daemon logged no batch_written events
        "ops_per_batch_mean": sum(batch_sizes) / max(len(batch_sizes), 1),
        "ops_per_batch_max": max(batch_sizes, default=0),
        "files_written": files_written,
        "partitions": len(partitions),
        "busiest_partition": busiest,
        "busiest_partition_rewrites": busiest_n,
        "partition_rewrites_inotify": dict(sorted(partitions.items())),  # partition folder → catalog.json renames
        "partition_batches_log": dict(sorted(by_batch.items())),
        "collection_json_rewrites": writes.counts.get(f"{COLLECTION}/collection.json", 0),
        "root_catalog_rewrites": writes.counts.get("catalog.json", 0),
        "inotify_missed": missed,
        "inotify_overflows": writes.overflows,
        "events_lost": events_lost,
        "warnings": dict(problems),
        "exit_code": code,
        "stop_s": stop_s,
        "load_before": load,
        "load_before_scan": load_scan,
        "load_after": load_average(),
        "profile": profile,
    }
    log(
        f"[burst {rep + 1}/{args.burst_repeats}] daemon {n / drain_s:,.0f}/s vs scan {n / scan['seconds']:,.0f}/s → {ratio:.2f}×; peak RSS Σ {tree_peaks['peak_rss_sum_mib']:.0f} MiB, PSS Σ {tree_peaks['peak_pss_sum_mib']:.0f} MiB; "
        f"{len(batch_sizes)} batches; busiest partition {busiest} rewritten {busiest_n}×"
    )
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return result


# ======================================================================================
# 3. idle
# ======================================================================================


def measure_idle(args: argparse.Namespace, workdir: Path, log: Log) -> dict[str, Any]:
    from stacwatchd.testing import many_cogs

    n, chunk = args.idle_files, args.chunk
    base = _fresh(workdir / "idle")
    daemon = Daemon(base, settle=args.settle, workers=args.workers)
    folders = (n + chunk - 1) // chunk
    span = timedelta(days=1096) / folders
    log(f"[idle] writing {n:,} COGs in {folders} sub-folders of ≤ {chunk:,} …")
    t = time.monotonic()
    for k in range(folders):
        count = min(chunk, n - k * chunk)
        many_cogs(daemon.watched / f"part{k:04d}", count, start=START + k * span, span=span, prefix=f"s{k:04d}")
    gen_s = time.monotonic() - t
    log(f"[idle] written in {gen_s:.0f} s; building the catalog with stacwatchd scan …")
    _common.settle()
    load_scan = load_average()
    scan_code = code_version()
    scan = run_scan_measured(daemon.config, log)
    _common.settle()
    load = load_average()
    log(f"[idle] starting the daemon over {n:,} cataloged files …")
    daemon.start(timeout=600)
    spy: PySpy | None = None
    try:
        cpu_ready = daemon.cpu_seconds()
        t_ready = time.monotonic()
        reconciled = daemon.wait_events("reconciled", 1, timeout=1800, interval=0.1)[0]
        cpu_reconciled = daemon.cpu_seconds()
        t_reconciled = time.monotonic()
        time.sleep(3.0)  # let anything the reconcile queued (nothing, if all unchanged) pass
        mark = len(daemon.log.events)
        rss = RssSampler(daemon.pid, interval=1.0)
        if args.profile:
            spy = PySpy(daemon.pid, args.profile_dir / "daemon-idle.pyspy.txt")
        log(f"[idle] measuring CPU over {args.idle_seconds:g} s of nothing happening …")
        cpu0, t0 = daemon.cpu_seconds(), time.monotonic()
        time.sleep(args.idle_seconds)
        cpu1, t1 = daemon.cpu_seconds(), time.monotonic()
        profile = spy.stop() if spy is not None else None
        spy = None
        rss_seen = rss.stop()
        rss_kb = daemon.status_kb("VmRSS")
        hwm = daemon.status_kb("VmHWM")
        threads = daemon.threads()
        daemon.log.poll()
        idle_events = Counter(e.get("event", "") for e in daemon.log.events[mark:])
        late = None
        if args.big_duration > 0:
            # The same steady-rate latency as part 1, now on top of the n cataloged files.
            staging = base / "late-src"
            count = max(1, round(args.rate * args.big_duration))
            paths = sorted(many_cogs(staging, count, start=START, span=timedelta(days=28), prefix="late"))
            blobs = [(p.name, p.read_bytes()) for p in paths]
            shutil.rmtree(staging)
            if args.profile:
                spy = PySpy(daemon.pid, args.profile_dir / "daemon-latency-big.pyspy.txt")
            late = steady_rate(daemon, "closed", blobs, args, log, f"latency closed at {n:,}")
            late["catalog_items_before"] = n
            if spy is not None:
                late["profile"] = spy.stop()
                spy = None
            late["peak_rss_mib"] = (daemon.status_kb("VmHWM") or 0) / 1024
        code, stop_s = daemon.stop()
    finally:
        if spy is not None:
            spy.stop()
        daemon.close()
    idle_pct = 100 * (cpu1 - cpu0) / (t1 - t0)
    reconcile_cpu = cpu_reconciled - cpu_ready
    result = {
        "files": n,
        "code": daemon.code,
        "scan_code": scan_code,
        "chunk": chunk,
        "folders": folders,
        "generate_s": gen_s,
        "scan_s": scan["seconds"],
        "scan_wall_s": scan["wall_s"],
        "scan_peak_rss_mib": scan["peak_rss_mib"],
        "scan_summary": scan["summary"],
        "ready_s": daemon.ready_s,
        "startup_cpu_s": cpu_ready,
        "reconcile_ms": reconciled.get("duration_ms"),
        "reconcile_unchanged": reconciled.get("unchanged"),
        "reconcile_changed": reconciled.get("changed"),
        "reconcile_removed": reconciled.get("removed"),
        "reconcile_wait_s": t_reconciled - t_ready,
        "reconcile_cpu_s": reconcile_cpu,
        "reconcile_amortised_pct": 100 * reconcile_cpu / 600.0,
        "idle_seconds": t1 - t0,
        "idle_cpu_s": cpu1 - cpu0,
        "idle_cpu_pct": idle_pct,
        "rss_mib": rss_kb / 1024 if rss_kb else None,
        "rss_max_sampled_mib": rss_seen["max_mib"],
        "peak_rss_mib": hwm / 1024 if hwm else None,
        "threads": threads,
        "events_in_window": dict(idle_events),
        "exit_code": code,
        "stop_s": stop_s,
        "load_before_scan": load_scan,
        "load_before": load,
        "load_after": load_average(),
        "profile": profile,
        "latency_at_n": late,
    }
    log(
        f"[idle] reconcile of {n:,} unchanged: {result['reconcile_ms']} ms; idle CPU {idle_pct:.2f} % of a core; "
        f"RSS {result['rss_mib']:.0f} MiB"
    )
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return result


# ======================================================================================
# Command line
# ======================================================================================


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 s per latency mode, burst 1,000, idle 10,000 files for 15 s")
    parser.add_argument("--settle", type=float, default=1.0, help="settle_seconds of every daemon (default 1.0)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the daemon and of scan (default 2)")
    parser.add_argument("--rate", type=float, default=50.0, help="latency: files per second (default 50)")
    parser.add_argument("--duration", type=float, help="latency: seconds per mode (default 60; --quick 10)")
    parser.add_argument("--warmup", type=int, default=10, help="latency: first files left out of the percentiles (default 10)")
    parser.add_argument("--modes", nargs="+", choices=["closed", "renamed"], default=["closed", "renamed"])
    parser.add_argument("--burst", type=int, help="burst: files (default 10,000; --quick 1,000)")
    parser.add_argument("--burst-repeats", type=int, help="burst: repeats, each daemon then scan (default 3; --quick 1)")
    parser.add_argument(
        "--burst-mode", choices=["move", "copy"], default="move", help="burst: os.rename from a staging folder (default) or copy"
    )
    parser.add_argument(
        "--burst-span-days",
        type=float,
        default=28.0,
        help="burst: dates spread over this many days from 2024-01-01 (default 28: one partition)",
    )
    parser.add_argument("--idle-files", type=int, help="idle: cataloged files (default 100,000; --quick 10,000)")
    parser.add_argument("--idle-seconds", type=float, help="idle: measured window (default 60; --quick 15)")
    parser.add_argument(
        "--big-duration",
        type=float,
        help="after the idle window: seconds of the steady-rate latency (closed mode) on top of the idle catalog; 0 skips (default 20; --quick 5)",
    )
    parser.add_argument("--chunk", type=int, default=1000, help="idle: files per sub-folder (default 1,000)")
    parser.add_argument("--skip", nargs="+", choices=["latency", "burst", "idle"], default=[], help="parts to leave out")
    parser.add_argument("--profile", action="store_true", help="py-spy record the daemon during the burst and the idle window")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new one under /tmp)")
    parser.add_argument(
        "--out", type=Path, help=f"JSON results (default {DEFAULT_OUT.relative_to(REPO)}; --quick: {QUICK_OUT.name})"
    )
    parser.add_argument("--no-out", action="store_true", help="do not write JSON results")
    parser.add_argument("--quiet", action="store_true", help="print only the tables")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 10.0 if args.quick else 60.0
    if args.burst is None:
        args.burst = 1000 if args.quick else 10_000
    if args.burst_repeats is None:
        args.burst_repeats = 1 if args.quick else 3
    if args.idle_files is None:
        args.idle_files = 10_000 if args.quick else 100_000
    if args.big_duration is None:
        args.big_duration = 5.0 if args.quick else 20.0
    if args.idle_seconds is None:
        args.idle_seconds = 15.0 if args.quick else 60.0
    if args.out is None:
        args.out = QUICK_OUT if args.quick else DEFAULT_OUT
    args.profile_dir = args.out.parent
    if (
        min(
            args.rate, args.duration, args.burst, args.burst_repeats, args.idle_files, args.idle_seconds, args.chunk, args.workers
        )
        <= 0
    ):
        parser.error("counts, rates and durations must be positive")
    return args


LATENCY_COLUMNS = (
    ("mode", "mode", ""),
    ("files", "files", ","),
    ("achieved_rate_per_s", "files/s", ".1f"),
    ("settle_s", "settle s", ".1f"),
    ("p50_ms", "p50 ms", ".0f"),
    ("p90_ms", "p90 ms", ".0f"),
    ("p99_ms", "p99 ms", ".0f"),
    ("max_ms", "max ms", ".0f"),
    ("target_p99_ms", "target p99", ".0f"),
    ("verdict", "p99 ok", ""),
    ("fs_poll_p99_ms", "fs-poll p99", ".0f"),
    ("items_per_batch", "items/batch", ".1f"),
    ("batch_ms_median", "batch ms", ".0f"),
    ("cpu_pct", "CPU %", ".1f"),
)
BURST_COLUMNS = (
    ("method", "method", ""),
    ("files", "files", ","),
    ("seconds", "seconds", ".2f"),
    ("items_per_s", "items/s", ",.0f"),
    ("ratio", "× scan", ".2f"),
    ("peak_rss_mib", "peak RSS Σ MiB", ".0f"),
    ("peak_pss_mib", "peak PSS Σ MiB", ".0f"),
    ("cpu_s", "CPU s", ".1f"),
    ("batches", "batches", ","),
    ("batch_mean", "items/batch", ".0f"),
    ("busiest", "busiest partition rewrites", ""),
)
IDLE_COLUMNS = (
    ("files", "files", ","),
    ("folders", "folders", ","),
    ("scan_s", "scan s", ".1f"),
    ("ready_s", "start→READY s", ".2f"),
    ("reconcile_ms", "reconcile ms", ",.0f"),
    ("reconcile_cpu_s", "reconcile CPU s", ".2f"),
    ("idle_seconds", "window s", ".0f"),
    ("idle_cpu_pct", "idle CPU %", ".2f"),
    ("rss_mib", "RSS MiB", ".0f"),
    ("peak_rss_mib", "peak RSS MiB", ".0f"),
)


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    lat = [r | {"mode": f"{r['mode']} @0"} for r in results.get("latency") or []]
    late = (results.get("idle") or {}).get("latency_at_n")
    if late:
        lat.append(late | {"mode": f"{late['mode']} @{late['catalog_items_before']:,}"})
    if lat:
        rows = [r | {"verdict": "yes" if r["meets_target"] else "NO"} for r in lat]
        out += [
            "Latency close → Item JSON on disk (item_added timestamp − own close/rename time)",
            _common.format_table(rows, LATENCY_COLUMNS),
            "",
        ]
    burst = results.get("burst")
    if burst:
        rows = []
        for run in burst["runs"]:
            rows += [
                {
                    "method": f"daemon drain #{run['repeat']}",
                    "files": run["files"],
                    "seconds": run["drain_s"],
                    "items_per_s": run["daemon_items_per_s"],
                    "ratio": run["ratio_to_scan"],
                    "peak_rss_mib": run["peak_rss_sum_mib"],
                    "peak_pss_mib": run["peak_pss_sum_mib"],
                    "cpu_s": run["daemon_cpu_s"],
                    "batches": run["batches"],
                    "batch_mean": run["ops_per_batch_mean"],
                    "busiest": f"{run['busiest_partition_rewrites']} ({run['busiest_partition']})",
                },
                {
                    "method": f"stacwatchd scan #{run['repeat']}",
                    "files": run["files"],
                    "seconds": run["scan_s"],
                    "items_per_s": run["scan_items_per_s"],
                    "ratio": 1.0,
                    "peak_rss_mib": run["scan_peak_rss_sum_mib"],
                    "peak_pss_mib": run["scan_peak_pss_sum_mib"],
                    "cpu_s": run["scan_cpu_s"],
                },
            ]
        out += [
            f"Burst of {burst['files']:,} files ({burst['mode']} into the watched folder), {burst['repeats']}×",
            _common.format_table(rows, BURST_COLUMNS),
            "",
        ]
    idle = results.get("idle")
    if idle:
        out += ["Idle with a cataloged tree", _common.format_table([idle], IDLE_COLUMNS), ""]
    for line in results.get("verdicts", []):
        out.append(line)
    for note in results.get("notes", []):
        out.append(f"note: {note}")
    return "\n".join(out)


def verdicts(results: dict[str, Any]) -> list[str]:
    lines = []
    late = (results.get("idle") or {}).get("latency_at_n")
    for r in [*(results.get("latency") or []), *([late] if late else [])]:
        ok = "meets" if r["meets_target"] else "MISSES"
        lines.append(
            f"latency {r['mode']} on a catalog of {r['catalog_items_before']:,}: p99 {r['p99_ms']:.0f} ms vs ≤ {r['target_p99_ms']:.0f} ms (settle {r['settle_s']:g} s + 250) — {ok}"
        )
    b = results.get("burst")
    if b:
        ratios = ", ".join(f"{r:.2f}" for r in b["ratio_to_scan_all"])
        peaks = ", ".join(f"{r:.0f}" for r in b["peak_rss_mib_all"])
        pss = ", ".join(f"{r:.0f}" for r in b["peak_pss_mib_all"])
        lines.append(
            f"burst: daemon throughput {b['ratio_to_scan_median']:.2f}× scan's (median of {b['repeats']}: {ratios}) vs ≥ {TARGET_BURST_RATIO} — "
            + ("meets" if b["meets_ratio_target"] else "MISSES")
        )
        lines.append(
            f"burst: peak RSS summed over the daemon's processes {b['peak_rss_mib_max']:.0f} MiB (worst of {peaks}) vs ≤ "
            f"{TARGET_BURST_RSS_MB:.0f} MB — " + ("meets" if b["meets_rss_target"] else "MISSES")
        )
        lines.append(
            f"burst: peak PSS summed (shared pages split, not counted per process) {b['peak_pss_mib_max']:.0f} MiB "
            f"(worst of {pss}) vs ≤ {TARGET_BURST_RSS_MB:.0f} MB — " + ("meets" if b["meets_pss_target"] else "MISSES")
        )
        first = b["runs"][0]
        lines.append(
            f"burst: busiest partition {b['busiest_partition']}/catalog.json rewritten {b['busiest_partition_rewrites_all']}× "
            f"(inotify; batches holding its Items in run 1: {first['partition_batches_log'].get(first['busiest_partition'], 0)}) for {b['files']:,} files"
        )
    i = results.get("idle")
    if i:
        lines.append(
            f"idle: {i['idle_cpu_pct']:.2f} % of one core over {i['idle_seconds']:.0f} s with {i['files']:,} files "
            f"(+ {i['reconcile_amortised_pct']:.2f} % amortised periodic reconcile); start-up reconcile {i['reconcile_ms']:,.0f} ms"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the tables, write JSON; returns the results dict."""
    args = parse_args(argv)
    log: Log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    from stacwatchd.testing import many_cogs

    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="stacwatchd-bench-daemon-")) if own_workdir else args.workdir
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    load_start = load_average()
    log(f"scratch folder {workdir}; load average {load_start} on {os.cpu_count()} CPUs")
    notes = [
        "latency: the Item JSON is on disk when item_added is logged (the writer logs after renaming the batch's files); fs-poll checks every 10th file independently",
        "scan seconds are scan's own figure (imports excluded), like the daemon's drain (started and idle before the burst)",
        f"load average at start {load_start} on {os.cpu_count()} CPUs; per part in the JSON",
    ]
    code_start = code_version()
    results: dict[str, Any] = {
        "benchmark": "daemon",
        "schema": 1,
        "environment": _common.environment(PACKAGES),
        "code": code_start,
    }
    t_all = time.monotonic()
    try:
        if "latency" not in args.skip:
            n = max(1, round(args.rate * args.duration))
            staging = workdir / "latency-src"
            paths = sorted(many_cogs(staging, n, start=START, span=timedelta(days=28), prefix="lat"))
            blobs = [(p.name, p.read_bytes()) for p in paths]
            shutil.rmtree(staging)
            results["latency"] = [measure_latency(mode, blobs, args, workdir, log) for mode in args.modes]
        if "burst" not in args.skip:
            results["burst"] = measure_burst(args, workdir, log)
        if "idle" not in args.skip:
            results["idle"] = measure_idle(args, workdir, log)
    finally:
        if own_workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            log(f"kept {workdir}")
    results["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("quiet",)}
    results["targets"] = {
        "latency_p99_ms": f"settle*1000 + {TARGET_LATENCY_MARGIN_MS:g}",
        "burst_ratio_to_scan": TARGET_BURST_RATIO,
        "burst_peak_rss_sum_mb": TARGET_BURST_RSS_MB,
        "latency_idle_peak_rss_mib": TARGET_RSS_MIB,
    }
    results["load_start"] = load_start
    results["load_end"] = load_average()
    results["total_s"] = time.monotonic() - t_all
    results["verdicts"] = verdicts(results)
    bursts = (results.get("burst") or {}).get("runs") or []
    missed = sorted({m for run in bursts for m in run["inotify_missed"]})
    if missed:
        notes.append(f"burst: catalogs written before our inotify watch was in place (counted once): {missed}")
    versions = {code_start["sources_sha256"]}
    for part in [*(results.get("latency") or []), *bursts, results.get("idle") or {}]:
        versions |= {v["sources_sha256"] for v in (part.get("code"), part.get("scan_code")) if v}
    versions.add(code_version()["sources_sha256"])
    if len(versions) > 1:
        notes.append(
            f"stacwatchd's sources CHANGED during the run ({len(versions)} versions); each part's 'code' in the JSON says which it ran"
        )
    results["notes"] = notes
    print(render(results))
    bursts = (results.get("burst") or {}).get("runs") or []
    profiles = [
        *((f"burst {run['repeat']}", run.get("profile")) for run in bursts),
        ("the idle window", (results.get("idle") or {}).get("profile")),
        ("the steady rate on the idle catalog", ((results.get("idle") or {}).get("latency_at_n") or {}).get("profile")),
    ]
    for part, prof in profiles:
        if not prof or "self" not in prof:
            continue
        print(f"\npy-spy, daemon during {part} ({prof['samples']} samples, {prof['file']})")
        print("  samples by thread role: " + ", ".join(f"{r} {p} %" for r, (_, p) in prof["roles"].items()))
        for role, frames in prof["self_by_role"].items():
            print(f"  {role}, top self time (% of that role's samples):")
            for frame, _, pct in frames[:8]:
                print(f"    {pct:5.1f} %  {frame}")
        print("  all threads, inclusive:")
        for frame, _, pct in prof["inclusive"][:15]:
            print(f"    {pct:5.1f} %  {frame}")
    if not args.no_out:
        path = _common.write_json(args.out, results)
        print(f"results: {path}")
    return results


if __name__ == "__main__":
    main()
