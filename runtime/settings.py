"""All of wasmq's settings, in one place.

Precedence, highest first: CLI flags (``overrides``), the process environment, the
nearest ``.env`` file from the working directory up to the project root, the defaults
below. Names from the reference README keep their ``TASK_QUEUE_`` / ``REDIS_URL``
spelling; new ones use ``WASMQ_``.

The default state, module and log dirs are relative to the project root
(:mod:`runtime.project`), so every subdirectory of a project shares one embedded server.
A relative path given by a flag or the environment is relative to the working directory;
one in a ``.env`` file to that file's directory.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from runtime.errors import SettingsError
from runtime.project import Project, find_project
from runtime.units import parse_bool, parse_duration, parse_size

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("pretty", "json")
SANDBOX_APIS = ("auto", "public")
GO_TOOLCHAINS = ("auto", "tinygo", "go")
COMPILE_ISOLATIONS = ("bwrap", "none")
TLS_VERIFY = ("required", "none")
#: Settings whose defaults are relative to the project root rather than the working dir.
PROJECT_PATHS = ("wasm_log_dir", "module_dir", "state_dir")


def _redis_url(text: str) -> str | None:
    from runtime.server.urls import check

    return check(text)


def _optional_duration(text: str) -> float | None:
    if not text.strip():
        return None
    value = parse_duration(text)
    if value < 0:
        raise ValueError(f"{text!r} is negative")
    return value


def _secret(text: str) -> str | None:
    return text or None


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"{text!r} is not one of {', '.join(options)}")
        return value

    return parse


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{text!r} is negative")
    return value


def _path(text: str) -> Path:
    if not text.strip():
        raise ValueError("empty path")
    return Path(text)


def _otel(text: str) -> str:
    from runtime.telemetry.tracing import EXPORTERS, missing_extra

    value = _choice(EXPORTERS)(text)
    problem = missing_extra(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _queue_name(text: str) -> str:
    from runtime.queue.names import check_queue_name

    return check_queue_name(text)


def _queue_durations(text: str) -> tuple[tuple[str, float], ...]:
    from runtime.queue.names import check_queue_name

    out: list[tuple[str, float]] = []
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, duration = item.partition("=")
        if not sep:
            raise ValueError(f"{item.strip()!r} is not queue=duration (like reports=7d)")
        seconds = parse_duration(duration.strip())
        if seconds <= 0:
            raise ValueError(f"the retention of queue {name.strip()!r} must be positive")
        out.append((check_queue_name(name.strip()), seconds))
    return tuple(out)


def _setting(env: str, default: Any, parse: Callable[[str], Any], doc: str) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """wasmq's configuration. Durations are seconds, sizes are bytes."""

    redis_url: str | None = _setting(
        "REDIS_URL",
        None,
        _redis_url,
        "Redis URL (redis://, rediss://, unix://, redis+sentinel://, redis+cluster://); unset"
        " starts the embedded Valkey server",
    )
    connect_timeout: float | None = _setting(
        "WASMQ_CONNECT_TIMEOUT",
        None,
        _optional_duration,
        "How long a command retries its first connection to REDIS_URL (unset: 30s for"
        " worker, scheduler, reaper and dashboard, 5s for the rest; 0 fails at once)",
    )
    redis_tls_ca: Path | None = _setting(
        "WASMQ_REDIS_TLS_CA", None, _path, "CA bundle (PEM) that verifies a rediss:// server"
    )
    redis_tls_cert: Path | None = _setting(
        "WASMQ_REDIS_TLS_CERT", None, _path, "Client certificate (PEM) for mutual TLS"
    )
    redis_tls_key: Path | None = _setting(
        "WASMQ_REDIS_TLS_KEY", None, _path, "Private key (PEM) of WASMQ_REDIS_TLS_CERT"
    )
    redis_tls_verify: str = _setting(
        "WASMQ_REDIS_TLS_VERIFY",
        "required",
        _choice(TLS_VERIFY),
        "required (check the server's certificate and name) or none (encrypt only)",
    )
    sentinel_password: str | None = _setting(
        "WASMQ_SENTINEL_PASSWORD",
        None,
        _secret,
        "Password of the sentinels themselves (the master's goes in REDIS_URL)",
    )
    replica_acks: int = _setting(
        "WASMQ_REPLICA_ACKS",
        0,
        _positive_int,
        "Replicas each enqueue must reach (WAIT; else an error) and acks wait for (else a"
        " warning); 0: no waiting",
    )
    replica_timeout: float = _setting(
        "WASMQ_REPLICA_TIMEOUT",
        1.0,
        parse_duration,
        "How long an enqueue or ack waits for WASMQ_REPLICA_ACKS replicas",
    )
    log_level: str = _setting("TASK_QUEUE_LOG_LEVEL", "info", _choice(LOG_LEVELS), "Log level")
    log_format: str = _setting(
        "TASK_QUEUE_LOG_FORMAT",
        "pretty",
        _choice(LOG_FORMATS),
        "pretty or json (one object per line)",
    )
    save_wasm_logs: bool = _setting(
        "TASK_QUEUE_SAVE_WASM_LOGS", False, parse_bool, "Write each task's output to a file"
    )
    mirror_wasm_logs: bool = _setting(
        "TASK_QUEUE_MIRROR_WASM_LOGS",
        False,
        parse_bool,
        "Echo task output to the worker's terminal",
    )
    wasm_log_dir: Path = _setting(
        "TASK_QUEUE_WASM_LOG_DIR",
        Path("runtime-logs/wasm"),
        _path,
        "Directory of saved task logs (default: in the project root)",
    )
    module_dir: Path = _setting(
        "WASMQ_MODULE_DIR",
        Path("wasm_task_functions"),
        _path,
        "On-disk module cache (default: in the project root)",
    )
    state_dir: Path = _setting(
        "WASMQ_STATE_DIR",
        Path(".wasmq"),
        _path,
        "Embedded server socket, data and lock files (default: in the project root)",
    )
    toolchain_cache: Path = _setting(
        "WASMQ_TOOLCHAIN_CACHE",
        Path("~/.cache/wasmq"),
        _path,
        "Toolchains' own build caches (Go's GOCACHE, Zig's libc), shared by module dirs",
    )
    go_toolchain: str = _setting(
        "WASMQ_GO_TOOLCHAIN",
        "auto",
        _choice(GO_TOOLCHAINS),
        "auto (TinyGo if on PATH), tinygo or go",
    )
    compile_timeout: float = _setting(
        "WASMQ_COMPILE_TIMEOUT", 120.0, parse_duration, "Time limit of one compile"
    )
    compile_output_limit: int = _setting(
        "WASMQ_COMPILE_OUTPUT_LIMIT",
        64 * 1024**2,
        parse_size,
        "Largest module a compile may produce",
    )
    compile_isolation: str = _setting(
        "WASMQ_COMPILE_ISOLATION",
        "bwrap",
        _choice(COMPILE_ISOLATIONS),
        "Sandbox of toolchain processes: bwrap (bubblewrap) or none (trusted source only)",
    )
    snapshot: bool = _setting(
        "WASMQ_SNAPSHOT",
        True,
        parse_bool,
        "Pre-initialize modules at registration: run _initialize once, store the snapshot",
    )
    queue: str = _setting("WASMQ_QUEUE", "default", _queue_name, "Queue used when none is named")
    task_timeout: float = _setting(
        "WASMQ_TASK_TIMEOUT", 30.0, parse_duration, "Default wall-time limit of a task"
    )
    max_task_timeout: float = _setting(
        "WASMQ_MAX_TASK_TIMEOUT", 3600.0, parse_duration, "Ceiling on a task's time limit"
    )
    memory_limit: int = _setting(
        "WASMQ_MEMORY_LIMIT", 128 * 1024**2, parse_size, "Default linear-memory limit of a task"
    )
    max_memory_limit: int = _setting(
        "WASMQ_MAX_MEMORY_LIMIT", 1024**3, parse_size, "Ceiling on a task's memory limit"
    )
    result_limit: int = _setting(
        "WASMQ_RESULT_LIMIT", 16 * 1024**2, parse_size, "Default largest result of a task"
    )
    max_result_limit: int = _setting(
        "WASMQ_MAX_RESULT_LIMIT", 64 * 1024**2, parse_size, "Ceiling on a task's result limit"
    )
    log_limit: int = _setting(
        "WASMQ_LOG_LIMIT", 1024**2, parse_size, "Captured stdout+stderr kept per task"
    )
    max_log_limit: int = _setting(
        "WASMQ_MAX_LOG_LIMIT", 16 * 1024**2, parse_size, "Ceiling on a task's log limit"
    )
    sandbox_api: str = _setting(
        "WASMQ_SANDBOX_API",
        "auto",
        _choice(SANDBOX_APIS),
        "wasmtime binding the sandbox uses: auto (the fast C-API path when the installed"
        " wasmtime-py is one it was checked against) or public",
    )
    fuel: int = _setting(
        "WASMQ_FUEL", 0, _positive_int, "Default fuel (instructions) per task; 0 turns it off"
    )
    max_fuel: int = _setting("WASMQ_MAX_FUEL", 0, _positive_int, "Ceiling on fuel; 0 means none")
    payload_limit: int = _setting(
        "WASMQ_PAYLOAD_LIMIT", 1024**2, parse_size, "Largest payload enqueue accepts"
    )
    max_retries: int = _setting(
        "WASMQ_MAX_RETRIES", 3, _positive_int, "Default retries after the first attempt"
    )
    retry_backoff: float = _setting(
        "WASMQ_RETRY_BACKOFF", 1.0, parse_duration, "First retry delay; doubles per attempt"
    )
    retry_backoff_max: float = _setting(
        "WASMQ_RETRY_BACKOFF_MAX", 300.0, parse_duration, "Longest retry delay"
    )
    result_ttl: float = _setting(
        "WASMQ_RESULT_TTL",
        86400.0,
        parse_duration,
        "How long results, logs and records of ended tasks stay (a task's --keep-result wins)",
    )
    queue_result_ttl: tuple[tuple[str, float], ...] = _setting(
        "WASMQ_QUEUE_RESULT_TTL",
        (),
        _queue_durations,
        "Retention per queue, like reports=7d,thumbs=1h (overrides WASMQ_RESULT_TTL)",
    )
    keep_payload: bool = _setting(
        "WASMQ_KEEP_PAYLOAD",
        False,
        parse_bool,
        "Keep payloads of succeeded tasks (dropped by default; a task's --keep-payload wins)",
    )
    finished_max: int = _setting(
        "WASMQ_FINISHED_MAX", 10000, _positive_int, "Length cap of each finished list (ids)"
    )
    completed_max: int = _setting(
        "WASMQ_COMPLETED_MAX",
        0,
        _positive_int,
        "Most completed task records kept per queue; older ones are deleted (0: no cap)",
    )
    index_max: int = _setting(
        "WASMQ_INDEX_MAX",
        1_000_000,
        _positive_int,
        "Most ids kept in each task-list index (one per queue and one per task name; 0: no cap)",
    )
    lease_grace: float = _setting(
        "WASMQ_LEASE_GRACE", 10.0, parse_duration, "Added to a task's timeout to form its lease"
    )
    reaper_interval: float = _setting(
        "WASMQ_REAPER_INTERVAL",
        5.0,
        parse_duration,
        "How often the reaper looks for expired leases",
    )
    heartbeat_interval: float = _setting(
        "WASMQ_HEARTBEAT_INTERVAL", 5.0, parse_duration, "How often a worker reports it is alive"
    )
    concurrency: int = _setting(
        "WASMQ_CONCURRENCY", 0, _positive_int, "Worker processes; 0 means one per core"
    )
    drain_timeout: float = _setting(
        "WASMQ_DRAIN_TIMEOUT",
        30.0,
        parse_duration,
        "How long a stopping worker finishes running tasks",
    )
    claim_batch: int = _setting(
        "WASMQ_CLAIM_BATCH", 32, _positive_int, "Most tasks a worker process claims at once"
    )
    reference_compat: bool = _setting(
        "WASMQ_REFERENCE_COMPAT",
        False,
        parse_bool,
        "Write records the reference Go workers read: their four stages, attempts counting "
        "failures, no expiry on task records, six-field cron",
    )
    otel: str = _setting(
        "WASMQ_OTEL",
        "off",
        _otel,
        "OpenTelemetry spans of workers: off, otlp (OTLP/HTTP, set by OTEL_* variables) or console",
    )

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        env_file: Path | Literal["discover"] | None = "discover",
        project: Project | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Build settings from defaults, ``.env``, the environment and ``overrides``.

        ``overrides`` maps field names to values (``None`` means "not given"). The
        project (default: found from the working directory) places the default dirs;
        ``env_file`` is its ``.env`` unless given (``None``: no file). ``defaults`` are
        the caller's own defaults, below every source (the CLI's level per command). Raises
        :class:`SettingsError` naming the first invalid setting.
        """
        if project is None:
            project = find_project()
        dotenv = project.env_file if env_file == "discover" else env_file
        in_file = read_env_file(dotenv) if dotenv is not None and dotenv.is_file() else {}
        environment = os.environ if environ is None else environ
        sources = {**in_file, **environment}
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            env = f.metadata["env"]
            parse = f.metadata["parse"]
            given = (overrides or {}).get(f.name)
            if given is not None:
                raw, origin = given, f"--{f.name.replace('_', '-')}"
            elif env in sources:
                raw, origin = sources[env], env
            elif defaults is not None and defaults.get(f.name) is not None:
                values[f.name] = defaults[f.name]
                continue
            elif f.name in PROJECT_PATHS:
                values[f.name] = project.root / str(f.default)
                continue
            else:
                continue
            try:
                values[f.name] = parse(raw if isinstance(raw, str) else str(raw))
            except (ValueError, TypeError) as exc:
                raise SettingsError(f"invalid {origin}={raw!r}: {exc}") from None
            if given is None and env not in environment and parse is _path:
                values[f.name] = _beside(dotenv, values[f.name])
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Cross-field checks; raise :class:`SettingsError` naming the setting."""
        pairs = (
            (
                "WASMQ_TASK_TIMEOUT",
                self.task_timeout,
                "WASMQ_MAX_TASK_TIMEOUT",
                self.max_task_timeout,
            ),
            (
                "WASMQ_MEMORY_LIMIT",
                self.memory_limit,
                "WASMQ_MAX_MEMORY_LIMIT",
                self.max_memory_limit,
            ),
            (
                "WASMQ_RESULT_LIMIT",
                self.result_limit,
                "WASMQ_MAX_RESULT_LIMIT",
                self.max_result_limit,
            ),
            ("WASMQ_LOG_LIMIT", self.log_limit, "WASMQ_MAX_LOG_LIMIT", self.max_log_limit),
        )
        for name, value, ceiling_name, ceiling in pairs:
            if value > ceiling:
                raise SettingsError(
                    f"invalid {name}={value}: above its ceiling {ceiling_name}={ceiling}"
                )
        if self.task_timeout <= 0:
            raise SettingsError("invalid WASMQ_TASK_TIMEOUT: must be greater than zero")
        if self.result_ttl <= 0:
            raise SettingsError("invalid WASMQ_RESULT_TTL: must be greater than zero")
        if self.replica_timeout <= 0:
            raise SettingsError("invalid WASMQ_REPLICA_TIMEOUT: must be greater than zero")
        if self.redis_tls_key is not None and self.redis_tls_cert is None:
            raise SettingsError(
                "WASMQ_REDIS_TLS_KEY is set without WASMQ_REDIS_TLS_CERT: set both for mutual TLS"
            )
        tls = [
            name
            for name, value in (
                ("WASMQ_REDIS_TLS_CA", self.redis_tls_ca),
                ("WASMQ_REDIS_TLS_CERT", self.redis_tls_cert),
                ("WASMQ_REDIS_TLS_KEY", self.redis_tls_key),
            )
            if value is not None
        ]
        if tls and not (self.redis_url or "").lower().startswith("rediss"):
            raise SettingsError(
                f"{tls[0]} is set but REDIS_URL is not a TLS URL: use rediss:// "
                "(or rediss+sentinel://, rediss+cluster://), or unset it"
            )
        from runtime.server.urls import is_cluster

        if self.replica_acks and is_cluster(self.redis_url or ""):
            # WAIT counts the writes of its own connection, and the cluster client picks
            # a connection per slot: the WAIT would not follow the write it should.
            raise SettingsError(
                "WASMQ_REPLICA_ACKS is not available with redis+cluster://: unset it"
            )

    def retention(self, queue: str, asked: float | None = None) -> float:
        """Seconds the result and record of a task of ``queue`` stay after it ends: the
        task's own request, else its queue's, else ``result_ttl``."""
        if asked is not None:
            return asked
        for name, seconds in self.queue_result_ttl:
            if name == queue:
                return seconds
        return self.result_ttl

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """``(env name, default, doc)`` for every setting, for docs and ``--help``."""
        rows = []
        for f in dataclasses.fields(cls):
            default = "" if f.default in (None, ()) else str(f.default)
            rows.append((f.metadata["env"], default, f.metadata["doc"]))
        return rows


def _beside(env_file: Path | None, path: Path) -> Path:
    """``path`` from ``env_file``, relative to that file's directory."""
    if env_file is None or path.is_absolute() or str(path).startswith("~"):
        return path
    return env_file.absolute().parent / path


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a dotenv file; ``#`` comments and ``export`` prefixes allowed."""
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        key, sep, value = stripped.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key.strip()] = value
    return out
