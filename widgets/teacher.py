"""Teacher flags in a link: ``<control>_hide=true`` hides that control, as TensorFlow Playground's
``*_hide`` does, so a class sees only what the lesson is about.

A convenience, not security: a student who edits the URL gets every control back (README says so).
The flags stay in the page's share link, so a link copied from a teacher's page keeps them.
"""

from __future__ import annotations

import urllib.parse

SUFFIX = "_hide"
#: controls a flag may name besides the settings' own: the preset menu, the optimizer's options,
#: the compare and share sections
EXTRA = ("preset", "options", "compare", "share")


def split_flags(query: str, controls: set[str]) -> tuple[str, set[str], list[str]]:
    """The query without its ``*_hide`` flags, the controls to hide, and a note for each flag that
    names no control or has a value other than true/false."""
    kept, hidden, notes = [], set(), []
    allowed = controls | set(EXTRA)
    for name, value in urllib.parse.parse_qsl(query.lstrip("?"), keep_blank_values=True):
        if not name.endswith(SUFFIX):
            kept.append((name, value))
            continue
        control = name[: -len(SUFFIX)]
        if control not in allowed:
            notes.append(f"{name} (no control named {control!r}; allowed: {', '.join(sorted(allowed))})")
        elif value.lower() in ("", "1", "true"):
            hidden.add(control)
        elif value.lower() not in ("0", "false"):
            notes.append(f"{name}={value} (allowed: true or false)")
    return urllib.parse.urlencode(kept), hidden, notes


def flags_query(hidden: set[str]) -> str:
    """The flags as they go back into a share link."""
    return "".join(f"&{name}{SUFFIX}=true" for name in sorted(hidden))
