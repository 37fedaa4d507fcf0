"""Training the WAE models: the three stages of the paper, on one process or many.

- :mod:`.losses`: the stage losses (``paper_loss``, ``autoencoder_loss``);
- :mod:`.loop`: one epoch (``train_one_epoch``) and ``evaluate``;
- :mod:`.fit`: the epoch loop with checkpoints and resume;
- :mod:`.checkpoint`: atomic checkpoints; :mod:`.sampler`: mid-epoch resumable order;
- :mod:`.autoencoder_stage`: stage 1 (``train_autoencoder``, ``save_wae``);
- :mod:`.fashion_mnist`: Fashion-MNIST as 3-channel 32x32 model inputs.
"""
from .autoencoder_stage import create_autoencoder_optimizer, save_wae, train_autoencoder
from .checkpoint import Checkpointer, TrainState, atomic_write
from .fit import fit
from .loop import evaluate, train_one_epoch
from .losses import TrainingForward, autoencoder_loss, paper_loss, unwrap
from .sampler import ResumableSampler
from .fashion_mnist import FASHION_MNIST_CLASSES, FashionMNIST, fashion_mnist_stats
