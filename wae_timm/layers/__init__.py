"""The WAE's building blocks: the autoencoder and fixed front ends, branch builders, heads, the transform loss."""
from .autoencoder import Decomposition, WaveletLikeAutoEncoder, load_wae_weights, transform_loss
from .auxiliary_loss import attach_auxiliary_loss
from .checks import check_finite, check_image_batch
from .decomposition import DECOMPOSITIONS, create_decomposition
from .heads import BranchClassifier, grid_max_pool
from .width_scaling import UnsupportedBackboneError, create_trunk, create_width_scaled, family_of
