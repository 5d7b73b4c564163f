"""Logging: structlog, human console by default, JSON lines for CI."""

from __future__ import annotations

import logging
import os
import re
import sys

import structlog

# Values that must never reach a log line, whatever a caller passes.
_SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEY$|^OS_|^AWS_)", re.I)
# Names whose values are credentials themselves (not, say, a region or URL):
# those values are masked wherever they appear in a message.
_CREDENTIAL_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN)", re.I)
_HIDDEN: set[str] = set()
VERBOSE = False
# DIB's trace (set -x) in every phase log: -x of `factory dib`, or an exported
# DIB_DEBUG_TRACE, as disk-image-create reads it. Tracing changes no key.
TRACE = False


def is_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact(env: dict[str, str]) -> dict[str, str]:
    return {k: ("***" if is_secret(k) else v) for k, v in env.items()}


def fingerprint(env: dict[str, str]) -> dict[str, str]:
    """Secret values replaced by their sha256: still in a layer key (a new
    password rebuilds the layer), never readable in labels or manifests."""
    import hashlib

    return {k: (f"sha256:{hashlib.sha256(v.encode()).hexdigest()}" if is_secret(k) else v) for k, v in env.items()}


def hide(*values: str | None) -> None:
    """Mask these values (credentials a client was given) in every log line
    and every message passed through `scrub`."""
    _HIDDEN.update(v for v in values if v and len(v) >= 4)


def hide_environment(env: dict[str, str]) -> None:
    hide(*(v for k, v in env.items() if _CREDENTIAL_NAME.search(k)))


def scrub(text: str) -> str:
    for value in sorted(_HIDDEN, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def _redact_processor(_logger, _name, event: dict) -> dict:
    for key in list(event):
        if _SECRET_NAME.search(key):
            event[key] = "***"
        elif isinstance(event[key], dict):
            event[key] = redact({str(k): v for k, v in event[key].items()})
        elif isinstance(event[key], str):
            event[key] = scrub(event[key])
    return event


def setup(fmt: str = "console", verbose: bool = False) -> None:
    global VERBOSE, TRACE
    VERBOSE = verbose
    TRACE = os.environ.get("DIB_DEBUG_TRACE", "0") not in ("", "0")
    hide_environment(dict(os.environ))
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S" if fmt != "json" else "iso"),
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG if verbose else logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),
        cache_logger_on_first_use=False,
    )


class _Stderr:
    """Whatever sys.stderr is when a line is written: a live progress display
    stands in for it while it runs, and prints log lines above itself."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def get(name: str = "factory"):
    return structlog.get_logger(name)
