"""The WAE model family and the paper's baselines, registered with timm on import."""
from .wae import PRETRAINED_TAGS, WAE_MODEL_ARGS, WAEOutput, WAEWrapper, build_wrapper, published_tags
from .baselines import BASELINE_BACKBONES, BASELINE_CHANGES, BASELINE_MODEL_ARGS
