"""Accepted-but-undocumented input, told to the client: one ``X-Wanmock-Warning`` header per finding.

The findings themselves come from the schema files (``x-accepted-undocumented``, read by
:mod:`wanmock.schemas.leniency`); this module only makes their text fit for an HTTP header.
"""

from __future__ import annotations

import re

WARNING_HEADER = "X-Wanmock-Warning"
HEADER_LIMIT = 512
_UNSAFE = re.compile(r"[^\x20-\x7e]")


def header_text(text: str) -> str:
    """``text`` as a header value: printable ASCII (other characters as \\uXXXX), at most 512 characters."""
    safe = _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}" if ord(m.group()) <= 0xFFFF else "?", text)
    return safe if len(safe) <= HEADER_LIMIT else safe[: HEADER_LIMIT - 3] + "..."
