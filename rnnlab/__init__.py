"""rnnlab: measure, explain and fix vanishing and exploding gradients in recurrent networks."""

from rnnlab.device import default_device

__version__ = "0.1.0"

__all__ = ["default_device", "__version__"]
