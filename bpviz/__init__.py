"""bpviz: see, block by block, why back-propagation trains some networks well and others badly.

The engine (this package) needs only torch and numpy; the UI lives in ``bpviz.widgets``.
"""

from .backmatching import back_matching_step, back_matching_targets
from .config import ConfigError, RunConfig
from .hessian_report import local_hessian_report
from .local_hessian import local_hessian_spectrum
from .models import build_model

__all__ = [
    "ConfigError",
    "RunConfig",
    "back_matching_step",
    "back_matching_targets",
    "build_model",
    "local_hessian_report",
    "local_hessian_spectrum",
]
__version__ = "0.1.0"
