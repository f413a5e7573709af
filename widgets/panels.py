"""The figure's panels, declared as data: where each sits, its axes, and the series it draws.

``figure.Figure`` builds the plotly figure from ``PANELS``; a panel's ``per_block`` series get one
trace per shown block (``key`` holds ``{block}``), its ``overlays`` are the earlier runs' series
drawn behind the current run's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Okabe & Ito's colour-blind-safe palette: blue, orange, bluish green, vermillion, reddish purple,
# sky blue, yellow, black
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
TRAIN, TEST = PALETTE[0], PALETTE[1]  # the same colours in both panels
BATCH = PALETTE[5]  # the per-step mini-batch loss: the noisy, light version of the training-split loss


@dataclass(frozen=True)
class Series:
    """One trace of the current run (per shown block if it is a panel's ``per_block``)."""

    name: str
    key: str | None  # the history series ("{block}" filled in); None: the report's spectrum
    colour: str | None = None  # per-block series take their block's colour
    dash: str | None = None
    legend: bool = True  # per block: one series per panel lists the blocks


@dataclass(frozen=True)
class Panel:
    title: str
    cell: tuple[int, int]
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


PANELS = (
    Panel(
        "loss",
        (1, 1),
        "step",
        "loss (log)",
        "log",
        series=(
            Series("batch loss", "batch_loss", BATCH),
            Series("train loss", "train_loss", TRAIN),
            Series("test loss", "test_loss", TEST),
        ),
        overlays=("batch loss",),
        explain="The loss of each step's mini-batch (light, noisy) and, at each evaluation, on the training "
        "and test sets. Good: it falls steadily. Bad: flat at its start (about 2.3 for 10 classes: nothing is "
        "learned) or jumping up (the step is too large).",
    ),
    # accuracy autoranges (0.95-0.98 stays readable) but never past [0, 1], nor to -1..4 while empty
    Panel(
        "accuracy",
        (1, 2),
        "step",
        "accuracy",
        series=(Series("train accuracy", "train_accuracy", TRAIN), Series("test accuracy", "test_accuracy", TEST)),
        overlays=("test accuracy",),
        y_axis=dict(autorangeoptions=dict(clipmin=0, clipmax=1.02)),
        empty_range=(0.0, 1.02),  # plotly's clip options need data: an empty panel would read -1..4
        explain="The share of training and test samples classified correctly. A test curve well below the "
        "training curve means the network memorises instead of generalising.",
    ),
    # the legend lists the input-Hessian traces; the note says what the dotted ones are
    Panel(
        "condition number κ of local Hessians",
        (2, 1),
        "step",
        "κ = λmax/λmin>0 (log)",
        "log",
        per_block=(
            Series("κ input", "cond/input/{block}"),
            Series("κ weight", "cond/weight/{block}", dash="dot", legend=False),
        ),
        overlays=("κ input · mean",),
        notes=(
            dict(
                text="── input   ····· weight",
                x=0.01,
                y=0.99,
                xanchor="left",
                yanchor="top",
                font=dict(size=10, color="#444"),
                bgcolor="rgba(255,255,255,0.7)",
            ),
        ),
        explain="How hard each block's own matching problem is: κ = λmax/λmin of its local Hessian, with respect "
        "to its input (solid) and its weight (dotted). Near 1: one gradient step fits the block well. Large: no "
        "single step size suits every direction, so back-propagation crawls. △ marks a lower bound (κ ≥).",
    ),
    Panel(
        "input-Hessian spectrum now",
        (2, 2),
        "log10 eigenvalue (0 = ideal, λ = 1)",
        "number of eigenvalues",
        per_block=(Series("spectrum input", None, legend=False),),
        explain="All eigenvalues of each block's input Hessian now, as a histogram of log10 λ. Ideal: one spike "
        "at 0 (every λ = 1, as orthogonal init gives a linear block). Bad: spread over many decades.",
    ),
    Panel(
        "gradient norm per block",
        (3, 1),
        "step",
        "‖∂loss/∂W‖ (log)",
        "log",
        per_block=(Series("grad norm", "grad_norm/{block}", legend=False),),
        explain="The size of each block's weight gradient. Curves many decades apart mean the blocks learn at "
        "very different speeds: the gradient vanishes (or explodes) on its way down the network.",
    ),
    Panel(
        "SA-SGD scale per block",
        (3, 2),
        "step",
        "scale (log)",
        "log",
        per_block=(Series("scale", "scale/{block}", legend=False),),
        notes=(
            dict(
                text="SA-SGD's scales show<br>when the optimizer is sa_sgd",
                name="sa-sgd-hint",
                x=0.5,
                y=0.5,
                font=dict(size=11, color="#777"),
            ),
        ),
        explain="SA-SGD's gradient factor for each block (1 = plain SGD): how it rebalances the blocks' steps.",
    ),
)
