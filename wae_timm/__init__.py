"""wae-timm: the Wavelet-like Auto-Encoder (Chen et al., AAAI 2018) as a timm model family.

Importing this package registers the ``wae_*`` models and the paper's baselines
(see :mod:`wae_timm.models`) in timm's registry. See docs/ARCHITECTURE.md for
which sub-package owns what.
"""
from .layers import Decomposition, UnsupportedBackboneError, WaveletLikeAutoEncoder, check_finite, \
    check_image_batch, create_width_scaled, family_of, transform_loss
from .models import WAEOutput, WAEWrapper  # importing the models registers them with timm
from .deploy import prepare_for_inference

__version__ = '0.1.0'
