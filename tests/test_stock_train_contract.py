"""Stages 2 and 3 under timm's own train.py, unmodified: its contract, reproduced step by step.

timm's train.py is not in the PyPI wheel, so it cannot run here. These tests do
what it does (timm 1.0.x): import the ``--device-modules``, parse ``--model-kwargs``
with timm's ``ParseKwargs`` (``ast.literal_eval``, text on failure), call
``create_model`` with the arguments it always passes, build the optimizer with
``create_optimizer_v2``, then per batch ``task(x, y)['loss'].backward()`` through
``timm.task`` (``criterion(model(x), y)``; a ``LogitDistillationTask`` with ``--kd-model-name``)
and ``optimizer.step()``.
"""
import argparse
import importlib

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from timm.optim import create_optimizer_v2
from timm.task import ClassificationTask, LogitDistillationTask
from timm.utils import ModelEmaV3, ParseKwargs

from wae_timm.layers.autoencoder import WaveletLikeAutoEncoder, transform_loss
from wae_timm.train import save_wae

NUM_CLASSES = 10

pytestmark = pytest.mark.usefixtures('single_threaded_torch')


def build_like_train_py(command_line: str, checkpoint_path: str = '') -> nn.Module:
    """The model train.py builds from ``--device-modules ... --model ... --model-kwargs ...``."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--model', default='resnet50')
    parser.add_argument('--model-kwargs', nargs='*', default={}, action=ParseKwargs)
    parser.add_argument('--device-modules', default=None, type=str, nargs='+')
    args = parser.parse_args(command_line.split())
    for module in args.device_modules or ():
        importlib.import_module(module)
    return timm.create_model(
        args.model, pretrained=False, in_chans=3, num_classes=NUM_CLASSES, drop_rate=0.0, drop_path_rate=None,
        drop_block_rate=None, global_pool=None, bn_momentum=None, bn_eps=None, scriptable=False,
        checkpoint_path=checkpoint_path, **args.model_kwargs)


def one_train_py_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task=None) -> torch.optim.Optimizer:
    optimizer = create_optimizer_v2(model, opt='sgd', lr=0.1, weight_decay=5e-4, momentum=0.9)
    task = task or ClassificationTask(model, criterion=nn.CrossEntropyLoss())
    task.train()
    optimizer.zero_grad()
    task(x, y)['loss'].backward()
    optimizer.step()
    return optimizer


@pytest.fixture(scope='module')
def stage1_weights(tmp_path_factory) -> str:
    torch.manual_seed(0)
    return str(save_wae(WaveletLikeAutoEncoder(), tmp_path_factory.mktemp('stage1') / 'stage1.safetensors'))


@pytest.fixture(scope='module')
def batch():
    torch.manual_seed(0)
    return torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 5, 9])


def test_model_kwargs_arrive_as_python_values(stage1_weights):
    model = build_like_train_py(
        f'--device-modules wae_timm --model wae_resnet18 '
        f'--model-kwargs wae_weights={stage1_weights} freeze_wae=True energy_weight=0.5')
    assert model.energy_weight == 0.5
    assert not any(p.requires_grad for p in model.wae.parameters())
    with pytest.raises(ValueError, match="freeze_wae='true' is text"):
        build_like_train_py('--device-modules wae_timm --model wae_resnet18 --model-kwargs freeze_wae=true')


def test_stage2_frozen_wae_does_not_change(stage1_weights, batch):
    model = build_like_train_py(
        f'--device-modules wae_timm --model wae_resnet18 --model-kwargs wae_weights={stage1_weights} freeze_wae=True')
    stage1 = load_file(stage1_weights)
    for name, value in model.wae.state_dict().items():
        assert torch.equal(stage1[name], value), f'stage 2 did not load wae.{name} from stage 1'
    wae_before = {k: v.clone() for k, v in model.wae.state_dict().items()}
    low_before = model.low.conv1.weight.detach().clone()
    optimizer = one_train_py_step(model, *batch)
    optimized = {id(p) for group in optimizer.param_groups for p in group['params']}
    assert not any(id(p) in optimized for p in model.wae.parameters())
    for name, value in model.wae.state_dict().items():
        assert torch.equal(value, wae_before[name]), f'stage 2 changed wae.{name}'
    assert not torch.equal(model.low.conv1.weight, low_before), 'the classifier did not train'


def test_stage3_auxiliary_gradient_is_gamma_times_transform_loss_gradient(batch, tmp_path):
    gamma = 0.001
    model = build_like_train_py(f'--device-modules wae_timm --model wae_resnet18 --model-kwargs aux_loss_weight={gamma}')
    x, y = batch
    model.train()
    ClassificationTask(model, criterion=nn.CrossEntropyLoss())(x, y)['loss'].backward()
    through_train_py = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    out = model.forward_train(x)  # the same batch statistics: BatchNorm in training mode
    (F.cross_entropy(out.logits, y) + gamma * transform_loss(x, out.reconstruction, out.high)).backward()
    direct = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert through_train_py.keys() == direct.keys()
    decoder = [n for n in direct if n.startswith('wae.decode')]
    assert decoder, 'the decoder must learn from gamma * L_t in stage 3'
    for name, grad in direct.items():
        assert torch.allclose(through_train_py[name], grad, rtol=1e-4, atol=1e-7), name
    # and the decoder's gradient is gamma * dL_t alone (the cross-entropy does not reach it)
    model.zero_grad()
    out = model.forward_train(x)
    (gamma * transform_loss(x, out.reconstruction, out.high)).backward()
    for name in decoder:
        assert torch.allclose(through_train_py[name], dict(model.named_parameters())[name].grad, rtol=1e-4), name


def test_stage3_from_a_stage2_checkpoint_and_train_py_options(stage1_weights, batch, tmp_path):
    """--initial-checkpoint, EMA, channels_last and --grad-checkpointing with the auxiliary loss."""
    stage2 = build_like_train_py(
        f'--device-modules wae_timm --model wae_resnet18 --model-kwargs wae_weights={stage1_weights} freeze_wae=True')
    save_file(stage2.state_dict(), str(tmp_path / 'stage2.safetensors'))
    assert not stage2.wae.has_decoder, 'stage 2 has no loss that trains a decoder'
    model = build_like_train_py(
        f'--device-modules wae_timm --model wae_resnet18 --model-kwargs wae_weights={stage1_weights} '
        'aux_loss_weight=0.001', checkpoint_path=str(tmp_path / 'stage2.safetensors'))
    assert torch.equal(model.wae.stem[0].weight, stage2.wae.stem[0].weight)
    # the stage-2 checkpoint has no decoder: stage 3 keeps the stage-1 decoder from wae_weights
    stage1 = load_file(stage1_weights)
    assert torch.equal(model.wae.decode_low.conv3.weight, stage1['decode_low.conv3.weight'])
    assert all(p.requires_grad for p in model.wae.parameters())
    model.set_grad_checkpointing(True)
    model.to(memory_format=torch.channels_last)
    ema = ModelEmaV3(model, decay=0.9)
    wae_before = model.wae.stem[0].weight.detach().clone()
    one_train_py_step(model, batch[0].contiguous(memory_format=torch.channels_last), batch[1])
    ema.update(model)
    assert not torch.equal(model.wae.stem[0].weight, wae_before), 'stage 3 must fine-tune the WAE'
    assert model.last_transform_loss is not None and torch.isfinite(model.last_transform_loss)
    ema.module.eval()
    assert ema.module(batch[0]).shape == (4, NUM_CLASSES)


def test_pretrained_backbone_and_distillation_from_local_weights(batch, tmp_path):
    """Beyond the paper: the low branch from timm weights, and KD from the full-resolution backbone.

    Hub downloads are impossible here, so both read a local file through timm's
    ``pretrained_cfg_overlay=dict(file=...)``, the mechanism of ``--pretrained-path``.
    """
    torch.manual_seed(0)
    resnet18 = timm.create_model('resnet18', num_classes=NUM_CLASSES)
    weights = str(tmp_path / 'resnet18.safetensors')
    save_file(resnet18.state_dict(), weights)
    model = build_like_train_py(
        '--device-modules wae_timm --model wae_resnet18 --model-kwargs pretrained_backbone=True '
        f'backbone_kwargs={{"pretrained_cfg_overlay":{{"file":"{weights}"}}}}')
    assert torch.equal(model.low.conv1.weight, resnet18.conv1.weight)

    # --kd-model-name resnet18: timm.task builds the teacher with pretrained=True, the student's classes/in_chans
    task = LogitDistillationTask(student_model=model, teacher_model='resnet18', criterion=nn.CrossEntropyLoss(),
                                 teacher_pretrained_path=weights, task_loss_weight=0.5, temperature=4.0)
    assert torch.equal(task.teacher.model.fc.weight, resnet18.fc.weight)
    x, y = batch
    result = task(x, y)
    assert torch.allclose(result['loss'], 0.5 * result['task_loss'] + 0.5 * result['kd_loss'])
    before = model.head_low.fc.weight.detach().clone()
    one_train_py_step(model, x, y, task=task)
    assert not torch.equal(model.head_low.fc.weight, before)
