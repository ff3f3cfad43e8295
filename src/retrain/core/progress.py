"""One line of progress on stderr, the same for every long step."""

from __future__ import annotations

import sys


def progress(msg: str) -> None:
    print(f"[retrain] {msg}", file=sys.stderr, flush=True)
