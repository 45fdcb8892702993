"""AsyncAPI 3.0 for labkit: every scenario described as a document (export), documents run as workloads (import).

Export: ``scenario.asyncapi()`` (see :mod:`labkit.asyncapi.export`), checked by
the AsyncAPI project's own parser (:mod:`labkit.asyncapi.validate`).

Import: ``from_asyncapi(path_or_dict)`` makes a measured workload of a document
(:mod:`labkit.asyncapi.workload`), ``run`` runs it, ``report`` reads its Result per
operation and channel (docs/asyncapi.md, "## Import").
"""

from __future__ import annotations


__all__ = ["official_validate", "validator_available", "asyncapi", "render", "channel_for", "payload_schemas",
           "from_asyncapi", "run", "report", "AsyncAPIError", "AsyncApiWorkload", "example", "parse", "shipped"]

# Every name loads its module on first use, so that `labkit`'s command line (which registers
# `labkit asyncapi`) does not pay for pandas, jsonschema or the catalogs on every call.
_IMPORT_SIDE = {"asyncapi": "export", "render": "export", "channel_for": "export", "payload_schemas": "export",
                "official_validate": "validate", "validator_available": "validate", "report": "reporting",
                "from_asyncapi": "workload", "run": "workload", "AsyncApiWorkload": "workload",
                "AsyncAPIError": "document", "parse": "document", "shipped": "document", "example": "examples"}


def __getattr__(name: str) -> object:
    if name in _IMPORT_SIDE:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_IMPORT_SIDE[name]}"), name)
    raise AttributeError(f"module 'labkit.asyncapi' has no attribute {name!r}")
