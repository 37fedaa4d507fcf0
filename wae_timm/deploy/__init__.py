"""Deployment: inference fast paths that leave what a model computes unchanged."""
from .inference import BACKENDS, prepare_for_inference
