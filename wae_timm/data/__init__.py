"""Data: real images that install offline, and the loaders the trainers read them through.

- :mod:`.photographs`: Debian's wallpaper photographs (stage-1 crops, held-out evaluation);
- :mod:`.fashion_mnist`: the real 60k/10k Fashion-MNIST split as 3-channel 32x32 model inputs;
- :mod:`.image_folder`: image folders with timm's transforms, and the loaders;
- :mod:`.sampler`: a reproducible, mid-epoch resumable sample order.
"""
from .fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, FashionMNIST, fashion_mnist_stats, \
    load_fashion_mnist
from .image_folder import create_eval_loader, create_image_dataset, create_train_loader, dataset_class_to_idx, \
    paper_crop_transform
from .photographs import PHOTOGRAPH_DIRS, find_photographs
from .sampler import ResumableSampler
