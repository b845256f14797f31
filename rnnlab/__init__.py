"""rnnlab: measure, explain and fix vanishing and exploding gradients in recurrent networks."""

from rnnlab.device import default_device
from rnnlab.models import GRU, LSTM, RNN

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "default_device", "__version__"]
