"""Captured contracts of the Wan 2.7 video APIs: JSON Schema files and their loader.

>>> from schemas import catalog
>>> issues = catalog().validate("dashscope", "submit", {"model": "wan2.7-t2v"}, kind="t2v")
>>> [str(i) for i in issues]
["$.input: 'input' is required"]
"""

from wanmock.schemas.catalog import (
    CANONICAL_STATES,
    KINDS,
    MESSAGES,
    TERMINAL_STATES,
    Catalog,
    Endpoint,
    ErrorAnswer,
    Model,
    Provider,
    SchemaNotFound,
    State,
    catalog,
    resolve_pointer,
)
from wanmock.schemas.leniency import Finding, Verdict
from wanmock.schemas.validation import CompiledSchema, Issue, json_path

__all__ = [
    "CANONICAL_STATES",
    "KINDS",
    "MESSAGES",
    "TERMINAL_STATES",
    "Catalog",
    "CompiledSchema",
    "Endpoint",
    "ErrorAnswer",
    "Finding",
    "Issue",
    "Model",
    "Provider",
    "SchemaNotFound",
    "State",
    "Verdict",
    "catalog",
    "json_path",
    "resolve_pointer",
]
