"""Model registry and the networks: ImageNet and CIFAR ResNets, plain nets, classic nets."""

from .registry import create_model, get_entry, list_models, register_model
from .summary import Summary, conv_output_size, count_params, summarize

__all__ = ["create_model", "get_entry", "list_models", "register_model", "Summary", "summarize",
           "conv_output_size", "count_params"]
