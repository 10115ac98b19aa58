"""Who may read a document: access groups from config rules and ``<file>.meta.json`` sidecars.

- ``ingest.group_rules``: ``{pattern, groups}``; ``pattern`` is an fnmatch glob matched on
  the path relative to the folder given to ``add``/``sync`` (``hr/*`` covers everything
  under ``hr/``) or on the absolute path. Every matching rule adds its groups.
- A sidecar ``<file>.meta.json`` (``{"groups": [...], "title": ..., "url": ...}``) sets the
  document's groups (replacing the rules'), title and link. Sidecars are metadata, never
  documents.
- A document no rule or sidecar speaks for gets ``ingest.default_groups``.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from ingest.guard import shown
from rag.config import IngestSettings
from rag.errors import IngestError

SIDECAR_SUFFIX = ".meta.json"
_GROUP = re.compile(r"^[\w.:@-]{1,64}$")
_SIDECAR_MAX_BYTES = 64_000


@dataclass(frozen=True, slots=True)
class DocMeta:
    groups: tuple[str, ...]
    title: str = ""
    url: str = ""

    def key(self) -> str:
        """A stable text of everything here: part of a document's version."""
        return json.dumps([list(self.groups), self.title, self.url], ensure_ascii=False)


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _valid_groups(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise IngestError(f'{where}: "groups" must be a non-empty list of group names.')
    for group in value:
        if not isinstance(group, str) or not _GROUP.match(group):
            raise IngestError(
                f"{where}: group {group!r} is not a valid name (letters, digits, _ . : @ -, "
                "up to 64 characters). Fix the sidecar file."
            )
    return tuple(dict.fromkeys(value))


def _read_sidecar(path: Path) -> dict[str, Any]:
    where = shown(path.name)
    try:
        if path.stat().st_size > _SIDECAR_MAX_BYTES:
            raise IngestError(f"{where}: sidecar larger than 64 KB. Keep only metadata in it.")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IngestError(
            f"{where}: the sidecar is not valid UTF-8 JSON ({exc}). Fix it: "
            '{"groups": ["hr"], "title": "...", "url": "..."}.'
        ) from exc
    if not isinstance(data, dict):
        raise IngestError(f"{where}: the sidecar must hold a JSON object.")
    unknown = set(data) - {"groups", "title", "url"}
    if unknown:
        raise IngestError(
            f"{where}: unknown sidecar keys {sorted(unknown)}; allowed: groups, title, url."
        )
    return data


def _rule_groups(path: Path, root: Path | None, settings: IngestSettings) -> list[str]:
    candidates = [path.resolve().as_posix()]
    if root is not None:
        with contextlib.suppress(ValueError):
            candidates.insert(0, path.relative_to(root).as_posix())
    groups: list[str] = []
    for rule in settings.group_rules:
        if any(fnmatchcase(c, rule.pattern) for c in candidates):
            groups += rule.groups
    return groups


def rule_groups(path: Path, settings: IngestSettings) -> tuple[str, ...]:
    """The groups the rules (or, when none matches, ``default_groups``) give ``path``,
    without a sidecar: what an upload without explicit groups would get."""
    groups = _rule_groups(path, None, settings) or list(settings.default_groups)
    return tuple(dict.fromkeys(groups))


def resolve_meta(path: Path, root: Path | None, settings: IngestSettings) -> DocMeta:
    """Groups, title and link of a document (raises :class:`IngestError` on a bad sidecar)."""
    groups = _rule_groups(path, root, settings)
    title = url = ""
    sidecar = sidecar_of(path)
    if sidecar.is_file():
        data = _read_sidecar(sidecar)
        where = shown(sidecar.name)
        if "groups" in data:
            groups = list(_valid_groups(data["groups"], where))
        title = str(data.get("title") or "")[:300]
        url = str(data.get("url") or "")[:2000]
    if not groups:
        groups = list(settings.default_groups)
    return DocMeta(tuple(dict.fromkeys(groups)), title, url)
