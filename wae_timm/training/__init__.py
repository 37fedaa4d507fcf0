"""Training the WAE models: the three stages of the paper, on one process or many.

- :mod:`.losses`: the stage losses (``paper_loss``, ``autoencoder_loss``);
- :mod:`.loop`: one epoch (``train_one_epoch``) and ``evaluate``;
- :mod:`.fit`: the epoch loop with checkpoints and resume;
- :mod:`.checkpoint`: atomic checkpoints; :mod:`.sampler`: mid-epoch resumable order;
- :mod:`.autoencoder_stage`: stage 1 (``train_autoencoder``, ``save_wae``);
- :mod:`.classifier`: stages 2 and 3 with the paper's loss (``train_classifier``, behind ``wae-timm train``);
- :mod:`.distillation`: knowledge distillation from a full-resolution teacher;
- :mod:`.distributed`: torchrun/DDP; :mod:`.image_data`: image folders and loaders;
- :mod:`.fashion_mnist`: Fashion-MNIST as 3-channel 32x32 model inputs.
"""
from .autoencoder_stage import create_autoencoder_optimizer, save_wae, train_autoencoder
from .checkpoint import SUMMARY_CSV, Checkpointer, TrainState, atomic_write, check_fresh_output, read_train_state
from .fit import fit
from .loop import evaluate, train_one_epoch
from .losses import TrainingForward, autoencoder_loss, model_scores, paper_loss, paper_loss_from_output, unwrap
from .sampler import ResumableSampler
from .fashion_mnist import FASHION_MNIST_CLASSES, FashionMNIST, fashion_mnist_stats
from .distributed import DistributedContext, cleanup_distributed, init_distributed, wrap_ddp
from .image_data import create_eval_loader, create_image_dataset, create_train_loader, paper_crop_transform
from .distillation import create_teacher, distillation_loss_fn, resolve_distillation_weights
