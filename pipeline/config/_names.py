"""Study names: paths are built from them, so they stay one plain path component."""

from __future__ import annotations

MAX_STUDY_NAME = 512  # Optuna's RDB schema: studies.study_name is VARCHAR(512)


def study_name_problem(name: str) -> str | None:
    """What is wrong with a study name, or None. Paths are built from it (``reports/<name>``),
    so it holds no path separator and no ``..``: nothing built from it leaves its folder."""
    if not name.strip():
        return "must not be empty"
    if any(ord(c) < 32 for c in name):
        return "must not hold control characters (a newline, a NUL...)"
    if len(name) > MAX_STUDY_NAME:
        return f"is {len(name)} characters long; storages keep at most {MAX_STUDY_NAME}"
    if "/" in name or "\\" in name or ".." in name:
        return f"{name!r} holds a path separator or '..'; paths are built from it (reports/<name>)"
    return None


__all__ = ["MAX_STUDY_NAME", "study_name_problem"]
