"""Reproducible layers: the one time a build may write (SOURCE_DATE_EPOCH),
and the tidy-up that takes out what differs between two builds of one key.

SOURCE_DATE_EPOCH is never the clock. It is, first found:
  1. SOURCE_DATE_EPOCH given in the target's environment (--env), which is in the key;
  2. the date of a Debian snapshot mirror (DIB_DISTRIBUTION_MIRROR of the
     form .../archive/debian/20240601T000000Z/), also in the key: the
     packages are no newer than it;
  3. DEFAULT_EPOCH, a fixed date that moves only with this code.
Every phase sees it; files a layer writes are clamped to it before commit.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

DEFAULT_EPOCH = 1704067200  # 2024-01-01T00:00:00Z
_SNAPSHOT = re.compile(r"/(\d{8}T\d{6}Z)(/|$)")


def source_date_epoch(env: dict[str, str]) -> int:
    """The layer's SOURCE_DATE_EPOCH from its explicit environment (pure)."""
    given = str(env.get("SOURCE_DATE_EPOCH", "")).strip()
    if given.isdigit():
        return int(given)
    snapshot = _SNAPSHOT.search(str(env.get("DIB_DISTRIBUTION_MIRROR", "")))
    if snapshot:
        return int(datetime.strptime(snapshot.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp())
    return DEFAULT_EPOCH
