"""A real etcd beside the model: start one privately, talk to it, measure what it wrote.

The model in :mod:`kscale_lab.etcd.freelist` counts what bbolt does; this module lets a
lab put the same question to the real thing on the same machine. :class:`RealEtcd`
starts a private single-member ``etcd`` on 127.0.0.1 with ports it picks itself and a
temporary data directory (mode 0700), waits until it answers, and on exit stops
**that process only** (SIGTERM to its PID, then SIGKILL) and deletes the directory.
It never touches another etcd.

:class:`EtcdClient` speaks etcd's gRPC-JSON gateway (``/v3/kv/put``, ``/v3/kv/range``,
``/v3/maintenance/status`` ...) with the standard library over one keep-alive HTTP
connection. Keys and values travel base64-encoded and 64-bit integers come back as JSON
strings; students see the real wire format (``data/etcd_real`` appendix). A put
rejected because the database reached ``--quota-backend-bytes`` (HTTP 429, gRPC code 8,
"mvcc: database space exceeded") raises :class:`EtcdNoSpace`.

Measurements, and their traps (``data/etcd_real`` section 1):

* **WAL bytes** come from walking the WAL frames (:func:`wal_bytes`): every record is an
  8-byte little-endian length word (low 56 bits: length; top bit set: bits 56-58 give
  the padding to 8 bytes) followed by the record and its padding; a zero word ends the
  data of a preallocated 64 MB segment. Not ``du`` (moves in 64 MB steps) and not the
  ``etcd_disk_wal_write_bytes_total`` metric, which etcd 3.4 counts twice (fixed
  upstream by etcd-io/etcd PR #14506).
* **etcd CPU** from ``/proc/PID/stat`` (utime + stime over ``SC_CLK_TCK``); via the
  gateway it includes the JSON/base64 conversion done inside etcd (about 2x gRPC).
* **disk write bytes** from ``/proc/PID/io`` ``write_bytes`` (WAL plus bbolt pages).

:func:`run_heartbeats` replays kubelet heartbeats (article section 2; KEP-589) against
the real etcd as fast as it accepts them, not in real time: scenario ``node`` writes a
~15 KB Node object every 10 s per node, ``lease`` a ~350 B Lease every 10 s plus the Node
every 60 s, ``lease300`` the Node every 300 s.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import KscaleError, ParameterError
from ..params import Param, ParamSet

__all__ = [
    "EtcdError",
    "EtcdNoSpace",
    "EtcdStartError",
    "etcd_available",
    "etcd_version",
    "freelist_type_flag",
    "RealEtcd",
    "EtcdClient",
    "KeyValue",
    "RangeResult",
    "EtcdStatus",
    "EtcdSample",
    "wal_bytes",
    "walk_wal",
    "proc_cpu_seconds",
    "proc_write_bytes",
    "parse_prometheus_text",
    "HEARTBEAT_SCENARIOS",
    "HeartbeatResult",
    "node_object_json",
    "lease_object_json",
    "run_heartbeats",
    "PARAMS",
]


class EtcdError(KscaleError):
    """etcd answered a request with an error."""

    def __init__(self, status: int, code: int | None, message: str, path: str = ""):
        self.status, self.code, self.message, self.path = status, code, message, path
        super().__init__(f"etcd {path} failed: HTTP {status}, code {code}: {message}")


class EtcdNoSpace(EtcdError):
    """The database reached ``--quota-backend-bytes``: NOSPACE alarm, writes refused.

    Recover with compact + defragment + alarm disarm (see :meth:`EtcdClient.disarm`).
    """


class EtcdStartError(KscaleError):
    """etcd did not start or did not become ready in time; the message has its log tail."""


# --------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------
PARAMS = ParamSet(
    [
        Param(
            "node_object_bytes", 15_100, "B",
            "docs/article.md section 2 (~15 KB Node object); data/etcd_real section 3 "
            "built it as 15.1 KB (90.5 MB / 6,000 puts)",
            "size of the Node JSON a kubelet writes with its status", lo=1_000, hi=1_000_000, kind=int,
        ),
        Param(
            "node_status_update_frequency", 10.0, "s",
            "kubelet --node-status-update-frequency default 10s (docs/upstream.md section 2)",
            "how often a kubelet writes its Node status (scenario node)", lo=0.1, hi=3600.0,
            flag="--node-status-update-frequency",
        ),
        Param(
            "lease_renew_interval", 10.0, "s",
            "KEP-589: the kubelet renews its Lease every 10 s (a quarter of the 40 s lease duration)",
            "how often a kubelet renews its node Lease (scenarios lease, lease300)", lo=0.1, hi=3600.0,
        ),
        Param(
            "node_status_report_frequency_lease", 60.0, "s",
            "docs/article.md section 2: with Leases the Node is written every 60 s (kubelet 1.13-1.16)",
            "Node status write period in scenario lease", lo=1.0, hi=86_400.0,
        ),
        Param(
            "node_status_report_frequency_lease300", 300.0, "s",
            "kubelet >= 1.17 --node-status-report-frequency default 5m (data/etcd_real section 3, B300)",
            "Node status write period in scenario lease300", lo=1.0, hi=86_400.0,
            flag="--node-status-report-frequency",
        ),
        Param(
            "ready_timeout", 30.0, "s",
            "assumption: etcd is ready in ~1 s on an empty dir, 17 s with a 3.8 GB WAL to replay "
            "(data/etcd_real section 1)",
            "how long RealEtcd waits for a new etcd to answer", lo=1.0, hi=600.0,
        ),
    ]
)

_KEY_NODE = "/registry/minions/"
_KEY_LEASE = "/registry/leases/kube-node-lease/"


# --------------------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------------------
def etcd_available() -> bool:
    """True if an ``etcd`` binary is on PATH."""
    return shutil.which("etcd") is not None


def etcd_version(binary: str = "etcd") -> tuple[int, int, int]:
    """``etcd --version`` as (major, minor, patch)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"etcd Version:\s*(\d+)\.(\d+)\.(\d+)", out)
    if not m:
        raise EtcdStartError(f"cannot read the version from `{binary} --version`: {out.strip()[:200]!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def freelist_type_flag(version: tuple[int, int, int]) -> str:
    """The bbolt freelist flag: experimental in 3.4, ``--backend-bbolt-freelist-type`` from 3.5."""
    return "--experimental-backend-bbolt-freelist-type" if version < (3, 5, 0) else "--backend-bbolt-freelist-type"


def _progress_notify_flag(version: tuple[int, int, int]) -> str:
    # 3.4 and 3.5 carry only the experimental name; 3.6 renamed it (not verified here)
    return (
        "--experimental-watch-progress-notify-interval" if version < (3, 6, 0) else "--watch-progress-notify-interval"
    )


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _cleanup(proc: subprocess.Popen, tmpdir: str, logfh) -> None:
    """Stop ``proc`` by its PID (SIGTERM, wait, SIGKILL) and delete ``tmpdir``."""
    try:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    finally:
        try:
            logfh.close()
        except Exception:
            pass
        shutil.rmtree(tmpdir, ignore_errors=True)


# --------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------
class RealEtcd:
    """A private etcd on 127.0.0.1; use as a context manager.

    >>> with RealEtcd(quota_backend_bytes=16 * 2**20) as etcd:   # doctest: +SKIP
    ...     c = etcd.client()
    ...     c.put("/k", "v"); c.status().revision

    Options map to etcd flags: ``quota_backend_bytes`` (``--quota-backend-bytes``),
    ``freelist_type`` "array" | "map" (``--experimental-backend-bbolt-freelist-type`` on
    3.4, ``--backend-bbolt-freelist-type`` on 3.5+), ``auto_compaction_mode`` and
    ``auto_compaction_retention``, ``progress_notify_interval`` (e.g. "2s"),
    ``snapshot_count``, and ``extra_args`` passed as given. ``data_dir_from``: start from a
    copy of a saved data directory (:meth:`save_data_dir`) instead of an empty one.
    """

    def __init__(
        self,
        *,
        quota_backend_bytes: int | None = None,
        freelist_type: str | None = None,
        auto_compaction_mode: str | None = None,
        auto_compaction_retention: str | None = None,
        progress_notify_interval: str | None = None,
        snapshot_count: int | None = None,
        extra_args: Iterable[str] = (),
        binary: str = "etcd",
        name: str = "kscale",
        ready_timeout: float | None = None,
        tmp_root: str | None = None,
        data_dir_from: str | os.PathLike | None = None,
    ):
        if quota_backend_bytes is not None and (
            not isinstance(quota_backend_bytes, int) or quota_backend_bytes < 0
        ):
            raise ParameterError("quota_backend_bytes", f"must be an integer >= 0 bytes; got {quota_backend_bytes!r}")
        if freelist_type is not None and freelist_type not in ("array", "map"):
            raise ParameterError("freelist_type", f"must be one of 'array', 'map'; got {freelist_type!r}")
        if auto_compaction_mode is not None and auto_compaction_mode not in ("periodic", "revision"):
            raise ParameterError(
                "auto_compaction_mode", f"must be one of 'periodic', 'revision'; got {auto_compaction_mode!r}"
            )
        if snapshot_count is not None and (not isinstance(snapshot_count, int) or snapshot_count < 1):
            raise ParameterError("snapshot_count", f"must be an integer >= 1; got {snapshot_count!r}")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", name):
            raise ParameterError("name", f"must be 1-40 letters, digits, '-' or '_'; got {name!r}")
        self.quota_backend_bytes = quota_backend_bytes
        self.freelist_type = freelist_type
        self.auto_compaction_mode = auto_compaction_mode
        self.auto_compaction_retention = auto_compaction_retention
        self.progress_notify_interval = progress_notify_interval
        self.snapshot_count = snapshot_count
        self.extra_args = list(extra_args)
        self.binary = binary
        self.name = name
        self.ready_timeout = PARAMS["ready_timeout"].validate(
            PARAMS["ready_timeout"].default if ready_timeout is None else ready_timeout
        )
        self.tmp_root = tmp_root
        if data_dir_from is not None and not (Path(data_dir_from) / "member").is_dir():
            raise ParameterError("data_dir_from", f"must be an etcd data directory (with member/); got {data_dir_from!r}")
        self.data_dir_from = data_dir_from
        self.proc: subprocess.Popen | None = None
        self.tmpdir: str | None = None
        self.version: tuple[int, int, int] | None = None
        self.client_port = self.peer_port = self.metrics_port = 0
        self._finalizer = None
        self._client: EtcdClient | None = None

    # ---- lifecycle --------------------------------------------------------------------
    def __enter__(self) -> "RealEtcd":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def command(self) -> list[str]:
        """The etcd command line this instance runs (after :meth:`start` picked ports)."""
        assert self.version is not None and self.tmpdir is not None
        c = f"http://127.0.0.1:{self.client_port}"
        p = f"http://127.0.0.1:{self.peer_port}"
        m = f"http://127.0.0.1:{self.metrics_port}"
        cmd = [
            self.binary, "--name", self.name, "--data-dir", str(self.data_dir),
            "--listen-client-urls", c, "--advertise-client-urls", c,
            "--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
            "--initial-cluster", f"{self.name}={p}", "--initial-cluster-state", "new",
            "--listen-metrics-urls", m, "--logger", "zap",
        ]
        if self.quota_backend_bytes is not None:
            cmd += ["--quota-backend-bytes", str(self.quota_backend_bytes)]
        if self.freelist_type is not None:
            cmd += [freelist_type_flag(self.version), self.freelist_type]
        if self.auto_compaction_mode is not None:
            cmd += ["--auto-compaction-mode", self.auto_compaction_mode]
        if self.auto_compaction_retention is not None:
            cmd += ["--auto-compaction-retention", str(self.auto_compaction_retention)]
        if self.progress_notify_interval is not None:
            cmd += [_progress_notify_flag(self.version), str(self.progress_notify_interval)]
        if self.snapshot_count is not None:
            cmd += ["--snapshot-count", str(self.snapshot_count)]
        return cmd + self.extra_args

    def start(self) -> None:
        if self.proc is not None:
            raise EtcdStartError("this RealEtcd is already running")
        if shutil.which(self.binary) is None:
            raise EtcdStartError(f"{self.binary!r} not found on PATH (apt-get install etcd-server)")
        self.version = etcd_version(self.binary)
        last_err = ""
        for _attempt in range(3):  # a picked port can be taken before etcd binds it
            self.tmpdir = tempfile.mkdtemp(prefix="kscale-etcd-", dir=self.tmp_root)
            os.chmod(self.tmpdir, 0o700)
            if self.data_dir_from is not None:  # start from a copy of a saved db (see save_data_dir)
                shutil.copytree(self.data_dir_from, self.data_dir)
            else:
                self.data_dir.mkdir(mode=0o700)
            os.chmod(self.data_dir, 0o700)  # etcd warns unless the data dir is 0700
            self.client_port, self.peer_port, self.metrics_port = _free_ports(3)
            logfh = open(self.log_path, "wb")
            self.proc = subprocess.Popen(
                self.command(), stdout=logfh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            self._finalizer = weakref.finalize(self, _cleanup, self.proc, self.tmpdir, logfh)
            try:
                self._wait_ready()
                return
            except EtcdStartError as e:
                last_err = str(e)
                self.stop()
                if "address already in use" not in last_err:
                    raise
        raise EtcdStartError(last_err)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        probe = EtcdClient("127.0.0.1", self.client_port, timeout=2.0)
        try:
            while True:
                if self.proc.poll() is not None:
                    raise EtcdStartError(
                        f"etcd exited with status {self.proc.returncode} during start-up; log tail:\n{self.log_tail()}"
                    )
                try:
                    probe.status()
                    return
                except (OSError, http.client.HTTPException, EtcdError):
                    pass
                if time.monotonic() > deadline:
                    raise EtcdStartError(
                        f"etcd (pid {self.proc.pid}) not ready after {self.ready_timeout:g} s; "
                        f"log tail:\n{self.log_tail()}"
                    )
                time.sleep(0.05)
        finally:
            probe.close()

    def stop(self) -> None:
        """Stop this etcd by its PID and delete its data directory (idempotent)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._finalizer is not None:
            self._finalizer()  # runs _cleanup once
            self._finalizer = None
        self.proc = None

    def save_data_dir(self, dest: str | os.PathLike) -> Path:
        """Stop this etcd (SIGTERM to its PID) and copy its data directory to ``dest``, for a
        later ``RealEtcd(data_dir_from=dest)``; the temporary directory goes as in :meth:`stop`."""
        if self.proc is None:
            raise EtcdStartError("etcd is not running")
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)
        shutil.copytree(self.data_dir, dest)
        self.stop()
        return Path(dest)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ---- where things are -------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self.proc is None:
            raise EtcdStartError("etcd is not running")
        return self.proc.pid

    @property
    def data_dir(self) -> Path:
        return Path(self.tmpdir) / "data"

    @property
    def wal_dir(self) -> Path:
        return self.data_dir / "member" / "wal"

    @property
    def log_path(self) -> Path:
        return Path(self.tmpdir) / "etcd.log"

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log_tail(self, n: int = 20) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def client(self, timeout: float = 30.0) -> "EtcdClient":
        """A new client (one keep-alive connection; not shared between threads)."""
        return EtcdClient("127.0.0.1", self.client_port, timeout=timeout)

    @property
    def c(self) -> "EtcdClient":
        """A shared client for one-thread use in notebooks."""
        if self._client is None:
            self._client = self.client()
        return self._client

    # ---- measurements -----------------------------------------------------------------
    def wal_bytes(self) -> int:
        return wal_bytes(self.wal_dir)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def write_bytes(self) -> int:
        return proc_write_bytes(self.pid)

    def metrics(self, names: Iterable[str] | None = None) -> dict[str, float]:
        """Prometheus metrics from the metrics port, summed over label sets."""
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        return parse_prometheus_text(text, names)

    def sample(self) -> "EtcdSample":
        st = self.c.status()
        m = self.metrics(_SAMPLE_METRICS)
        return EtcdSample(
            t=time.monotonic(),
            wal_bytes=self.wal_bytes(),
            db_size=st.db_size,
            db_size_in_use=st.db_size_in_use,
            revision=st.revision,
            cpu_seconds=self.cpu_seconds(),
            write_bytes=self.write_bytes(),
            backend_commits=int(m.get("etcd_disk_backend_commit_duration_seconds_count", 0)),
            wal_fsyncs=int(m.get("etcd_disk_wal_fsync_duration_seconds_count", 0)),
            wal_write_bytes_metric=m.get("etcd_disk_wal_write_bytes_total", float("nan")),
        )


_SAMPLE_METRICS = (
    "etcd_disk_backend_commit_duration_seconds_count",
    "etcd_disk_wal_fsync_duration_seconds_count",
    "etcd_disk_wal_write_bytes_total",
)


@dataclass(frozen=True)
class EtcdSample:
    """One measurement of a running etcd; subtract two to get a run's deltas."""

    t: float
    wal_bytes: int
    db_size: int
    db_size_in_use: int
    revision: int
    cpu_seconds: float
    write_bytes: int
    backend_commits: int
    wal_fsyncs: int
    wal_write_bytes_metric: float  #: etcd_disk_wal_write_bytes_total: 2x the real bytes on 3.4

    def __sub__(self, other: "EtcdSample") -> dict:
        return {k: v - getattr(other, k) for k, v in asdict(self).items()}


# --------------------------------------------------------------------------------------
# the JSON-gateway client
# --------------------------------------------------------------------------------------
def _b(x: bytes | str) -> bytes:
    return x.encode() if isinstance(x, str) else bytes(x)


def _b64(x: bytes | str) -> str:
    return base64.b64encode(_b(x)).decode("ascii")


def _unb64(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def prefix_range_end(prefix: bytes | str) -> bytes:
    """etcd's range end for a prefix: the prefix with its last byte incremented."""
    p = bytearray(_b(prefix))
    for i in range(len(p) - 1, -1, -1):
        if p[i] < 0xFF:
            p[i] += 1
            return bytes(p[: i + 1])
    return b"\0"  # all 0xff (or empty): to the end of the key space


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True)
class RangeResult:
    kvs: list[KeyValue]
    count: int
    revision: int
    more: bool = False


@dataclass(frozen=True)
class EtcdStatus:
    db_size: int
    db_size_in_use: int
    revision: int
    raft_index: int
    raft_term: int
    leader: int
    member_id: int
    version: str
    errors: tuple[str, ...] = ()


def _int(d: Mapping, k: str) -> int:
    return int(d.get(k, 0) or 0)


class EtcdClient:
    """etcd v3 over the gRPC-JSON gateway, with one keep-alive ``http.client`` connection.

    Not thread-safe: give each thread its own client (:meth:`RealEtcd.client`).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 2379, timeout: float = 30.0, prefix: str = "/v3"):
        self.host, self.port, self.timeout, self.prefix = host, port, timeout, prefix
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "EtcdClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                self._conn.request(method, path, body=body, headers=headers)
                r = self._conn.getresponse()
                return r.status, r.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()  # a stale keep-alive connection: reconnect once
                if attempt:
                    raise
            except BaseException:
                self.close()  # never reuse a connection left half-way through a request
                raise
        raise AssertionError("unreachable")

    def call(self, endpoint: str, payload: Mapping[str, Any] | None = None) -> dict:
        """POST ``payload`` (JSON) to ``/v3/<endpoint>``; the decoded answer, or an exception."""
        path = f"{self.prefix}/{endpoint}"
        status, data = self._request("POST", path, json.dumps(payload or {}).encode())
        try:
            doc = json.loads(data) if data else {}
        except ValueError:
            doc = {"error": data[:200].decode(errors="replace")}
        if status != 200 or (isinstance(doc, dict) and "error" in doc and "code" in doc):
            msg = str(doc.get("error") or doc.get("message") or data[:200])
            code = doc.get("code")
            if code == 8 or status == 429 or "database space exceeded" in msg:
                raise EtcdNoSpace(status, code, msg, path)
            raise EtcdError(status, code, msg, path)
        return doc

    # ---- KV ---------------------------------------------------------------------------
    def put(self, key: bytes | str, value: bytes | str, *, lease: int = 0, prev_kv: bool = False) -> int:
        """Write ``key`` = ``value``; returns the new store revision."""
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        if prev_kv:
            body["prev_kv"] = True
        return _int(self.call("kv/put", body).get("header", {}), "revision")

    def range(
        self,
        key: bytes | str,
        range_end: bytes | str | None = None,
        *,
        prefix: bool = False,
        count_only: bool = False,
        keys_only: bool = False,
        limit: int = 0,
        revision: int = 0,
        serializable: bool = False,
    ) -> RangeResult:
        """etcd Range: one key, ``[key, range_end)``, or every key with prefix ``key``."""
        body: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            range_end = prefix_range_end(key)
        if range_end is not None:
            body["range_end"] = _b64(range_end)
        for flag, on in (("count_only", count_only), ("keys_only", keys_only), ("serializable", serializable)):
            if on:
                body[flag] = True
        if limit:
            body["limit"] = str(limit)
        if revision:
            body["revision"] = str(revision)
        doc = self.call("kv/range", body)
        kvs = [
            KeyValue(
                key=_unb64(kv.get("key")),
                value=_unb64(kv.get("value")),
                create_revision=_int(kv, "create_revision"),
                mod_revision=_int(kv, "mod_revision"),
                version=_int(kv, "version"),
                lease=_int(kv, "lease"),
            )
            for kv in doc.get("kvs", [])
        ]
        return RangeResult(kvs, _int(doc, "count"), _int(doc.get("header", {}), "revision"), bool(doc.get("more")))

    def get(self, key: bytes | str) -> bytes | None:
        r = self.range(key)
        return r.kvs[0].value if r.kvs else None

    def delete_range(self, key: bytes | str, range_end: bytes | str | None = None, *, prefix: bool = False) -> int:
        """Delete a key, a range or a prefix; returns the number of keys deleted."""
        body: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            range_end = prefix_range_end(key)
        if range_end is not None:
            body["range_end"] = _b64(range_end)
        return _int(self.call("kv/deleterange", body), "deleted")

    def txn(self, compare: Iterable[Mapping] = (), success: Iterable[Mapping] = (), failure: Iterable[Mapping] = ()) -> dict:
        """A raw etcd transaction (gateway JSON: keys already base64). Returns the answer."""
        return self.call("kv/txn", {"compare": list(compare), "success": list(success), "failure": list(failure)})

    def put_if_mod_revision(self, key: bytes | str, value: bytes | str, mod_revision: int) -> tuple[bool, int]:
        """The apiserver's optimistic update: put only if the key's mod_revision is unchanged.

        ``mod_revision=0`` means "only if the key does not exist". Returns (succeeded, revision).
        """
        k = _b64(key)
        doc = self.txn(
            compare=[{"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)}],
            success=[{"request_put": {"key": k, "value": _b64(value)}}],
            failure=[{"request_range": {"key": k}}],
        )
        return bool(doc.get("succeeded")), _int(doc.get("header", {}), "revision")

    def compact(self, revision: int, physical: bool = True) -> None:
        """Discard history before ``revision`` (``physical``: wait until bbolt has freed it)."""
        self.call("kv/compaction", {"revision": str(int(revision)), "physical": bool(physical)})

    # ---- lease, maintenance -----------------------------------------------------------
    def lease_grant(self, ttl: int) -> int:
        """Grant a lease of ``ttl`` seconds; returns its id."""
        return int(self.call("lease/grant", {"TTL": str(int(ttl))})["ID"])

    def status(self) -> EtcdStatus:
        d = self.call("maintenance/status", {})
        return EtcdStatus(
            db_size=_int(d, "dbSize"),
            db_size_in_use=_int(d, "dbSizeInUse"),
            revision=_int(d.get("header", {}), "revision"),
            raft_index=_int(d, "raftIndex"),
            raft_term=_int(d, "raftTerm"),
            leader=_int(d, "leader"),
            member_id=_int(d.get("header", {}), "member_id"),
            version=str(d.get("version", "")),
            errors=tuple(d.get("errors", ()) or ()),
        )

    def defragment(self) -> None:
        """Rewrite the bbolt file without its free pages (blocks the member meanwhile)."""
        self.call("maintenance/defragment", {})

    def alarms(self) -> list[dict]:
        """Active alarms: ``[{"member_id": int, "alarm": "NOSPACE" | "CORRUPT"}]``."""
        d = self.call("maintenance/alarm", {"action": "GET"})
        return [
            {"member_id": _int(a, "memberID"), "alarm": str(a.get("alarm", "NONE"))}
            for a in d.get("alarms", []) or []
        ]

    def disarm(self, alarm: str = "NOSPACE") -> int:
        """Deactivate every active ``alarm``; returns how many were disarmed."""
        n = 0
        for a in self.alarms():
            if a["alarm"] == alarm:
                self.call("maintenance/alarm", {"action": "DEACTIVATE", "memberID": str(a["member_id"]), "alarm": alarm})
                n += 1
        return n

    def metrics_text(self) -> str:
        status, data = self._request("GET", "/metrics", None)
        if status != 200:
            raise EtcdError(status, None, data[:200].decode(errors="replace"), "/metrics")
        return data.decode()


# --------------------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WalStats:
    bytes: int  #: frame headers + records + padding actually written
    records: int
    files: int


_LEN_MASK = (1 << 56) - 1


def walk_wal(wal_dir: str | os.PathLike) -> WalStats:
    """Walk every ``*.wal`` segment (``*.tmp`` skipped) frame by frame.

    A frame is an 8-byte little-endian word (low 56 bits: record length; top bit set:
    bits 56-58 give the padding), the record, and the padding. A zero word, or a frame
    that would run past the end of the file, ends a segment's data (segments are
    preallocated to 64 MB and filled with zeros).
    """
    total = records = files = 0
    d = Path(wal_dir)
    if not d.is_dir():
        return WalStats(0, 0, 0)
    for path in sorted(d.glob("*.wal")):
        files += 1
        size = path.stat().st_size
        with open(path, "rb") as f:
            pos = 0
            while pos + 8 <= size:
                word = int.from_bytes(f.read(8), "little")
                if word == 0:
                    break
                length = word & _LEN_MASK
                pad = (word >> 56) & 0x7 if word >> 63 else 0
                end = pos + 8 + length + pad
                if end > size:
                    break
                total += 8 + length + pad
                records += 1
                pos = end
                f.seek(pos)
    return WalStats(total, records, files)


def wal_bytes(wal_dir: str | os.PathLike) -> int:
    """Real bytes of WAL frames under ``wal_dir`` (see :func:`walk_wal`)."""
    return walk_wal(wal_dir).bytes


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (``/proc/PID/stat`` fields 14 and 15)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    rest = text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on
    utime, stime = int(rest[11]), int(rest[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def proc_write_bytes(pid: int) -> int:
    """Bytes process ``pid`` caused to be written to storage (``/proc/PID/io`` write_bytes)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise EtcdError(0, None, f"no write_bytes in /proc/{pid}/io", "/proc")


_PROM_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_prometheus_text(text: str, names: Iterable[str] | None = None) -> dict[str, float]:
    """Prometheus text format -> ``{metric name: value summed over its label sets}``.

    Histogram parts keep their own names (``..._sum``, ``..._count``, ``..._bucket``).
    With ``names``, only those metrics are returned.
    """
    want = set(names) if names is not None else None
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _PROM_LINE.match(line)
        if not m:
            continue
        name = m.group(1)
        if want is not None and name not in want:
            continue
        try:
            v = float(m.group(3))
        except ValueError:
            continue
        out[name] = out.get(name, 0.0) + v
    return out


# --------------------------------------------------------------------------------------
# kubelet heartbeats against the real etcd
# --------------------------------------------------------------------------------------
#: scenario -> (period of Node writes, period of Lease writes or None), seconds
HEARTBEAT_SCENARIOS = {
    "node": ("node_status_update_frequency", None),
    "lease": ("node_status_report_frequency_lease", "lease_renew_interval"),
    "lease300": ("node_status_report_frequency_lease300", "lease_renew_interval"),
}

_EPOCH = 1560816000  # 2019-06-18T00:00:00Z, the 618 festival
_TS = "@@TIMESTAMP@@@@@@@@@"  # 20 characters, the length of 2019-06-18T00:00:00Z


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_EPOCH + int(t)))


def _hex(rng: np.random.Generator, n: int) -> str:
    return rng.bytes((n + 1) // 2).hex()[:n]


def _images_json(rng: np.random.Generator, target_bytes: int) -> str:
    """A Node's status.images list of about ``target_bytes``, like a busy real node."""
    teams = ["infra", "search", "trade", "payments", "ads", "risk", "logistics", "ml"]
    items = []
    size = 2
    while size < target_bytes:
        team = teams[int(rng.integers(len(teams)))]
        app = f"{team}-{_hex(rng, 6)}"
        tag = f"v{int(rng.integers(1, 9))}.{int(rng.integers(0, 40))}.{int(rng.integers(0, 200))}"
        repo = f"registry.cn-hangzhou.aliyuncs.com/{team}/{app}"
        item = json.dumps(
            {"names": [f"{repo}@sha256:{_hex(rng, 64)}", f"{repo}:{tag}"], "sizeBytes": int(rng.integers(5e6, 2e9))},
            separators=(",", ":"),
        )
        items.append(item)
        size += len(item) + 1
    return "[" + ",".join(items) + "]"


def _node_head_tail(name: str, rng: np.random.Generator) -> tuple[str, str]:
    """The Node JSON around its images list; every heartbeat timestamp is the _TS token."""
    uid = f"{_hex(rng, 8)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 12)}"
    zone = f"cn-hangzhou-{'abcdefgh'[int(rng.integers(8))]}"
    ip = f"10.{int(rng.integers(0, 256))}.{int(rng.integers(0, 256))}.{int(rng.integers(1, 255))}"
    conds = []
    for ctype, status, reason, msg in (
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ):
        conds.append(
            {"type": ctype, "status": status, "lastHeartbeatTime": _TS, "lastTransitionTime": "2019-06-01T08:00:00Z",
             "reason": reason, "message": msg}
        )
    head = {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": uid,
            "creationTimestamp": "2019-06-01T08:00:00Z",
            "labels": {
                "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name, "node.kubernetes.io/instance-type": "ecs.g5.8xlarge",
                "failure-domain.beta.kubernetes.io/region": "cn-hangzhou",
                "failure-domain.beta.kubernetes.io/zone": zone,
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {"podCIDR": f"172.{int(rng.integers(16, 32))}.{int(rng.integers(0, 256))}.0/24",
                 "providerID": f"cn-hangzhou.i-{_hex(rng, 20)}"},
        "status": {
            "capacity": {"cpu": "32", "ephemeral-storage": "123722704Ki", "memory": "131746080Ki", "pods": "110"},
            "allocatable": {"cpu": "31800m", "ephemeral-storage": "114022843818", "memory": "126503200Ki",
                            "pods": "110"},
            "conditions": conds,
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": _hex(rng, 32), "systemUUID": _hex(rng, 32).upper(), "bootID": uid,
                "kernelVersion": "4.19.24-9.al7.x86_64", "osImage": "Alibaba Cloud Linux (Aliyun Linux) 2",
                "containerRuntimeVersion": "docker://18.9.2", "kubeletVersion": "v1.14.8",
                "kubeProxyVersion": "v1.14.8", "operatingSystem": "linux", "architecture": "amd64",
            },
            "images": "@@IMAGES@@",
        },
    }
    text = json.dumps(head, separators=(",", ":"))
    h, t = text.split('"@@IMAGES@@"')
    return h, t


def node_object_json(name: str, t: float = 0.0, seed: int = 0, target_bytes: int | None = None) -> bytes:
    """One Node object as a kubelet would write it at simulated time ``t`` (~15 KB)."""
    target = PARAMS["node_object_bytes"].validate(PARAMS["node_object_bytes"].default if target_bytes is None else target_bytes)
    rng = np.random.default_rng([seed, sum(name.encode())])
    head, tail = _node_head_tail(name, rng)
    images = _images_json(rng, max(2, target - len(head) - len(tail)))
    return (head + images + tail).replace(_TS, _ts(t)).encode()


def lease_object_json(name: str, t: float = 0.0) -> bytes:
    """One node Lease (coordination.k8s.io/v1) renewed at simulated time ``t`` (~350 B)."""
    renew = _ts(t)[:-1] + ".000000Z"
    doc = {
        "kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
        "metadata": {"name": name, "namespace": "kube-node-lease", "creationTimestamp": "2019-06-01T08:00:00Z",
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name}]},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": renew},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass
class HeartbeatResult:
    """What one heartbeat run cost the real etcd (deltas from after registration to the end)."""

    scenario: str
    nodes: int
    sim_seconds: float
    puts: int
    node_puts: int
    lease_puts: int
    value_bytes: int
    key_bytes: int
    wal_bytes: int
    db_growth_bytes: int
    db_in_use_growth_bytes: int
    revisions: int
    etcd_cpu_seconds: float
    disk_write_bytes: int
    backend_commits: int
    wal_fsyncs: int
    wal_write_bytes_metric: float
    wall_seconds: float
    registration_seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def wal_bytes_per_sim_minute(self) -> float:
        return self.wal_bytes * 60.0 / self.sim_seconds

    @property
    def puts_per_wall_second(self) -> float:
        return self.puts / self.wall_seconds if self.wall_seconds else float("nan")

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        d["wal_bytes_per_sim_minute"] = self.wal_bytes_per_sim_minute
        d["puts_per_wall_second"] = self.puts_per_wall_second
        return d


def _schedule(nodes: int, period: float, sim_seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Heartbeat times (each node at a random phase, then every ``period``) before ``sim_seconds``."""
    phase = rng.uniform(0.0, period, size=nodes)
    k = int(np.ceil(sim_seconds / period)) + 1
    times = phase[:, None] + period * np.arange(k)[None, :]
    node = np.repeat(np.arange(nodes), k).reshape(nodes, k)
    keep = times < sim_seconds
    return times[keep], node[keep]


def run_heartbeats(
    etcd: RealEtcd,
    nodes: int,
    scenario: str = "node",
    sim_seconds: float = 60.0,
    seed: int = 0,
    threads: int = 4,
    params: Mapping[str, Any] | None = None,
) -> HeartbeatResult:
    """Replay ``sim_seconds`` of kubelet heartbeats from ``nodes`` nodes, as fast as etcd takes them.

    Every key is written once first (registration, not counted); then each write of the
    schedule is a plain PUT with changed timestamps, spread over ``threads`` threads with
    one keep-alive connection each (node i goes to thread i mod threads, in time order).
    Content and schedule are deterministic for ``seed``.
    """
    if scenario not in HEARTBEAT_SCENARIOS:
        raise ParameterError("scenario", f"must be one of {', '.join(map(repr, HEARTBEAT_SCENARIOS))}; got {scenario!r}")
    nodes = _check_pos_int("nodes", nodes, 100_000)
    threads = _check_pos_int("threads", threads, 64)
    if not (isinstance(sim_seconds, (int, float)) and 0 < sim_seconds <= 86_400):
        raise ParameterError("sim_seconds", f"must be a number in (0, 86400] s; got {sim_seconds!r}")
    p = PARAMS.resolve(params)
    node_period = p[HEARTBEAT_SCENARIOS[scenario][0]]
    lease_key = HEARTBEAT_SCENARIOS[scenario][1]
    lease_period = p[lease_key] if lease_key else None

    rng = np.random.default_rng(seed)
    names = [f"node-{i:05d}" for i in range(nodes)]
    # Node bodies: a per-node head/tail and one of 16 shared image lists (real nodes share
    # images), padded so each Node is node_object_bytes long.
    n_variants = min(16, nodes)
    heads = [_node_head_tail(n, np.random.default_rng([seed, i])) for i, n in enumerate(names)]
    longest = max(len(h) + len(t) for h, t in heads)
    variants = [_images_json(np.random.default_rng([seed, 10**6, v]), max(2, p["node_object_bytes"] - longest))
                for v in range(n_variants)]
    variant_of = rng.integers(0, n_variants, size=nodes)

    def node_body(i: int, t: float) -> bytes:
        h, tl = heads[i]
        return (h + variants[variant_of[i]] + tl).replace(_TS, _ts(t)).encode()

    # schedule: (time, node, is_lease)
    tn, nn = _schedule(nodes, node_period, sim_seconds, rng)
    parts = [(tn, nn, np.zeros(tn.size, dtype=bool))]
    if lease_period:
        tl_, nl_ = _schedule(nodes, lease_period, sim_seconds, rng)
        parts.append((tl_, nl_, np.ones(tl_.size, dtype=bool)))
    times = np.concatenate([x[0] for x in parts])
    who = np.concatenate([x[1] for x in parts])
    is_lease = np.concatenate([x[2] for x in parts])
    order = np.lexsort((who, times))
    times, who, is_lease = times[order], who[order], is_lease[order]

    def key(i: int, lease: bool) -> bytes:
        return ((_KEY_LEASE if lease else _KEY_NODE) + names[i]).encode()

    def run_parallel(jobs_for_thread) -> tuple[int, int, int]:
        errors: list[BaseException] = []
        totals = [[0, 0, 0] for _ in range(threads)]  # puts, value bytes, key bytes

        def worker(w: int) -> None:
            c = etcd.client()
            try:
                for k, v in jobs_for_thread(w):
                    c.put(k, v)
                    totals[w][0] += 1
                    totals[w][1] += len(v)
                    totals[w][2] += len(k)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller
                errors.append(e)
            finally:
                c.close()

        ts = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errors:
            raise errors[0]
        return tuple(sum(x[j] for x in totals) for j in range(3))  # type: ignore[return-value]

    def registration(w: int):
        for i in range(w, nodes, threads):
            yield key(i, False), node_body(i, 0.0)
            if lease_period:
                yield key(i, True), lease_object_json(names[i], 0.0)

    t0 = time.monotonic()
    run_parallel(registration)
    t_reg = time.monotonic() - t0
    time.sleep(0.3)  # let the backend batch (100 ms) commit before the baseline
    before = etcd.sample()

    mine = [np.flatnonzero(who % threads == w) for w in range(threads)]

    def heartbeats(w: int):
        for j in mine[w].tolist():
            i, t, lease = int(who[j]), float(times[j]), bool(is_lease[j])
            yield key(i, lease), (lease_object_json(names[i], t) if lease else node_body(i, t))

    t1 = time.monotonic()
    puts, vbytes, kbytes = run_parallel(heartbeats)
    wall = time.monotonic() - t1
    time.sleep(0.3)
    d = etcd.sample() - before
    return HeartbeatResult(
        scenario=scenario,
        nodes=nodes,
        sim_seconds=float(sim_seconds),
        puts=puts,
        node_puts=int((~is_lease).sum()),
        lease_puts=int(is_lease.sum()),
        value_bytes=vbytes,
        key_bytes=kbytes,
        wal_bytes=int(d["wal_bytes"]),
        db_growth_bytes=int(d["db_size"]),
        db_in_use_growth_bytes=int(d["db_size_in_use"]),
        revisions=int(d["revision"]),
        etcd_cpu_seconds=float(d["cpu_seconds"]),
        disk_write_bytes=int(d["write_bytes"]),
        backend_commits=int(d["backend_commits"]),
        wal_fsyncs=int(d["wal_fsyncs"]),
        wal_write_bytes_metric=float(d["wal_write_bytes_metric"]),
        wall_seconds=wall,
        registration_seconds=t_reg,
        extra={"etcd_version": ".".join(map(str, etcd.version or ())), "client": "json-gateway", "threads": threads},
    )


def _check_pos_int(name: str, v, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= int(v) <= hi:
        raise ParameterError(name, f"must be an integer in [1, {hi}]; got {v!r}")
    return int(v)


def quota_lifecycle(quota_bytes: int = 16 * 2**20, value_bytes: int = 2**20, versions: int = 8,
                    out=print) -> list[dict]:
    """History, compaction, the quota and defragmentation on a private real etcd.

    Writes ``versions`` versions of one key (history keeps them all), then new keys until
    etcd refuses with NOSPACE; compacts (pages are freed, the file stays), defragments
    (the file shrinks), disarms the alarm and writes again. Prints one line per step with
    ``out`` and returns the steps (revision, dbSize, dbSizeInUse, note)."""
    steps: list[dict] = []
    with RealEtcd(quota_backend_bytes=quota_bytes) as etcd:
        c = etcd.c

        def step(what: str, note: str = "") -> None:
            s = c.status()
            steps.append({"step": what, "revision": s.revision, "db_size": s.db_size,
                          "db_size_in_use": s.db_size_in_use, "note": note})
            out(f"{what:<34} revision {s.revision:>3}, dbSize {s.db_size / 2**20:5.1f} MiB, "
                f"in use {s.db_size_in_use / 2**20:5.1f} MiB {note}".rstrip())

        for _ in range(versions):
            c.put("/registry/minions/node-1", os.urandom(value_bytes))
        step(f"{versions} versions of one key")
        note = "no refusal"
        for i in range(4 * quota_bytes // value_bytes):
            try:
                c.put(f"/registry/minions/node-{i + 2}", os.urandom(value_bytes))
            except EtcdNoSpace as err:
                note = f"(put {i + 1} refused: {err.message}; alarms {c.alarms()})"
                break
        step("after NOSPACE", note)
        c.compact(c.status().revision)
        step("after compaction")
        c.defragment()
        step("after defragmentation")
        c.disarm()
        c.put("/registry/minions/node-1", b"small again")
        step("after disarm: puts work again")
    return steps
