"""resnetlab: deep residual networks (He et al., 2015), built, trained, studied and shipped."""

from .errors import ResnetlabError
from .models import conv_output_size, count_params, create_model, list_models, register_model, summarize

__version__ = "0.1.0"

__all__ = ["ResnetlabError", "create_model", "list_models", "register_model", "summarize",
           "conv_output_size", "count_params", "__version__"]
