"""wae-timm: the Wavelet-like Auto-Encoder (Chen et al., AAAI 2018) as a timm model family.

Importing this package registers the ``wae_*`` models and the paper's baselines
(see :mod:`wae_timm.baselines`) in timm's registry.
"""
from .autoencoder import Decomposition, WaveletLikeAutoEncoder, transform_loss
from .width_scaling import UnsupportedBackboneError, create_width_scaled, family_of
from .checks import check_finite, check_image_batch
from .wrapper import WAEOutput, WAEWrapper
from . import models  # registers the wae_* entrypoints with timm
from . import baselines  # registers the paper's baselines (wavelet_cnn_*, half_res_*, ...)

__version__ = '0.1.0'
