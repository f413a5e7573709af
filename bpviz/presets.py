"""Named runs that show the papers' points at CPU-friendly scale (seconds each on a 2-core CPU).

Each preset is a plain :class:`~bpviz.config.RunConfig` whose ``name`` is the preset name, so the
command line (``--preset NAME``), the UI menu and a saved run all speak the same JSON. They come in
pairs or groups that differ in one field, so that the difference in the loss curves is that field's:

* ``deep-tanh-*``: a 16-block tanh MLP on digits, identical except for how it is initialised or
  built. With a small Gaussian init (std 0.1, gain 0.1·√32 ≈ 0.57 per block) the forward signal and
  the back-propagated gradient shrink by ~0.57¹⁶ ≈ 10⁻⁴, and SGD stays at chance loss; an
  orthogonal init, batch norm or skip connections each fix it.
* ``sgd-bn`` / ``sa-sgd-bn``: the same BN CNN with momentum at a large learning rate (3). SA-SGD in its
  default form (sigma^2/gamma^2 on the weights followed by BN) does *not* keep it on track: it ends
  worse than SGD on 3 or 4 of 5 seeds (by the CPU's rounding). The all-tensor variant (``amend="all"``)
  beats SGD on 4 or 5, but mostly by cutting the head's learning rate: the head's scale alone
  (``amend="head"``) does better still, on every seed (notebook 03, docs/results.md).
* ``sgd-large-step`` / ``sibp-large-step``: the same ReLU MLP at step size 3; SGD falls back to
  chance loss, SIBP's implicit parameter update trains (docs/results.md, sweep on digits).
* ``spirals-relu`` / ``spirals-linear``: the same 3x64 MLP on the two spirals, for the decision-boundary
  panel. With ReLU the regions bend until they follow the spiral arms; without an activation the
  network is a linear map, so its boundary stays a straight line and accuracy stays near 60 %.

Measured final train losses (CPU, seeds 0-2) are in the comments next to each group below.
"""

from __future__ import annotations

from .config import ConfigError, RunConfig

# digits has 1797 images; the same split as the comparisons in docs/results.md
_DIGITS = dict(dataset="digits", n_train=1400, n_test=397, device="auto")

# 16 tanh blocks x 32, SGD lr 0.1, batch 64, 1000 steps (~2-5 s on one CPU thread).
# Final train loss, seeds 0/1/2: gaussian 2.302/2.302/2.302 (chance), orthogonal 0.005/0.005/0.005,
# batch norm 0.021/0.011/0.020, skip 0.002/0.001/0.001.
_DEEP_TANH = RunConfig(
    **_DIGITS,
    depth=16,
    width=32,
    activation="tanh",
    init="gaussian",
    init_std=0.1,
    optimizer="sgd",
    lr=0.1,
    batch_size=64,
    steps=1000,
)

# 4 BN-ReLU conv blocks x 16 channels, momentum 0.9, lr 3, batch 64, 400 steps (~3 s).
# Final train loss, seeds 0-4 (one CPU thread): SGD 0.089/0.82/0.11/0.082/0.27; SA-SGD amend="bn_weights"
# (the default) 0.35/0.59/0.17/0.28/0.32, amend="all" 0.025/0.054/0.042/0.078/0.17, amend="head"
# 0.0019/0.0035/0.022/0.046/0.011.
_BN_NET = RunConfig(
    **_DIGITS,
    arch="cnn",
    depth=4,
    width=16,
    activation="relu",
    init="kaiming",
    batch_norm=True,
    optimizer="sgd",
    optimizer_options={"momentum": 0.9},
    lr=3.0,
    batch_size=64,
    steps=400,
)

# 2 ReLU blocks x 128, Kaiming, batch 100, step size 3, 300 steps (~1-3 s).
# Final train loss (seed 0): SGD 2.31 (chance), SIBP ~1e-5.
_LARGE_STEP = RunConfig(
    **_DIGITS, depth=2, width=128, activation="relu", init="kaiming", lr=3.0, batch_size=100, steps=300
)

# 3 blocks x 64, Kaiming, plain SGD lr 0.15, batch 64, 1000 steps (~0.7 s on one CPU thread). Measured
# (seeds 0/1/2) with bpviz.train.run(get_preset(name).replace(seed=s, device="cpu"), eval_every=100):
# relu: train loss 0.041/0.041/0.031, train accuracy 0.989/0.988/0.988 (test 0.978/0.988/0.988); it is
# 0.60-0.87 at steps 100-500 and first reaches 0.98 at step 600-900, so the boundary has a story to tell.
# linear: train loss 0.660/0.660/0.660, train accuracy 0.633/0.613/0.608 (test 0.614/0.640/0.620).
_SPIRALS = RunConfig(
    dataset="spirals",
    n_train=1000,
    n_test=500,
    noise=0.1,
    device="auto",
    depth=3,
    width=64,
    activation="relu",
    init="kaiming",
    optimizer="sgd",
    lr=0.15,
    batch_size=64,
    steps=1000,
)

_PRESETS: list[tuple[str, RunConfig, str]] = [
    (
        "deep-tanh-gaussian",
        _DEEP_TANH,
        "16x32 tanh MLP, small Gaussian init (std 0.1): signals and gradients vanish, SGD stays at chance",
    ),
    (
        "deep-tanh-orthogonal",
        _DEEP_TANH.replace(init="orthogonal"),
        "the same net with an orthogonal init: norms are kept through the depth and SGD trains",
    ),
    (
        "deep-tanh-bn",
        _DEEP_TANH.replace(batch_norm=True),
        "the same net (Gaussian init) with batch norm in every block: BN rescales the signal and SGD trains",
    ),
    (
        "deep-tanh-skip",
        _DEEP_TANH.replace(skip=True),
        "the same net (Gaussian init) with skip connections: the identity path carries the gradient",
    ),
    ("sgd-bn", _BN_NET, "BN-ReLU CNN 4x16, SGD with momentum at lr 3: trains, but jumps about"),
    (
        "sa-sgd-bn",
        _BN_NET.replace(optimizer="sa_sgd"),
        "the same BN CNN with SA-SGD (σ²/γ² on the BN weights): no better than SGD at lr 3 (see notebook 03)",
    ),
    (
        "sgd-large-step",
        _LARGE_STEP.replace(optimizer="sgd"),
        "ReLU MLP 2x128 with SGD at lr 3: too large a step, the loss falls back to chance",
    ),
    (
        "sibp-large-step",
        _LARGE_STEP.replace(optimizer="sibp"),
        "the same net with semi-implicit BP at step size 3: the implicit update trains",
    ),
    (
        "spirals-relu",
        _SPIRALS,
        "ReLU MLP 3x64 on the two spirals, SGD: the decision boundary bends to follow the arms (99 % train acc.)",
    ),
    (
        "spirals-linear",
        _SPIRALS.replace(activation="linear"),
        "the same net with no activation: a linear map, so the boundary stays a straight line (~60 % acc.)",
    ),
]

#: preset name -> its RunConfig (``name`` set to the preset name)
PRESETS: dict[str, RunConfig] = {name: cfg.replace(name=name) for name, cfg, _ in _PRESETS}
#: preset name -> one-line description (for ``--help`` and the UI menu)
DESCRIPTIONS: dict[str, str] = {name: text for name, _, text in _PRESETS}


def get_preset(name: str) -> RunConfig:
    """The preset ``name`` (a fresh copy: changing it does not change the preset)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; available presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name].replace()


def describe_presets() -> list[tuple[str, str]]:
    """(name, one-line description) for every preset, in menu order."""
    return [(name, DESCRIPTIONS[name]) for name in PRESETS]
