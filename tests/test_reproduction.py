"""The Fashion-MNIST reproduction: noise of the requested variance, and the whole pipeline on a tiny subset."""
import csv
import gzip

import pytest
import torch

from wae_timm.data import FASHION_MNIST_DIR, load_fashion_mnist
from wae_timm.experiments.noise import NOISE_VARIANCES, NoisyTestSet, add_gaussian_noise
from wae_timm.experiments.reproduction import RESULT_FILES, run_reproduction
from wae_timm.experiments.reproduction_setup import ROWS, ReproductionConfig

needs_fashion_mnist = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / 't10k-images-idx3-ubyte.gz').is_file(),
    reason='Fashion-MNIST not installed: run tools/setup.sh')


@pytest.mark.parametrize('variance', [0.01, 0.05, 0.1])
def test_noise_has_the_requested_variance(variance):
    images = torch.full((64, 1, 64, 64), 0.5)
    noisy = add_gaussian_noise(images, variance, torch.Generator().manual_seed(0))
    added = noisy - images
    assert added.mean().abs() < 0.005
    assert added.var().item() == pytest.approx(variance, rel=0.02)
    assert torch.equal(images, torch.full_like(images, 0.5)), 'the input must not be modified'


def test_noise_clip_and_zero_variance():
    images = torch.rand(8, 1, 32, 32)
    assert torch.equal(add_gaussian_noise(images, 0.), images)
    clipped = add_gaussian_noise(images, 0.1, torch.Generator().manual_seed(0), clip=True)
    assert clipped.min() >= 0 and clipped.max() <= 1
    unclipped = add_gaussian_noise(images, 0.1, torch.Generator().manual_seed(0))
    assert unclipped.min() < 0 and unclipped.max() > 1
    with pytest.raises(ValueError, match='variance'):
        add_gaussian_noise(images, -0.1)


@needs_fashion_mnist
def test_fashion_mnist_tensors_are_the_idx_files_bytes(tmp_path):
    """torchvision reads the decompressed Debian files: pixels and labels are the bytes after each IDX header."""
    images, labels = load_fashion_mnist('test', cache_dir=tmp_path)
    assert images.dtype == torch.uint8 and images.shape == (10000, 28, 28)
    assert labels.dtype == torch.int64 and labels.shape == (10000,)
    with gzip.open(FASHION_MNIST_DIR / 't10k-images-idx3-ubyte.gz') as f:
        assert images.numpy().tobytes() == f.read()[16:]  # magic + 3 dimensions
    with gzip.open(FASHION_MNIST_DIR / 't10k-labels-idx1-ubyte.gz') as f:
        assert labels.to(torch.uint8).numpy().tobytes() == f.read()[8:]  # magic + 1 dimension
    raw = tmp_path / 'FashionMNIST' / 'raw'
    assert sorted(p.name for p in raw.iterdir()) == sorted(  # all four decompressed, no scratch left behind
        f'{s}-{k}' for s in ('train', 't10k') for k in ('images-idx3-ubyte', 'labels-idx1-ubyte'))
    again, _ = load_fashion_mnist('test', cache_dir=tmp_path)  # from the decompressed files
    assert torch.equal(again, images)


@needs_fashion_mnist
def test_noisy_test_set_is_repeatable_and_normalised_after_noise():
    from wae_timm.data import FashionMNIST
    dataset = FashionMNIST('test', normalize=False, indices=range(40))
    noisy = NoisyTestSet(dataset, 0.05, batch_size=16, seed=3)
    first, second = list(noisy), list(noisy)
    assert len(first) == len(noisy) == 3
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, second)), 'every model must see the same noise'
    x, y = first[0]
    assert x.shape == (16, 3, 32, 32) and torch.equal(y, dataset.labels[:16])
    assert torch.equal(x[:, 0], x[:, 1]), 'one noise value per grey pixel, shared by the 3 channels'
    grey = x[:, :1] * dataset.std + dataset.mean  # back to [0, 1] + noise
    added = grey - dataset.images[:16].unsqueeze(1).float() / 255.
    assert added.var().item() == pytest.approx(0.05, rel=0.05)


@needs_fashion_mnist
def test_pipeline_end_to_end_on_a_tiny_subset(tmp_path):
    # a narrow ResNet-18 keeps the nine trainings fast; the pipeline does not depend on the width
    config = ReproductionConfig(backbone_kwargs=dict(channels=(8, 16, 32, 64)), train_images=32, test_images=16,
                                batch_size=32, wae_batch_size=32, latency_batch=2, latency_repeats=1)
    results, checkpoints = tmp_path / 'results', tmp_path / 'ckpt'
    summary = run_reproduction(config, results, checkpoints, command='test', progress=False, figure_images=1)

    with open(results / RESULT_FILES['results']) as f:
        records = list(csv.DictReader(f))
    assert [r['key'] for r in records] == [r.key for r in ROWS]
    for column in ('top1', 'top5', 'gflops', 'latency_ms', 'params_m', 'train_images', 'checkpoint'):
        assert column in records[0]
    for record in records:
        assert 0 <= float(record['top1']) <= float(record['top5']) <= 100
        assert int(record['train_images']) == 32
        assert float(record['gflops']) > 0 and float(record['latency_ms']) > 0
    gflops = {r['key']: float(r['gflops']) for r in records}
    assert gflops['resize'] < gflops['backbone'] and gflops['resize'] < gflops['wae_stage3']

    with open(results / RESULT_FILES['noise']) as f:
        noise = list(csv.DictReader(f))
    noisy_rows = [r.key for r in ROWS if r.noise]
    assert [(n['key'], float(n['variance'])) for n in noise] == [(k, v) for k in noisy_rows for v in NOISE_VARIANCES]

    markdown = (results / RESULT_FILES['markdown']).read_text()
    for table in ('Table 2', 'Table 3', 'Table 4', 'Table 7'):
        assert table in markdown
    assert (results / RESULT_FILES['figure']).stat().st_size > 0
    for path in summary['checkpoints'].values():
        assert path.endswith('.safetensors')
    from safetensors.torch import load_file
    from wae_timm import WAEWrapper
    model = WAEWrapper('resnet18', num_classes=10, backbone_kwargs=config.backbone_kwargs)
    model.load_state_dict(load_file(summary['checkpoints']['wae_stage3']))
    # stage 3 changed the WAE, the control did not
    stage2 = load_file(summary['checkpoints']['wae_stage2'])
    stage3 = load_file(summary['checkpoints']['wae_stage3'])
    control = load_file(summary['checkpoints']['wae_stage2_longer'])
    assert not torch.equal(stage2['wae.stem.0.weight'], stage3['wae.stem.0.weight'])
    assert torch.equal(stage2['wae.stem.0.weight'], control['wae.stem.0.weight'])

    with pytest.raises(FileExistsError, match='overwrite'):
        run_reproduction(config, results, checkpoints, progress=False)
