"""Training the WAE models: the paper's three stages, on one process or many.

- :mod:`.losses`: the stage losses (``paper_loss``, ``autoencoder_loss``);
- :mod:`.engine`: one epoch, ``evaluate``, and ``fit`` (the epoch loop with checkpoints and resume);
- :mod:`.checkpoint`: atomic checkpoints and fresh-output checks;
- :mod:`.stage1`: stage 1, the WAE alone (``train_autoencoder`` with a named ``Stage1Recipe``, ``save_wae``);
- :mod:`.classifier`: stages 2 and 3 with the paper's loss (``train_classifier``, behind ``wae-timm train``);
- :mod:`.distillation`: knowledge distillation from a full-resolution teacher;
- :mod:`.distributed`: torchrun / DDP.
"""
from .checkpoint import SUMMARY_CSV, Checkpointer, TrainState, check_fresh_output, read_train_state
from .distillation import create_teacher, distillation_loss_fn, resolve_distillation_weights
from .distributed import DistributedContext, TrainingForward, cleanup_distributed, init_distributed, unwrap, wrap_ddp
from .engine import evaluate, fit, train_one_epoch
from .losses import autoencoder_loss, model_scores, paper_loss, paper_loss_from_output
from .stage1 import STAGE1_RECIPES, Stage1Recipe, create_autoencoder_optimizer, resolve_stage1_recipe, save_wae, \
    train_autoencoder
