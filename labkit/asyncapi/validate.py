"""Check AsyncAPI documents with the AsyncAPI project's own parser (``@asyncapi/parser`` 3.x, on Node).

labkit does not re-implement the specification's rules: :func:`official_validate`
hands the document to ``validate.mjs`` (shipped beside this module), which
runs the official JavaScript parser and prints its diagnostics as JSON.
The parser lives in a project-local npm prefix, ``.node/`` at the root of
the checkout (``make node-tools`` installs it: ``npm install --prefix .node
@asyncapi/parser@3``); set ``LABKIT_NODE_DIR`` to use another prefix.

Only errors are returned (the parser's severity 0); warnings, information
and hints (such as "a newer AsyncAPI version exists") are logged at debug
level and left out.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LabkitError, LabkitTimeout

__all__ = ["official_validate", "official_validate_many", "validator_available", "node_dir", "ValidatorUnavailable",
           "INSTALL_HINT"]

log = logging.getLogger(__name__)

#: The script that runs the official parser (package data).
SCRIPT = Path(__file__).with_name("validate.mjs")
#: How the parser is installed (printed by every "not available" message).
INSTALL_HINT = "run `make node-tools` (or: npm install --prefix .node @asyncapi/parser@3) at the labkit checkout"
#: Longest one validation may take (s); Node and the parser start in ~1 s.
TIMEOUT_S = 60.0
_ERROR = 0  # Spectral's severity scale: 0 error, 1 warning, 2 information, 3 hint
_PARSER = Path("node_modules") / "@asyncapi" / "parser" / "package.json"


class ValidatorUnavailable(LabkitError):
    """Node or ``@asyncapi/parser`` is missing, so documents cannot be checked."""


def node_dir() -> Path | None:
    """The npm prefix holding ``@asyncapi/parser``: ``$LABKIT_NODE_DIR``, the checkout's ``.node/`` or ``./.node``."""
    env = os.environ.get("LABKIT_NODE_DIR")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / ".node", Path.cwd() / ".node"]
    for candidate in candidates:
        if (candidate / _PARSER).is_file():
            return candidate
    return None


def validator_available() -> str | None:
    """``None`` if the official parser can run here, else one line: what is missing and how to install it."""
    if shutil.which("node") is None:
        return "Node.js is not installed (no `node` on PATH); install Node >= 18 (e.g. apt-get install nodejs npm), " \
               f"then {INSTALL_HINT}"
    if not SCRIPT.is_file():
        return f"the validator script {SCRIPT} is missing from the labkit package; reinstall labkit (pip install -e .)"
    found = node_dir()
    if found is None:
        where = os.environ.get("LABKIT_NODE_DIR") or str(Path(__file__).resolve().parents[2] / ".node")
        return f"@asyncapi/parser is not installed in {where}; {INSTALL_HINT}"
    try:
        installed = str(json.loads((found / _PARSER).read_text(encoding="utf-8")).get("version", ""))
    except (OSError, ValueError):
        installed = ""
    if not installed.startswith("3."):
        return f"{found} holds @asyncapi/parser {installed or '(unknown version)'}, labkit needs 3.x; {INSTALL_HINT}"
    return None


def _run(payload: Any, many: bool, timeout_s: float) -> Any:
    reason = validator_available()
    if reason is not None:
        raise ValidatorUnavailable(reason)
    args = ["node", str(SCRIPT), str(node_dir())] + (["--many"] if many else [])
    try:
        done = subprocess.run(args, input=json.dumps(payload).encode(), capture_output=True, timeout=timeout_s,
                              check=False)
    except subprocess.TimeoutExpired:
        raise LabkitTimeout(f"the AsyncAPI parser did not answer within {timeout_s:g} s; "
                            "pass a larger timeout_s or check `node --version` works") from None
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise ValidatorUnavailable(f"the AsyncAPI parser failed (exit {done.returncode}: "
                                   f"{detail[-1] if detail else 'no message'}); {INSTALL_HINT}")
    return json.loads(done.stdout)


def _pointer(path: list[str]) -> str:
    """A JSON pointer (``/channels/telemetry/address``) from the parser's path segments."""
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path) if path else "/"


def _errors(diagnostics: list[dict[str, Any]]) -> list[str]:
    out = []
    for d in diagnostics:
        line = f"{_pointer(d.get('path', []))}: {d.get('message', '')} [{d.get('code', '')}]"
        if d.get("severity") == _ERROR:
            out.append(line)
        else:
            log.debug("asyncapi parser (severity %s): %s", d.get("severity"), line)
    return out


def _check(document: Any) -> None:
    if not isinstance(document, dict):
        raise ConfigError(f"document must be a dict (an AsyncAPI document), not {type(document).__name__}")


def official_validate(document: dict, timeout_s: float = TIMEOUT_S) -> list[str]:
    """The official parser's errors for ``document``: ``[]`` if valid, else one ``"/json/pointer: message [rule]"``
    line per error.

    Raises ``ValidatorUnavailable`` (a :class:`~labkit.errors.LabkitError`)
    when Node or the parser is missing (:func:`validator_available` says
    why), and :class:`~labkit.errors.LabkitTimeout` past ``timeout_s`` (s).
    """
    _check(document)
    return _errors(_run(document, False, timeout_s))


def official_validate_many(documents: list[dict], timeout_s: float = TIMEOUT_S) -> list[list[str]]:
    """:func:`official_validate` for several documents in one Node process (faster: Node starts once)."""
    for document in documents:
        _check(document)
    return [_errors(diagnostics) for diagnostics in _run(list(documents), True, timeout_s)]
