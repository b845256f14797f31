"""rnnlab: measure, explain and fix vanishing and exploding gradients in recurrent networks."""

from rnnlab import init
from rnnlab.clipping import AdaptiveClipper, clip_grad_norm_, clip_grad_value_
from rnnlab.device import default_device
from rnnlab.models import GRU, LSTM, RNN

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "AdaptiveClipper", "clip_grad_norm_", "clip_grad_value_",
           "default_device", "init", "__version__"]
