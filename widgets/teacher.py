"""Teacher flags in a link: ``<control>_hide=true`` hides that control, as TensorFlow Playground's
``*_hide`` does, so a class sees only what the lesson is about; ``<control>_lock=true`` shows it but
keeps it at the link's value (presets, the JSON box and the lesson cannot change it either);
``present=true`` opens the projector layout and ``view=<panel>`` one panel alone, large.

A convenience, not security: a student who edits the URL gets every control back (README says so).
The flags stay in the page's share link, so a link copied from a teacher's page keeps them.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from bpviz.config import RunConfig

from .layout import disable_all

#: a flag's suffix and the PageFlags set it fills
SUFFIXES = {"_hide": "hidden", "_lock": "locked"}
#: controls a flag may name besides the settings' own: the preset menu, the optimizer's options,
#: the lesson, compare and share sections
EXTRA = ("preset", "options", "lesson", "compare", "share")
#: sections a lock disables as a whole (the settings' own controls are locked by the form)
SECTIONS = {"preset", "lesson", "compare", "share"}
TRUE, FALSE = ("", "1", "true"), ("0", "false")


@dataclass
class PageFlags:
    """What a link asks of the page besides the run's settings."""

    hidden: set[str] = field(default_factory=set)
    locked: set[str] = field(default_factory=set)
    present: bool = False
    view: str = ""

    def query(self) -> str:
        """The flags as they go back into a share link."""
        flags = [f"&{name}{suffix}=true" for suffix, kind in SUFFIXES.items() for name in sorted(getattr(self, kind))]
        flags += ["&present=true"] if self.present else []
        flags += [f"&view={urllib.parse.quote(self.view)}"] if self.view else []
        return "".join(flags)


def split_flags(query: str, controls: set[str], views: Collection[str]) -> tuple[str, PageFlags, list[str]]:
    """The query without its page flags, the flags, and a note for each flag that names no control
    or view, or has a value other than true/false."""
    kept, flags, notes = [], PageFlags(), []
    allowed = controls | set(EXTRA)
    for name, value in urllib.parse.parse_qsl(query.lstrip("?"), keep_blank_values=True):
        if name == "view":
            if value in views:
                flags.view = value
            else:
                notes.append(f"view={value} (allowed: {', '.join(views)})")
        elif name == "present" or name.endswith(tuple(SUFFIXES)):
            suffix = next((end for end in SUFFIXES if name.endswith(end)), "")
            control = name[: -len(suffix)] if suffix else ""
            if control and control not in allowed:
                notes.append(f"{name} (no control named {control!r}; allowed: {', '.join(sorted(allowed))})")
            elif value.lower() in TRUE and control:
                getattr(flags, SUFFIXES[suffix]).add(control)
            elif value.lower() in TRUE:
                flags.present = True
            elif value.lower() not in FALSE:
                notes.append(f"{name}={value} (allowed: true or false)")
        else:
            kept.append((name, value))
    return urllib.parse.urlencode(kept), flags, notes


def apply_to_page(flags: PageFlags, hideable: dict[str, Any], form: Any, lesson_load: Any) -> None:
    """Hide what the link hides (not removed, so the widget state still renders them) and disable
    what it locks: a locked control stays readable. The lesson's button loads presets, so a locked
    preset disables it too."""
    for name in flags.hidden:
        hideable[name].layout.display = "none"
    form.lock(flags.locked)
    for name in flags.locked & SECTIONS:
        disable_all(hideable[name])
    if "preset" in flags.locked:
        disable_all(lesson_load)


def locked_fields(flags: PageFlags, settings: Collection[str]) -> set[str]:
    """The config's fields the link locks (the optimizer's options count as one)."""
    return (flags.locked & set(settings)) | ({"optimizer_options"} if "options" in flags.locked else set())


def keep_locked(cfg: RunConfig, current: RunConfig, fields: set[str]) -> tuple[RunConfig, list[str]]:
    """``cfg`` with the locked ``fields`` at their ``current`` values, and the names of those it
    kept. A new optimizer's options would not fit a locked optimizer, so they are kept with it."""
    kept = {n: getattr(current, n) for n in fields if getattr(cfg, n) != getattr(current, n)}
    if "optimizer" in kept:
        kept["optimizer_options"] = current.optimizer_options
    return (cfg.replace(name="", **kept) if kept else cfg), sorted(kept)
