"""Every weight file a user names fails the same way when it is unusable: one error type per problem, the file named.

Loading paths: ``timm.create_model(..., checkpoint_path=F)``, ``wae-timm train --initial-checkpoint F``,
``--resume`` (F = the run's ``last.pth.tar``) and the distillation teacher's ``--kd-pretrained-path F``.
Bad files: empty, truncated, a pickle of arbitrary objects, random bytes, another architecture's weights.
"""
import os
import pickle
import shutil
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

import wae_timm  # noqa: F401
from wae_timm.models.pretrained import CheckpointMismatchError, CorruptWeightsError, MissingWeightsError
from wae_timm.train.classifier import ClassifierTrainConfig, train_classifier

pytestmark = pytest.mark.usefixtures('single_threaded_torch')

BAD_KINDS = {
    # kind: (the error, what its message says)
    'empty': (CorruptWeightsError, 'is empty'),
    'truncated': (CorruptWeightsError, 'not a readable checkpoint'),
    'pickle': (CorruptWeightsError, 'not a readable checkpoint'),
    'garbage': (CorruptWeightsError, 'not a readable checkpoint'),
    'foreign': (CheckpointMismatchError, 'is not a checkpoint of this'),
    'missing': (MissingWeightsError, 'does not exist'),
}


class _NotATensor:
    """What a malicious or foreign pickle holds: weights_only loading must refuse it, not run it."""


def _state(model_name: str, num_classes: int):
    return {k: v.contiguous() for k, v in timm.create_model(model_name, num_classes=num_classes).state_dict().items()}


def _config(output: Path, **overrides) -> ClassifierTrainConfig:
    settings = dict(output=str(output), model='wae_resnet18', dataset='fashion_mnist', train_samples=8, val_samples=8,
                    batch_size=8, epochs=1, lr=0.01, sched='cosine', workers=0, progress=False, device='cpu')
    settings.update(overrides)
    return ClassifierTrainConfig(**settings)


def _write_bad(path: Path, kind: str, good: Path, foreign: dict) -> None:
    """Make ``path`` the ``kind`` of bad file, from ``good`` (a usable file of the same format)."""
    path.unlink(missing_ok=True)
    if kind == 'empty':
        path.write_bytes(b'')
    elif kind == 'truncated':
        data = good.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif kind == 'pickle':
        path.write_bytes(pickle.dumps({'state_dict': _NotATensor()}, protocol=2))
    elif kind == 'garbage':
        path.write_bytes(os.urandom(4096))
    elif kind == 'foreign':
        if path.name.endswith('.safetensors'):
            save_file(foreign, str(path))
        else:
            checkpoint = torch.load(good, weights_only=True)
            checkpoint = checkpoint if isinstance(checkpoint, dict) and 'optimizer' in checkpoint else {}
            torch.save({**checkpoint, 'state_dict': foreign}, path)
    elif kind != 'missing':
        raise ValueError(kind)


@pytest.fixture(scope='module')
def resumable_run(tmp_path_factory) -> Path:
    """A real run of wae_resnet18 on Fashion-MNIST, stopped after one step (its last.pth.tar is the good file)."""
    output = tmp_path_factory.mktemp('run') / 'run'
    train_classifier(_config(output, train_samples=16, max_updates=1))
    return output


@pytest.mark.parametrize('kind', sorted(BAD_KINDS))
@pytest.mark.parametrize('loading_path', ['checkpoint_path', 'initial_checkpoint', 'resume', 'kd_pretrained_path'])
def test_an_unusable_weight_file_is_named_with_its_problem(tmp_path, resumable_run, loading_path, kind):
    error, problem = BAD_KINDS[kind]
    if loading_path == 'resume':
        output = tmp_path / 'run'
        shutil.copytree(resumable_run, output)
        bad = output / 'last.pth.tar'
        good = resumable_run / 'last.pth.tar'
        foreign = _state('resnet18', 10)
    else:
        model_name = 'resnet18' if loading_path == 'kd_pretrained_path' else 'wae_resnet18'
        foreign_name = 'wae_resnet18' if loading_path == 'kd_pretrained_path' else 'resnet18'
        good = tmp_path / 'good.safetensors'
        save_file(_state(model_name, 10), str(good))
        bad = tmp_path / 'bad.safetensors'
        foreign = _state(foreign_name, 10)
        output = tmp_path / 'run'
    _write_bad(bad, kind, good, foreign)
    before = sorted(p.name for p in output.iterdir()) if output.exists() else None

    with pytest.raises(error, match=problem) as info:
        if loading_path == 'checkpoint_path':
            timm.create_model('wae_resnet18', num_classes=10, checkpoint_path=str(bad))
        elif loading_path == 'initial_checkpoint':
            train_classifier(_config(output, initial_checkpoint=str(bad)))
        elif loading_path == 'resume':
            train_classifier(_config(output, train_samples=16, resume=True))
        else:
            train_classifier(_config(output, kd_model_name='resnet18', kd_pretrained_path=str(bad)))
    assert str(bad) in str(info.value)
    if loading_path != 'checkpoint_path':  # refused before the run wrote anything
        assert (sorted(p.name for p in output.iterdir()) if output.exists() else None) == before


def test_a_good_file_loads_by_every_path(tmp_path, resumable_run):
    """The control: the same loading paths accept the good files the bad ones were made from."""
    good = tmp_path / 'good.safetensors'
    reference = _state('wae_resnet18', 10)
    save_file(reference, str(good))
    model = timm.create_model('wae_resnet18', num_classes=10, checkpoint_path=str(good))
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
    teacher = tmp_path / 'teacher.safetensors'
    save_file(_state('resnet18', 10), str(teacher))
    run = train_classifier(_config(tmp_path / 'run', initial_checkpoint=str(good), kd_model_name='resnet18',
                                   kd_pretrained_path=str(teacher), max_updates=1, lr=0., weight_decay=0.))
    assert all(torch.equal(v, reference[k]) for k, v in run['model'].named_parameters())  # lr 0: the loaded weights
    resumed = tmp_path / 'resumed'
    shutil.copytree(resumable_run, resumed)
    train_classifier(_config(resumed, train_samples=16, resume=True))
    assert (resumed / 'model.safetensors').is_file()
