"""`RunConfig`: the one object that describes a run.

A preset, a saved run and a shared link are all the same JSON dict, so the config is a flat
dataclass of plain values. Validation is a small checker driven by the type hints (``Literal`` gives
the allowed values, ``metadata`` the numeric bounds), so every error names the field and what is
allowed, and an invalid config is refused before anything trains. No pydantic: the engine's core
depends on torch and numpy only.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from .options import ConfigError, check_optimizer

DatasetName = Literal[
    "spirals", "circles", "xor", "gaussians", "teacher", "digits", "mnist1d", "mnist", "cifar10", "cifar100"
]
IMAGE_DATASETS = ("digits", "mnist", "cifar10", "cifar100")
VGG_DATASETS = ("cifar10", "cifar100")
VGG13_DEPTH = 10
MAX_WIDTH = 16384
Activation = Literal["tanh", "relu", "sigmoid", "linear"]
Init = Literal["gaussian", "xavier", "kaiming", "orthogonal"]
OptimizerName = Literal["sgd", "adam", "sa_sgd", "proxbp", "sibp"]


def _bounds(lo: float | None = None, hi: float | None = None, *, open_lo: bool = False) -> dict:
    return {"metadata": {"lo": lo, "hi": hi, "open_lo": open_lo}}


@dataclass
class RunConfig:
    """Everything needed to reproduce one training run (see README for the meaning of each field)."""

    name: str = ""
    # data
    dataset: DatasetName = "spirals"
    n_train: int = field(default=1024, **_bounds(1))
    n_test: int = field(default=512, **_bounds(1))
    noise: float = field(default=0.1, **_bounds(0.0))
    data_dir: str | None = None
    # model
    #: "vgg13": VGG13 on 32x32 images (bpviz.models.VGG13_WIDTHS), 10 blocks, width = the first stage's
    arch: Literal["mlp", "cnn", "vgg13"] = "mlp"
    depth: int = field(default=4, **_bounds(1, 100))
    width: int = field(default=32, **_bounds(1, 4096))
    #: an MLP's hidden widths, first to last, where they differ (ProxProp's CIFAR-10 MLP: [4000, 1000,
    #: 4000]); depth must then be their number, and width is not used
    widths: list[int] | None = None
    activation: Activation = "tanh"
    init: Init = "xavier"
    init_std: float = field(default=0.1, **_bounds(0.0, open_lo=True))
    #: "gaussian" draws every bias from N(0, init_std²): with init "gaussian" and init_std 0.05 that is
    #: the SIBP authors' initialisation (``main.m``); "zeros" is the usual one.
    bias_init: Literal["zeros", "gaussian"] = "zeros"
    batch_norm: bool = False
    skip: bool = False
    # optimisation
    optimizer: OptimizerName = "sgd"
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    lr: float = field(default=0.05, **_bounds(0.0, open_lo=True))
    batch_size: int = field(default=64, **_bounds(1))
    steps: int = field(default=1000, **_bounds(1))
    #: the step size over the run: lr throughout; "step": x0.1 after 50% and again after 75% of the
    #: steps (the usual CIFAR recipe); "cosine": lr (1 + cos(pi t / steps)) / 2
    lr_schedule: Literal["constant", "step", "cosine"] = "constant"
    #: each training image randomly shifted (a crop of the image padded by 4) and mirrored left-right
    augment: bool = False
    seed: int = 0
    # execution
    device: str = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    hessian_every: int | Literal["auto"] = "auto"
    num_threads: int | None = field(default=None, **_bounds(1, 256))

    def __post_init__(self) -> None:
        validate(self)

    # --- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a RunConfig is a JSON object, got {type(data).__name__}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown field(s) {unknown}; allowed fields: {', '.join(allowed)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def to_query(self) -> str:
        """The fields that differ from the defaults, as a URL query string (a shareable link)."""
        default = RunConfig()
        changed = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }
        return urllib.parse.urlencode(
            {k: json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v for k, v in changed.items()}
        )

    @classmethod
    def from_query(cls, query: str) -> tuple[RunConfig, list[str]]:
        """Settings from a URL query; every unknown name or bad value is skipped and reported, so a
        mangled link still opens (with defaults where it was wrong)."""
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        ignored: list[str] = []
        for name, raw in urllib.parse.parse_qsl(query.lstrip("?"), keep_blank_values=True):
            if name not in hints:
                ignored.append(f"{name} (unknown setting)")
                continue
            value = _parse_query_value(raw, hints[name])
            try:
                cls(**{**values, name: value})
            except (ConfigError, TypeError) as exc:
                ignored.append(f"{name}={raw} ({exc})")
                continue
            values[name] = value
        return cls(**values), ignored

    def replace(self, **changes: Any) -> RunConfig:
        """A validated copy with some fields changed (unknown names are refused)."""
        return RunConfig.from_dict({**self.to_dict(), **changes})

    @property
    def task(self) -> Literal["classification", "regression"]:
        return "regression" if self.dataset == "teacher" else "classification"


def _parse_query_value(raw: str, tp: Any) -> Any:
    """A query string's text as the field's type where it parses; otherwise the text itself,
    which validation then refuses with the usual message."""
    for kind in (bool, int, float):
        if _accepts(tp, kind):
            try:
                value = json.loads(raw.lower() if kind is bool else raw)
            except ValueError:
                continue
            if _matches(value, tp):
                return value
    if raw in ("null", "None") and _accepts(tp, type(None)):
        return None
    if any(typing.get_origin(t) in (dict, list) for t in (tp, *typing.get_args(tp))):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _accepts(tp: Any, kind: type) -> bool:
    if tp is kind:
        return True
    if typing.get_origin(tp) in (Union, types.UnionType):
        return any(_accepts(a, kind) for a in typing.get_args(tp))
    return False


# --- validation -------------------------------------------------------------------------------
def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if origin is list:
        return isinstance(value, list) and all(_matches(v, typing.get_args(tp)[0]) for v in value)
    return isinstance(value, tp)


def validate(cfg: RunConfig) -> None:
    """Check every field's type, allowed values and bounds, then the rules between fields."""
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        tp = hints[f.name]
        if not _matches(value, tp):
            raise ConfigError(f"{f.name}: got {value!r}; allowed: {_describe(tp)}")
        if tp is float and isinstance(value, int):
            setattr(cfg, f.name, float(value))
            value = float(value)
        lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != value or value in (float("inf"), float("-inf")):
                raise ConfigError(f"{f.name}: got {value!r}; must be a finite number")
            too_low = lo is not None and (value <= lo if f.metadata.get("open_lo") else value < lo)
            if too_low or (hi is not None and value > hi):
                lo_s = "" if lo is None else (f"> {lo}" if f.metadata.get("open_lo") else f">= {lo}")
                hi_s = "" if hi is None else f"<= {hi}"
                raise ConfigError(f"{f.name}: got {value!r}; allowed: {' and '.join(s for s in (lo_s, hi_s) if s)}")
    if isinstance(cfg.hessian_every, int) and cfg.hessian_every < 1:
        raise ConfigError(f"hessian_every: got {cfg.hessian_every!r}; allowed: 'auto' or an integer >= 1")
    if cfg.arch == "cnn" and cfg.dataset not in IMAGE_DATASETS:
        raise ConfigError(
            f"arch: 'cnn' needs an image dataset ({', '.join(IMAGE_DATASETS)}); dataset is {cfg.dataset!r}"
        )
    if cfg.arch == "vgg13" and cfg.dataset not in VGG_DATASETS:
        raise ConfigError(f"arch: 'vgg13' needs 32x32 images ({', '.join(VGG_DATASETS)}); dataset is {cfg.dataset!r}")
    if cfg.arch == "vgg13" and cfg.depth != VGG13_DEPTH:
        raise ConfigError(
            f"depth: arch 'vgg13' has {VGG13_DEPTH} blocks; got depth {cfg.depth}, set it to {VGG13_DEPTH}"
        )
    if cfg.widths is not None:
        if cfg.arch != "mlp":
            raise ConfigError(f"widths: per-layer widths are for arch 'mlp'; arch is {cfg.arch!r}")
        if not cfg.widths or any(not 1 <= w <= MAX_WIDTH for w in cfg.widths):
            raise ConfigError(f"widths: got {cfg.widths!r}; allowed: a non-empty list of integers 1..{MAX_WIDTH}")
        if len(cfg.widths) != cfg.depth:
            raise ConfigError(
                f"depth: widths lists {len(cfg.widths)} hidden layers; got depth {cfg.depth}, "
                f"set it to {len(cfg.widths)}"
            )
    if cfg.augment and cfg.dataset not in IMAGE_DATASETS:
        raise ConfigError(f"augment: crops and flips images ({', '.join(IMAGE_DATASETS)}); dataset is {cfg.dataset!r}")
    if cfg.device != "auto" and cfg.device != "cpu" and not cfg.device.startswith("cuda"):
        raise ConfigError(f"device: got {cfg.device!r}; allowed: 'auto', 'cpu', 'cuda' or 'cuda:N'")
    try:
        json.dumps(cfg.optimizer_options)
    except TypeError as exc:
        raise ConfigError(f"optimizer_options: must hold JSON values only ({exc})") from None
    check_optimizer(cfg.optimizer, cfg.optimizer_options, arch=cfg.arch, batch_norm=cfg.batch_norm, skip=cfg.skip)
