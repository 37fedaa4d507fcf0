"""wae-timm: the Wavelet-like Auto-Encoder (Chen et al., AAAI 2018) as a timm model family.

Importing this package registers the ``wae_*`` models in timm's registry.
"""
from .autoencoder import Decomposition, WaveletLikeAutoEncoder, transform_loss
from .width_scaling import UnsupportedBackboneError, create_width_scaled, family_of
from .checks import check_finite, check_image_batch
from .wrapper import WAEOutput, WAEWrapper
from . import models  # registers the wae_* entrypoints with timm

__version__ = '0.1.0'
