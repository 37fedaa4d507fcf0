"""The stage-1 WAE weights shipped in the package, and the measures reported for them."""
import csv
import dataclasses
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

from wae_timm import WAEWrapper
from wae_timm.layers.autoencoder import SHIPPED_WEIGHTS_DIR, WaveletLikeAutoEncoder, load_wae_weights
from wae_timm.data.photographs import HELD_OUT_PHOTOGRAPHS, PhotoCrops, load_photograph, split_photographs
from wae_timm.experiments.reconstruction import evaluate_bicubic, evaluate_wae, evaluate_wavelet
from wae_timm.experiments.shipped_wae import shipped_provenance, train_on_photographs
from wae_timm.train import STAGE1_RECIPES

REPO = Path(__file__).resolve().parents[1]
NAME = 'photos'
RESULTS = REPO / 'results' / 'wae_photos.csv'
PHOTO = 'Storm.jpg'  # held out; the smallest of them at 256 px


def _reported(photo: str, column: str) -> float:
    with RESULTS.open(newline='') as f:
        rows = [r for r in csv.DictReader(f) if r['photograph'] == photo and r['method'] == f'wae ({NAME})']
    assert len(rows) == 1, f'{RESULTS} has no single wae ({NAME}) row for {photo}'
    return float(rows[0][column])


def test_held_out_photographs_were_never_trained_on():
    training, held_out = split_photographs()
    assert sorted(p.name for p in held_out) == sorted(HELD_OUT_PHOTOGRAPHS)
    trained = {Path(p).name for p in shipped_provenance(NAME)['training_photographs']}
    assert trained == {p.name for p in training} and not trained & set(HELD_OUT_PHOTOGRAPHS)


def test_shipped_weights_reconstruct_a_held_out_photograph_as_reported():
    wae = WaveletLikeAutoEncoder()
    load_wae_weights(wae, NAME)
    photo = next(p for p in split_photographs()[1] if p.name == PHOTO)
    measured = evaluate_wae(wae, load_photograph(photo))
    assert measured['psnr_both_db'] >= _reported(PHOTO, 'psnr_both_db') - 0.1
    assert measured['high_energy_share'] <= _reported(PHOTO, 'high_energy_share') + 1e-3
    untrained = evaluate_wae(WaveletLikeAutoEncoder(), load_photograph(photo))
    assert measured['psnr_both_db'] > untrained['psnr_both_db'] + 10


def test_models_start_from_the_shipped_weights_by_name():
    shipped = load_file(SHIPPED_WEIGHTS_DIR / f'{NAME}.safetensors')
    model = timm.create_model('wae_resnet18', num_classes=10, wae_weights=NAME, with_decoder=True)
    assert torch.equal(model.wae.to_high.weight, shipped['to_high.weight'])
    assert torch.equal(model.wae.decode_low.conv3.bias, shipped['decode_low.conv3.bias'])
    inference = WAEWrapper('resnet18', num_classes=10, wae_weights=NAME, with_decoder=False, freeze_wae=True)
    assert torch.equal(inference.wae.stem[0].weight, shipped['stem.0.weight'])


def test_baselines_measure_what_they_claim():
    x = torch.rand(3, 32, 48)
    wavelet = evaluate_wavelet(x)
    assert wavelet['psnr_both_db'] > 100  # a single-level DWT is invertible
    assert wavelet['psnr_low_only_db'] < wavelet['psnr_both_db'] and 0 < wavelet['high_energy_share'] < 1
    smooth = torch.linspace(0, 1, 48).expand(3, 32, 48).contiguous()
    assert evaluate_bicubic(smooth)['psnr_low_only_db'] > evaluate_bicubic(x)['psnr_low_only_db'] + 10


def test_photo_crops_are_normalised_training_crops():
    training, _ = split_photographs()
    crops = PhotoCrops(training[:1], crop=32, crops_per_epoch=3, max_short_side=64)
    x, _ = crops[0]
    assert len(crops) == 3 and x.shape == (3, 32, 32) and x.min() < 0 < x.max()
    with pytest.raises(ValueError, match='at least one'):
        PhotoCrops([])


def test_training_on_photographs_follows_the_photos_recipe():
    recipe = dataclasses.replace(STAGE1_RECIPES['photos'], epochs=2, batch_size=2)
    wae, history = train_on_photographs(split_photographs()[0][:1], recipe, crops_per_epoch=4, crop=16,
                                        progress=False)
    assert not wae.training and [h['steps'] for h in history] == [2, 2]
    assert history[0]['lr'] == pytest.approx(recipe.lr)  # Adam, cosine decay per epoch
    assert history[1]['lr'] == pytest.approx((recipe.lr + recipe.min_lr) / 2)


@pytest.mark.parametrize('weights', sorted(SHIPPED_WEIGHTS_DIR.glob('*.safetensors')), ids=lambda p: p.stem)
def test_every_shipped_weight_file_loads_into_every_model_form(weights):
    """State-dict keys are part of the product: each shipped file loads by name, strictly, with or without
    the optional parts (decoder, I_H)."""
    shipped = load_file(weights)
    for kwargs in (dict(), dict(with_decoder=True), dict(fusion=False)):
        model = WAEWrapper('resnet18', num_classes=3, wae_weights=weights.stem, **kwargs)
        for name, value in model.wae.state_dict().items():
            assert torch.equal(value, shipped[name]), (weights.name, kwargs, name)


def test_train_wae_photos_refuses_an_existing_name_before_training(monkeypatch, capsys):
    """A run that would fail to save after hours of training is refused at the start."""
    import runpy
    tool = runpy.run_path(str(REPO / 'tools' / 'train_wae_photos.py'))

    def must_not_train(*args, **kwargs):
        raise AssertionError('training started although the output exists')

    monkeypatch.setitem(tool['main'].__globals__, 'train_on_photographs', must_not_train)
    with pytest.raises(SystemExit) as exit_info:
        tool['main'](['--name', NAME])  # the shipped weights exist
    assert exit_info.value.code == 2
    assert f'{NAME}.safetensors' in capsys.readouterr().err
