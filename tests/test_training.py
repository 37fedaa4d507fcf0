"""The training library: the paper's losses, stage 1, the epoch loop, checkpoints and resume."""
import dataclasses

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

import wae_timm  # noqa: F401  (registers the models)
from wae_timm.layers.autoencoder import WaveletLikeAutoEncoder, load_wae_weights, transform_loss
from wae_timm.data import FashionMNIST, ResumableSampler, find_photographs
from wae_timm.files import atomic_write, write_csv
from wae_timm.train import STAGE1_RECIPES, Stage1Recipe, create_autoencoder_optimizer, evaluate, \
    paper_loss, save_wae, train_autoencoder, train_one_epoch

pytestmark = pytest.mark.usefixtures('single_threaded_torch')


@pytest.fixture(scope='module')
def photo_crops() -> torch.Tensor:
    """Two 48x48 crops of each real photograph (downscaled whole), normalised as ImageNet models expect."""
    crops = []
    for path in find_photographs():
        image = Image.open(path)
        image.draft('RGB', (image.width // 8, image.height // 8))
        pixels = np.array(image.convert('RGB').resize((80, 48)))
        x = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.
        crops += [x[:, :, :48], x[:, :, 32:]]
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_DEFAULT_STD)[:, None, None]
    return (torch.stack(crops) - mean) / std


@pytest.fixture(scope='module')
def fashion_subset() -> FashionMNIST:
    return FashionMNIST('train', indices=range(32))


def _tiny_wae_model(**kwargs):
    torch.manual_seed(0)
    return timm.create_model('wae_resnet18', num_classes=10, **kwargs)


def test_paper_loss_is_both_cross_entropies_plus_gamma_transform_loss():
    model = _tiny_wae_model(with_decoder=True).train()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 7])
    torch.manual_seed(1)
    loss, metrics = paper_loss(model, x, y, aux_loss_weight=0.001)
    torch.manual_seed(1)
    out = model.forward_train(x)
    expected = (F.cross_entropy(out.logits_low, y) + F.cross_entropy(out.logits_fusion, y)
                + 0.001 * transform_loss(x, out.reconstruction, out.high))
    assert torch.allclose(loss, expected, rtol=1e-5)
    assert metrics['loss'] == pytest.approx(expected.item(), rel=1e-5)
    assert set(metrics) == {'loss', 'ce_low', 'ce_fusion', 'transform'}
    # gamma = 0 (stage 2): no transform term at all
    _, metrics = paper_loss(model, x, y, aux_loss_weight=0.)
    assert 'transform' not in metrics


def test_paper_loss_low_branch_only_and_plain_model():
    model = _tiny_wae_model(fusion=False).eval()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([3, 4])
    loss, metrics = paper_loss(model, x, y)
    assert torch.allclose(loss, F.cross_entropy(model(x), y))
    assert set(metrics) == {'loss', 'ce_low'}
    plain = timm.create_model('resnet18', num_classes=10).eval()
    loss, _ = paper_loss(plain, x, y)
    assert torch.allclose(loss, F.cross_entropy(plain(x), y))
    with pytest.raises(ValueError, match='needs a WAEWrapper'):
        paper_loss(plain, x, y, aux_loss_weight=0.001)


def test_stage1_transform_loss_decreases_on_real_photographs(photo_crops):
    torch.manual_seed(0)
    wae = WaveletLikeAutoEncoder()

    def loss_on_all():
        with torch.no_grad():
            low, high, rec = wae(photo_crops)
            return transform_loss(photo_crops, rec, high).item()

    before = loss_on_all()
    loader = DataLoader(TensorDataset(photo_crops, torch.zeros(len(photo_crops))), batch_size=4,
                        sampler=ResumableSampler(photo_crops, seed=0))
    paper = dataclasses.replace(STAGE1_RECIPES['paper'], epochs=2)  # SGD, lr 1e-6
    history = train_autoencoder(wae, loader, paper, progress=False)
    after = loss_on_all()
    assert len(history) == 2 and history[0]['lr'] == pytest.approx(1e-6)
    assert after < 0.95 * before, (before, after)


def test_stage1_recipes_build_the_optimizer_and_schedule_they_name():
    from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler
    wae = WaveletLikeAutoEncoder()
    paper = STAGE1_RECIPES['paper']
    assert (paper.optimizer, paper.lr, paper.batch_size, paper.momentum) == ('sgd', 1e-6, 4, 0.9)
    assert (paper.weight_decay, paper.schedule, paper.decay_epochs, paper.decay_rate) == (5e-4, 'step', (10,), 0.1)
    optimizer, scheduler = create_autoencoder_optimizer(wae, 'paper')
    assert isinstance(optimizer, torch.optim.SGD) and isinstance(scheduler, MultiStepLRScheduler)
    assert optimizer.defaults['momentum'] == 0.9 and optimizer.defaults['weight_decay'] == 5e-4
    scheduler.step(10)
    assert optimizer.param_groups[0]['lr'] == pytest.approx(1e-7)
    optimizer, scheduler = create_autoencoder_optimizer(wae, 'photos')
    assert isinstance(optimizer, torch.optim.Adam) and isinstance(scheduler, CosineLRScheduler)
    scheduler.step(STAGE1_RECIPES['photos'].epochs)
    assert optimizer.param_groups[0]['lr'] == pytest.approx(STAGE1_RECIPES['photos'].min_lr)
    # 0 epochs trains nothing: no schedule to build (timm's cosine refuses a length of 0)
    assert create_autoencoder_optimizer(wae, dataclasses.replace(STAGE1_RECIPES['photos'], epochs=0))[1] is None
    optimizer, scheduler = create_autoencoder_optimizer(wae, 'fashion_mnist')
    assert isinstance(optimizer, torch.optim.Adam) and scheduler is None
    assert all(recipe.source for recipe in STAGE1_RECIPES.values())


def test_stage1_recipe_refuses_settings_it_cannot_run():
    with pytest.raises(ValueError, match='momentum applies to SGD only'):
        dataclasses.replace(STAGE1_RECIPES['photos'], momentum=0.9)
    with pytest.raises(ValueError, match='optimizer'):
        Stage1Recipe(optimizer='rmsprop', lr=1e-3, epochs=1, batch_size=4)
    with pytest.raises(KeyError, match='known'):
        train_autoencoder(WaveletLikeAutoEncoder(), [], 'imagenet')


def test_save_wae_round_trip_and_refuses_overwrite(tmp_path):
    torch.manual_seed(0)
    wae = WaveletLikeAutoEncoder()
    path = save_wae(wae, tmp_path / 'stage1.safetensors')
    fresh = WaveletLikeAutoEncoder()
    load_wae_weights(fresh, path)
    for (name, a), b in zip(wae.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(FileExistsError, match='overwrite'):
        save_wae(wae, path)
    save_wae(wae, path, overwrite=True)
    model = _tiny_wae_model(wae_weights=str(path))
    assert torch.equal(model.wae.stem[0].weight, wae.stem[0].weight)


def test_train_one_epoch_and_evaluate_on_fashion_mnist(fashion_subset):
    model = _tiny_wae_model()
    loader = DataLoader(fashion_subset, batch_size=8, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    first = evaluate(model, loader, progress=False)
    metrics = train_one_epoch(model, loader, optimizer, progress=False)
    assert metrics['steps'] == 4 and metrics['num_updates'] == 4
    assert np.isfinite(metrics['loss']) and 'ce_fusion' in metrics
    result = evaluate(model, loader, progress=False)
    assert set(result) == {'top1', 'top5', 'loss', 'count'} and result['count'] == 32
    assert 0 <= result['top1'] <= result['top5'] <= 100
    assert result['loss'] != first['loss']


def test_non_finite_batch_is_named(fashion_subset):
    model = _tiny_wae_model()
    x = torch.zeros(4, 3, 32, 32)
    x[2, 0, 5, 5] = float('nan')
    loader = [(torch.zeros(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)), (x, torch.zeros(4, dtype=torch.long))]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(ValueError, match=r'train epoch 3 batch 1: .*sample\(s\) \[2\]'):
        train_one_epoch(model, loader, optimizer, epoch=3, progress=False)


def test_resume_continues_from_the_saved_step(photo_crops, tmp_path):
    """A run killed after 5 steps and resumed ends with the same weights as one uninterrupted run."""
    def run(directory, max_updates=None, resume=False):
        torch.manual_seed(0)
        wae = WaveletLikeAutoEncoder()
        loader = DataLoader(TensorDataset(photo_crops[:12], torch.zeros(12)), batch_size=4,
                            sampler=ResumableSampler(photo_crops[:12], seed=3))
        recipe = dataclasses.replace(STAGE1_RECIPES['paper'], epochs=3, lr=1e-6, decay_epochs=(1,))
        history = train_autoencoder(wae, loader, recipe, checkpoint_dir=directory, checkpoint_every=2, resume=resume,
                                    max_updates=max_updates, progress=False)
        return wae, history

    reference, _ = run(tmp_path / 'reference')
    _, partial = run(tmp_path / 'killed', max_updates=5)  # 3 steps per epoch: stops in epoch 1, batch 2
    assert len(partial) == 1
    saved = torch.load(tmp_path / 'killed' / 'last.pth.tar', weights_only=True)['train_state']
    assert saved == {'epoch': 1, 'step_in_epoch': 2, 'num_updates': 5}
    resumed, history = run(tmp_path / 'killed', resume=True)
    assert [h['epoch'] for h in history] == [1, 2] and history[0]['steps'] == 1
    assert history[-1]['lr'] == pytest.approx(1e-7)  # the schedule resumed too
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / 'last.pth.tar'
    atomic_write(target, lambda tmp: torch.save({'step': 1}, tmp))

    def killed_half_way(tmp):
        with open(tmp, 'wb') as f:
            f.write(b'partial')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, killed_half_way)
    assert torch.load(target, weights_only=True) == {'step': 1}
    assert [p.name for p in tmp_path.iterdir()] == ['last.pth.tar']


def test_write_csv_takes_its_columns_and_leaves_missing_values_empty(tmp_path):
    path = write_csv(tmp_path / 'rows.csv', [{'model': 'wae_resnet18', 'top1': 90.4}, {'model': 'resnet18'}],
                     columns=('model', 'top1'))
    assert path.read_text().splitlines() == ['model,top1', 'wae_resnet18,90.4', 'resnet18,']
    assert write_csv(tmp_path / 'first.csv', [{'a': 1, 'b': 2}]).read_text().splitlines() == ['a,b', '1,2']
    with pytest.raises(ValueError, match='first.csv'):
        write_csv(tmp_path / 'first.csv', [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['first.csv', 'rows.csv']
