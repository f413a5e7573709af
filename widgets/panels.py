"""The figure's panels, declared as data: where each sits, its axes, and the series it draws.

``figure.Figure`` builds the plotly figure from the ``PANELS`` a run shows (``when``: the SA-SGD
scales only for SA-SGD, the decision boundary only for 2-D data), two to a row, or one of them alone
and large. A panel's ``per_block`` series get one trace per shown block (``key`` holds ``{block}``),
its ``overlays`` are the earlier runs' series drawn behind the current run's; ``kind`` says what is
not a series of the history: the report's spectra, the decision boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bpviz.config import RunConfig

# Okabe & Ito's colour-blind-safe palette: blue, orange, bluish green, vermillion, reddish purple,
# sky blue, yellow, black
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
TRAIN, TEST = PALETTE[0], PALETTE[1]  # the same colours in both panels
BATCH = PALETTE[5]  # the per-step mini-batch loss: the noisy, light version of the training-split loss


PLANE_DATASETS = ("spirals", "circles", "xor", "gaussians")  # 2-D inputs: a decision boundary to draw


@dataclass(frozen=True)
class Series:
    """One trace of the current run (per shown block if it is a panel's ``per_block``)."""

    name: str
    key: str | None  # the history series ("{block}" filled in); None: the report's spectrum
    colour: str | None = None  # per-block series take their block's colour
    dash: str | None = None


@dataclass(frozen=True)
class Panel:
    title: str
    x_title: str
    y_title: str
    y_type: str = "linear"
    series: tuple[Series, ...] = ()
    per_block: tuple[Series, ...] = ()
    overlays: tuple[str, ...] = ()  # the earlier runs' series drawn here
    y_axis: dict = field(default_factory=dict)
    notes: tuple[dict, ...] = ()  # annotations, positioned in the panel
    explain: str = ""  # one or two plain sentences under the figure: what it shows, good and bad
    empty_range: tuple[float, float] | None = None  # the y range while no series has a point yet
    when: Callable[[RunConfig], bool] = lambda cfg: True  # the runs that show this panel
    kind: str = "steps"  # "steps": series over the steps; "spectrum"; "boundary"
    short: str = ""  # its name in the view menu


PANELS = (
    Panel(
        "loss",
        "step",
        "loss (log)",
        "log",
        series=(
            Series("batch loss", "batch_loss", BATCH),
            Series("train loss", "train_loss", TRAIN),
            Series("test loss", "test_loss", TEST),
        ),
        overlays=("batch loss",),
        short="loss",
        explain="The loss of each step's mini-batch (light, noisy) and, at each evaluation, on the training "
        "and test sets. Good: it falls steadily. Bad: flat at its start (about 2.3 for 10 classes: nothing is "
        "learned) or jumping up (the step is too large).",
    ),
    # accuracy autoranges (0.95-0.98 stays readable) but never past [0, 1], nor to -1..4 while empty
    Panel(
        "accuracy",
        "step",
        "accuracy",
        series=(Series("train accuracy", "train_accuracy", TRAIN), Series("test accuracy", "test_accuracy", TEST)),
        overlays=("test accuracy",),
        y_axis=dict(autorangeoptions=dict(clipmin=0, clipmax=1.02)),
        empty_range=(0.0, 1.02),  # plotly's clip options need data: an empty panel would read -1..4
        short="accuracy",
        explain="The share of training and test samples classified correctly. A test curve well below the "
        "training curve means the network memorises instead of generalising.",
    ),
    # the key above the panels gives the blocks' colours; the note says what the dotted ones are
    Panel(
        "condition number κ of local Hessians",
        "step",
        "κ = λmax/λmin (log)",
        "log",
        per_block=(
            Series("κ input", "cond/input/{block}"),
            Series("κ weight", "cond/weight/{block}", dash="dot"),
        ),
        overlays=("κ input · mean",),
        short="κ",
        notes=(
            dict(
                text="── input   ····· weight",
                x=1,
                y=0,
                xanchor="right",
                yanchor="top",
                yshift=-20,  # below the tick labels, right of the axis title: it hides no curve and no title
                font=dict(size=10, color="#444"),
            ),
        ),
        explain="How hard each block's own matching problem is: κ = λmax/λmin of its local Hessian, with respect "
        "to its input (solid) and its weight (dotted). Near 1: one gradient step fits the block well. Large: no "
        "single step size suits every direction, so back-propagation crawls. △ marks a lower bound (κ ≥).",
    ),
    Panel(
        "gradient norm per block",
        "step",
        "‖∂loss/∂W‖ (log)",
        "log",
        per_block=(Series("grad norm", "grad_norm/{block}"),),
        short="gradient norms",
        explain="The size of each block's weight gradient. Curves many decades apart mean the blocks learn at "
        "very different speeds: the gradient vanishes (or explodes) on its way down the network.",
    ),
    Panel(
        "input-Hessian spectrum now",
        "log10 eigenvalue (0 = ideal, λ = 1)",
        "eigenvalues",
        per_block=(Series("spectrum input", None),),
        overlays=("spectrum input · all blocks",),
        kind="spectrum",
        short="spectrum",
        explain="All eigenvalues of each block's input Hessian now, as a histogram of log10 λ. Ideal: one spike "
        "at 0 (every λ = 1, as orthogonal init gives a linear block). Bad: spread over many decades.",
    ),
    Panel(
        "SA-SGD scale per block",
        "step",
        "scale (log)",
        "log",
        per_block=(Series("scale", "scale/{block}"),),
        when=lambda cfg: cfg.optimizer == "sa_sgd",
        short="SA-SGD scales",
        explain="SA-SGD's gradient factor for each block (1 = plain SGD): how it rebalances the blocks' steps.",
    ),
    Panel(
        "decision boundary",
        "input 1",
        "input 2",
        kind="boundary",
        when=lambda cfg: cfg.dataset in PLANE_DATASETS,
        short="decision boundary",
        explain="The class the network predicts at each point of the plane around the training data (one colour "
        "per class; darker = more confident), with the training points in their class's colour. "
        "Good: the regions take the data's shape (two interleaved spirals). "
        "Bad: one straight cut, or one colour everywhere (nothing learned yet).",
    ),
)
