"""The settings controls, generated from ``RunConfig``'s fields and the optimizers' ``Option`` declarations.

A field's type hint gives its control (``Literal`` a menu of its values, ``bool`` a checkbox, ``int``
and ``float`` a number box with the field's bounds from its metadata), so the page offers what the
config accepts and nothing is typed twice. The few fields that need another widget are overrides;
the fields the page must not set are listed. The controls only show a config and report edits:
the app owns the config.
"""

from __future__ import annotations

import dataclasses
import threading
import typing
from collections.abc import Callable
from typing import Any, Literal

import ipywidgets as W

from bpviz.config import RunConfig
from bpviz.loop import MIN_REPORTS, REPORT_SHARE
from bpviz.optim import ALGORITHMS, Option

#: fields the page may not set: they name files or machine resources
SERVER_ONLY = ("data_dir", "device", "num_threads")
#: fields without a control of their own: a preset's name (any edit clears it), the optimizer's
#: options (one control per declared option, under the optimizer's menu), and per-layer widths
#: (paper-scale MLPs from `bpviz reproduce`; a link may carry them, the page shows depth)
WITHOUT_CONTROL = ("name", "optimizer_options", "widths")
#: fields shown in the folded "more settings" section
FOLDED = ("n_train", "n_test", "noise", "bias_init", "lr_schedule", "augment", "dtype")
#: menu choices the page cannot use: these datasets are read from data_dir, which only the server sets,
#: and VGG13 trains on them only (``bpviz reproduce`` runs it)
UNAVAILABLE = {"dataset": ("mnist", "cifar10", "cifar100"), "arch": ("vgg13",)}
#: a control's CSS class is ``bpviz-<name>``; the page and its tests use these shorter ones
CSS = {"batch_norm": "bn", "batch_size": "batch", "hessian_every": "hessian"}
LABELS = {
    "arch": "network",
    "batch_norm": "batch norm",
    "skip": "skip connections",
    "lr": "step size",
    "batch_size": "batch",
    "hessian_every": "Hessian",
    "lr_schedule": "step-size schedule",
    "augment": "augment images",
}
#: optimizer options as the page names them (the hover shows the option's own help and its name)
OPTION_LABELS = {
    "weight_decay": "weight decay",
    "beta1": "β₁ (mean decay)",
    "beta2": "β₂ (variance decay)",
    "eps": "ε",
    "amend": "amend which",
    "granularity": "one scale per",
    "statistics": "statistics",
    "ema": "EMA momentum",
    "normalize": "normalise scales",
    "refresh_every": "refresh every",
    "tau": "τ (z step)",
    "cg_iters": "CG iterations",
    "lam": "λ (prox weight)",
    "fr_iters": "FR iterations",
    "armijo_rho": "Armijo ρ",
    "armijo_sigma": "Armijo σ",
    "inner_iters": "GN iterations",
}
STYLE = {"description_width": "90px"}
UNBOUNDED = 10**9  # a number box's limit where the config sets none (the widget needs one)


def server_defaults() -> dict[str, Any]:
    """The server-only fields as the page's runs have them."""
    return {name: getattr(RunConfig(), name) for name in SERVER_ONLY}


def from_link(query: str) -> tuple[RunConfig, list[str]]:
    """The settings a link asks for, less those the page may not set; and what was ignored, why."""
    cfg, ignored = RunConfig.from_query(query)
    if "steps=" not in query:  # a live run should last long enough to play with
        cfg = cfg.replace(steps=20000)
    server = server_defaults()
    ignored += [
        f"{name} (set by the server, not the page)" for name in SERVER_ONLY if getattr(cfg, name) != server[name]
    ]
    return cfg.replace(**server), ignored


def tag(widget: W.Widget, name: str) -> W.Widget:
    """Give the widget the CSS class the page and the browser tests find it by."""
    widget.add_class(f"bpviz-{name}")
    return widget


def _lr_slider(description: str) -> W.Widget:
    """A log slider: step sizes worth trying span five decades."""
    return W.FloatLogSlider(
        base=10,
        min=-4,
        max=1,
        step=0.25,
        description=description,
        readout_format=".2e",
        continuous_update=False,
        style=STYLE,
    )


#: what "auto" does, in the menu and its tooltip: the front-loaded reports come whatever they cost
AUTO_LABEL = f"auto ({MIN_REPORTS} early + ≤{REPORT_SHARE:.0%} of time)"
AUTO_TIP = (
    f"auto: a report of the starting network and {MIN_REPORTS} more, most of them early in the run, whatever "
    f"they cost (a deep BN net's take seconds each: most of a short run), and between them a report whenever "
    f"reports have taken at most {REPORT_SHARE:.0%} of the time"
)


def _hessian_menu(description: str) -> W.Widget:
    """The usual report cadences; any other valid one (from a link) is added to the menu when shown."""
    return W.Dropdown(
        options=[(AUTO_LABEL, "auto"), ("every step", 1), ("every 10", 10), ("every 100", 100)],
        description=description,
        style=STYLE,
        tooltip=AUTO_TIP,
    )


OVERRIDES: dict[str, Callable[[str], W.Widget]] = {"lr": _lr_slider, "hessian_every": _hessian_menu}
#: a control's value as the config takes it: the log slider's 0.0316227766... reads as 0.0316
FROM_PAGE: dict[str, Callable[[Any], Any]] = {"lr": lambda value: float(f"{value:.3g}")}


def _from_page(name: str, value: Any) -> Any:
    return FROM_PAGE[name](value) if name in FROM_PAGE else value


def page_fields() -> list[dataclasses.Field]:
    """The fields that get a control, in the config's order."""
    return [f for f in dataclasses.fields(RunConfig) if f.name not in SERVER_ONLY + WITHOUT_CONTROL]


def field_control(f: dataclasses.Field, hint: Any) -> W.Widget:
    """A control for one config field, from its type hint and bounds (or its override)."""
    description = LABELS.get(f.name, f.name.replace("_", " "))
    if f.name in OVERRIDES:
        return OVERRIDES[f.name](description)
    if typing.get_origin(hint) is Literal:
        choices = [c for c in typing.get_args(hint) if c not in UNAVAILABLE.get(f.name, ())]
        return W.Dropdown(options=choices, description=description, style=STYLE)
    if hint is bool:
        return W.Checkbox(description=description, indent=False)
    if hint in (int, float):
        lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
        if lo is None and hi is None:
            return (W.IntText if hint is int else W.FloatText)(description=description, style=STYLE)
        # an open bound (lr > 0) is left to the config, which refuses 0 with a message naming the field
        return (W.BoundedIntText if hint is int else W.BoundedFloatText)(
            min=-UNBOUNDED if lo is None else lo,
            max=UNBOUNDED if hi is None else hi,
            description=description,
            style=STYLE,
        )
    raise TypeError(
        f"RunConfig.{f.name} ({hint}) has no control: add an override, or list it in SERVER_ONLY or WITHOUT_CONTROL"
    )


def option_widget(name: str, option: Option, value: Any) -> W.Widget:
    """A control for one optimizer option, built from its declaration (type, choices, bounds, help)."""
    common = dict(
        description=OPTION_LABELS.get(name, name),
        description_allow_html=False,
        tooltip=f"{option.help} (option {name})",
        style=STYLE,
        value=value,
    )
    if option.choices is not None:
        return W.Dropdown(options=list(option.choices), **common)
    if isinstance(option.default, bool):
        return W.Checkbox(indent=False, **{k: v for k, v in common.items() if k != "style"})
    if isinstance(option.default, int):
        return W.BoundedIntText(
            min=int(option.lo if option.lo is not None else 0),
            max=int(option.hi if option.hi is not None else 10**6),
            **common,
        )
    return W.FloatText(**common)  # bounds (some strict) are checked by the config, with a message


class ConfigControls:
    """The controls of every field the page may set, and of the chosen optimizer's options.

    ``show`` puts a config into them; a user's edit calls ``on_edit(field, value)`` or
    ``on_option(option, value)`` with the new value, and nothing else: the caller decides what the
    config becomes and shows it. Changes made by ``show`` itself are no edits; the flag saying so is
    per thread, so a user's edit arriving meanwhile on the kernel's thread is not lost."""

    def __init__(self, cfg: RunConfig, on_edit: Callable[[str, Any], None], on_option: Callable[[str, Any], None]):
        self._on_option = on_option
        self._local = threading.local()
        hints = typing.get_type_hints(RunConfig)
        self.widgets = {
            f.name: tag(field_control(f, hints[f.name]), CSS.get(f.name, f.name.replace("_", "-")))
            for f in page_fields()
        }
        self.options_box = tag(W.VBox(layout=W.Layout(margin="0 0 0 20px")), "options")
        self.option_widgets: dict[str, W.Widget] = {}
        self._optimizer: str | None = None
        self._locked: set[str] = set()
        self.show(cfg)
        for name, widget in self.widgets.items():
            widget.observe(
                lambda change, name=name: self._edited(on_edit, name, _from_page(name, change["new"])), names="value"
            )

    def _edited(self, callback: Callable[[str, Any], None], name: str, value: Any) -> None:
        if not getattr(self._local, "showing", False):
            callback(name, value)

    def panel(self) -> list[W.Widget]:
        """The controls in the config's order, the optimizer's options right under its menu, the
        less used fields folded away."""
        out = []
        for name, widget in self.widgets.items():
            if name not in FOLDED:
                out += [widget, self.options_box] if name == "optimizer" else [widget]
        more = W.Accordion(
            children=[W.VBox([self.widgets[n] for n in FOLDED if n in self.widgets])],
            titles=("more settings",),
            selected_index=None,
        )
        more.add_class("bpviz-secondary")  # not in the projector layout
        return out + [more]

    def show(self, cfg: RunConfig) -> None:
        """Make the controls show ``cfg``; only controls that show something else are changed."""
        self._local.showing = True
        try:
            for name, widget in self.widgets.items():
                value = getattr(cfg, name)
                if _from_page(name, widget.value) == value:
                    continue
                if isinstance(widget, W.Dropdown):
                    listed = [o if isinstance(o, tuple) else (str(o), o) for o in widget.options]
                    if value not in [v for _, v in listed]:  # valid, but not in the menu (hessian_every=37)
                        widget.options = listed + [(str(value), value)]
                widget.value = value
            self._show_options(cfg.optimizer, cfg.optimizer_options)
        finally:
            self._local.showing = False

    def lock(self, names: set[str]) -> None:
        """Disable the controls of ``names`` (fields, or "options" for the optimizer's options),
        including option controls made later for another optimizer."""
        self._locked = set(names)
        for name in self._locked & set(self.widgets):
            self.widgets[name].disabled = True
        self._lock_options()

    def _lock_options(self) -> None:
        if "options" in self._locked:
            for widget in self.option_widgets.values():
                widget.disabled = True

    def _show_options(self, optimizer: str, values: dict) -> None:
        """One control per option the optimizer declares, showing ``values`` or the default; a new
        optimizer gets new controls."""
        declared = ALGORITHMS[optimizer].OPTIONS
        if optimizer == self._optimizer:
            for name, widget in self.option_widgets.items():
                widget.value = values.get(name, declared[name].default)
            return
        widgets = {}
        for name, option in declared.items():
            widget = tag(option_widget(name, option, values.get(name, option.default)), f"option-{name}")
            widget.observe(lambda change, name=name: self._edited(self._on_option, name, change["new"]), names="value")
            widgets[name] = widget
        for old in self.option_widgets.values():
            old.close()
        self.option_widgets, self._optimizer = widgets, optimizer
        self.options_box.children = list(widgets.values())
        self._lock_options()
