"""AsyncAPI 3.0 for labkit: every scenario described as a document (export), documents run as workloads (import).

Export: ``scenario.asyncapi()`` (see :mod:`labkit.asyncapi.export`), checked by
the AsyncAPI project's own parser (:mod:`labkit.asyncapi.validate`).

Import: ``from_asyncapi(path_or_dict)`` makes a measured workload of a document
(:mod:`labkit.asyncapi.workload`), ``run`` runs it, ``report`` reads its Result per
operation and channel (docs/asyncapi.md, "## Import").
"""

from __future__ import annotations

from .export import asyncapi, channel_for, payload_schemas, render
from .validate import official_validate, validator_available
from .report import report  # eager: the name would otherwise be shadowed by the submodule once it is imported

__all__ = ["official_validate", "validator_available", "asyncapi", "render", "channel_for", "payload_schemas",
           "from_asyncapi", "run", "report", "AsyncAPIError", "AsyncApiWorkload", "example", "parse", "shipped"]

# Import (documents run as workloads; docs/asyncapi.md "## Import"): loaded on first use.
_IMPORT_SIDE = {"from_asyncapi": "workload", "run": "workload", "AsyncApiWorkload": "workload",
                "AsyncAPIError": "document", "parse": "document", "shipped": "document", "example": "examples"}


def __getattr__(name: str) -> object:
    if name in _IMPORT_SIDE:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_IMPORT_SIDE[name]}"), name)
    raise AttributeError(f"module 'labkit.asyncapi' has no attribute {name!r}")
