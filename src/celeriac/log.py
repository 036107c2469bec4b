"""Logging: Celery's worker formats and task loggers whose records carry task id and name."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from celeriac import signals
from celeriac.request import current_request

__all__ = [
    "TASK_FORMAT",
    "WORKER_FORMAT",
    "JsonFormatter",
    "LogFormats",
    "LoggingProxy",
    "TaskFormatter",
    "get_logger",
    "get_task_logger",
    "setup_logging",
]

WORKER_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
TASK_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s"


class _TaskContextFilter(logging.Filter):
    """Adds ``task_id`` and ``task_name`` of the running task to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = current_request()
        record.task_id = (request.id if request else None) or "???"
        record.task_name = (request.task if request else None) or "???"
        return True


class TaskFormatter(logging.Formatter):
    """Uses the task format for records from task loggers, the worker format otherwise
    (``worker_task_log_format`` / ``worker_log_format``, %-style as Celery's)."""

    def __init__(
        self,
        fmt: str = WORKER_FORMAT,
        task_fmt: str = TASK_FORMAT,
        datefmt: str | None = None,
        task_datefmt: str | None = None,
    ) -> None:
        super().__init__(fmt, datefmt)
        self._task = logging.Formatter(task_fmt, task_datefmt)

    def format(self, record: logging.LogRecord) -> str:
        from_task = record.name.startswith("celeriac.task.") or record.name == "celery.task"
        if from_task and getattr(record, "task_id", "???") != "???":
            return self._task.format(record)
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``--log-format json``), for log shippers: ``time`` (ISO 8601,
    UTC), ``level``, ``logger``, ``process``, ``message``, ``task_id`` and ``task_name`` in a
    task, and ``exc_info`` (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        entry: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        for name in ("task_id", "task_name"):
            value = getattr(record, name, "???")
            if value != "???":
                entry[name] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def get_task_logger(name: str) -> logging.Logger:
    """A logger for use inside tasks; its records carry the running task's id and name."""
    logger = logging.getLogger(f"celeriac.task.{name}")
    if not any(isinstance(f, _TaskContextFilter) for f in logger.filters):
        logger.addFilter(_TaskContextFilter())
    return logger


_COLORS = {"DEBUG": "\033[34m", "WARNING": "\033[33m", "ERROR": "\033[31m", "CRITICAL": "\033[31m"}
_RESET = "\033[0m"


class _ColorFormatter(TaskFormatter):
    """Colours the level of WARNING and above (only used on a terminal)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        color = _COLORS.get(record.levelname)
        return f"{color}{text}{_RESET}" if color else text


class LoggingProxy(io.TextIOBase):
    """A file-like object that sends what is written to a logger (``print`` in tasks)."""

    def __init__(self, logger: logging.Logger, level: int) -> None:
        self.logger = logger
        self.level = level
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if line.strip():
                self.logger.log(self.level, line)
        return len(text)

    def flush(self) -> None:
        if self._buffer.strip():
            self.logger.log(self.level, self._buffer)
        self._buffer = ""

    def isatty(self) -> bool:
        return False


@dataclass(frozen=True)
class LogFormats:
    """The worker's log formats: Celery's ``worker_log_format``, ``worker_task_log_format``
    and their date formats, or one JSON object per line (``--log-format json``)."""

    worker: str = WORKER_FORMAT
    task: str = TASK_FORMAT
    datefmt: str | None = None
    task_datefmt: str | None = None
    json: bool = False

    @classmethod
    def from_conf(cls, conf: Any, *, json: bool = False) -> LogFormats:
        return cls(
            worker=str(conf.worker_log_format or WORKER_FORMAT),
            task=str(conf.worker_task_log_format or TASK_FORMAT),
            datefmt=conf.worker_log_datefmt,
            task_datefmt=conf.worker_task_log_datefmt,
            json=json,
        )

    def formatter(self, colorize: bool) -> logging.Formatter:
        if self.json:
            return JsonFormatter()
        kind = _ColorFormatter if colorize else TaskFormatter
        return kind(self.worker, self.task, self.datefmt, self.task_datefmt)


def setup_logging(
    level: int | str,
    logfile: str | None = None,
    colorize: bool | None = None,
    *,
    hijack_root_logger: bool = True,
    redirect_stdouts: bool = False,
    redirect_level: str = "WARNING",
    formats: LogFormats | None = None,
) -> None:
    """Configure logging as a Celery worker does.

    A receiver of the ``setup_logging`` signal takes over completely (nothing else is
    configured). Otherwise the root logger gets ``formats`` (Celery's by default) on stderr or
    ``logfile`` (its handlers replaced when ``hijack_root_logger``), colour only on a
    terminal, then ``after_setup_logger`` and ``after_setup_task_logger`` are sent; with
    ``redirect_stdouts``, ``print()`` in tasks goes to the log at ``redirect_level``.
    """
    formats = formats or LogFormats()
    numeric = level if isinstance(level, int) else logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"Unknown log level {level!r}: use DEBUG, INFO, WARNING, ERROR")
    if signals.setup_logging.send(
        sender=None, loglevel=numeric, logfile=logfile, format=formats.worker, colorize=colorize
    ):
        return
    stream: TextIO = sys.stderr
    handler: logging.Handler
    handler = logging.FileHandler(logfile) if logfile else logging.StreamHandler(stream)
    if colorize is None:
        colorize = logfile is None and stream.isatty()
    colorize = bool(colorize) and not formats.json
    handler.setFormatter(formats.formatter(colorize))
    handler.addFilter(_TaskContextFilter())
    root = logging.getLogger()
    if hijack_root_logger:
        for old in list(root.handlers):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    common = {"loglevel": numeric, "logfile": logfile, "format": formats.worker}
    signals.after_setup_logger.send(sender=None, logger=root, colorize=colorize, **common)
    task_logger = logging.getLogger("celeriac.task")
    signals.after_setup_task_logger.send(
        sender=None, logger=task_logger, colorize=colorize, **{**common, "format": formats.task}
    )
    if redirect_stdouts:
        redirect = logging.getLevelName(redirect_level.upper())
        out_level = redirect if isinstance(redirect, int) else logging.WARNING
        sys.stdout = LoggingProxy(logging.getLogger("celeriac.redirected"), out_level)
        sys.stderr = LoggingProxy(logging.getLogger("celeriac.redirected"), out_level)
