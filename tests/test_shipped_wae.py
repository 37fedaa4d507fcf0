"""The stage-1 WAE weights shipped in the package, and the measures reported for them."""
import csv
import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from wae_timm import WAEWrapper
from wae_timm.layers.autoencoder import SHIPPED_WEIGHTS_DIR, WaveletLikeAutoEncoder, load_wae_weights, \
    weights_padding_mode
from wae_timm.data.photographs import HELD_OUT_PHOTOGRAPHS, PHOTOGRAPH_SOURCES, PhotoCrops, find_photographs, \
    load_photograph, normalize, photograph_name, split_photographs
from wae_timm.experiments.reconstruction import INTERIOR_BORDER, MEASURES, evaluate_bicubic, evaluate_colour_6band, \
    evaluate_wae, evaluate_wavelet, balance_hidden_layers, high_band_rms, psnr, rescale_high_band
from wae_timm.experiments.shipped_wae import match_start_high_band, shipped_provenance, train_on_photographs
from wae_timm.layers.autoencoder import transform_loss
from wae_timm.train import STAGE1_RECIPES
from wae_timm.train.losses import autoencoder_loss
from wae_timm.train.stage1 import create_autoencoder_optimizer
from wae_timm.train.wavelet_init import init_as_colour_wavelet

REPO = Path(__file__).resolve().parents[1]
NAME = 'photos'
RESULTS = REPO / 'results' / 'wae_photos.csv'
PHOTO = 'Dune.jpg'  # held out, from mate-backgrounds (what tools/setup.sh installs for the tests)


def _reported(photo: str, column: str) -> float:
    with RESULTS.open(newline='') as f:
        rows = [r for r in csv.DictReader(f) if r['photograph'] == photo and r['method'] == f'wae ({NAME})']
    assert len(rows) == 1, f'{RESULTS} has no single wae ({NAME}) row for {photo}'
    return float(rows[0][column])


def test_held_out_photographs_were_never_trained_on():
    provenance = shipped_provenance(NAME)
    trained = {photograph_name(p) for p in provenance['training_photographs']}
    assert provenance['held_out_photographs'] == list(HELD_OUT_PHOTOGRAPHS) and len(HELD_OUT_PHOTOGRAPHS) >= 8
    assert not trained & set(HELD_OUT_PHOTOGRAPHS)
    training, held_out = split_photographs()  # whatever packages this machine has
    assert {photograph_name(p) for p in training} <= trained
    assert {photograph_name(p) for p in held_out} <= set(HELD_OUT_PHOTOGRAPHS)
    assert PHOTO in HELD_OUT_PHOTOGRAPHS and PHOTO in {p.name for p in find_photographs()}  # needs mate only


def test_photograph_sources_name_each_photograph_once():
    names = [photograph_name(p) for p in split_photographs()[0] + split_photographs()[1]]
    assert len(names) == len(set(names))
    assert photograph_name('/usr/share/wallpapers/Path/contents/images/2560x1600.jpg') == 'Path'
    assert photograph_name('/usr/share/backgrounds/mate/nature/Dune.jpg') == 'Dune.jpg'
    assert [s.package for s in PHOTOGRAPH_SOURCES][0] == 'mate-backgrounds'


def test_shipped_weights_reconstruct_a_held_out_photograph_as_reported():
    """Both bands within 0.5 dB of the reported PSNR, and I_L alone is a real low band: better than bicubic x2."""
    wae = WaveletLikeAutoEncoder(padding_mode=weights_padding_mode(NAME))
    load_wae_weights(wae, NAME)
    photo = next(p for p in split_photographs()[1] if p.name == PHOTO)
    x = load_photograph(photo)
    measured = evaluate_wae(wae, x)
    assert measured['psnr_both_db'] >= _reported(PHOTO, 'psnr_both_db') - 0.5
    assert measured['psnr_low_only_db'] > evaluate_bicubic(x)['psnr_low_only_db']
    assert measured['high_energy_share'] <= _reported(PHOTO, 'high_energy_share') + 1e-3
    untrained = evaluate_wae(WaveletLikeAutoEncoder(padding_mode=wae.padding_mode), x)
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


def test_interior_psnr_leaves_out_the_border_of_every_method():
    x = torch.rand(3, 32, 48)
    damaged = x.clone()
    damaged[:, :INTERIOR_BORDER] = 0  # wrong only along the top border
    assert psnr(x, damaged) < 20 and psnr(x, damaged, INTERIOR_BORDER) == math.inf
    for evaluate in (evaluate_wavelet, evaluate_colour_6band, evaluate_bicubic,
                     lambda image: evaluate_wae(WaveletLikeAutoEncoder(), image)):
        assert set(MEASURES) <= set(evaluate(x))


def test_colour_6band_keeps_grey_exactly_and_drops_chroma_details():
    grey = torch.rand(1, 32, 48).expand(3, 32, 48).contiguous()
    assert evaluate_colour_6band(grey)['psnr_both_db'] > 100  # no chroma: the luma details are all the details
    colour = torch.rand(3, 32, 48)
    six, wavelet = evaluate_colour_6band(colour), evaluate_wavelet(colour)
    assert six['psnr_both_db'] < 40 and six['psnr_low_only_db'] == pytest.approx(wavelet['psnr_low_only_db'])
    assert six['high_energy_share'] < wavelet['high_energy_share']  # 3 detail bands instead of 9


def test_colour_wavelet_start_computes_the_colour_6band_transform():
    """Away from the zero-padded borders the WAE's layers compute the CDF 9/7 bands and their inverse exactly."""
    import pywt
    wae = init_as_colour_wavelet(WaveletLikeAutoEncoder()).double()
    x = torch.rand(3, 40, 40, dtype=torch.float64)
    low, high = wae.encode(x[None])
    approx, _ = pywt.dwt2(x.numpy(), 'bior4.4', mode='periodization', axes=(-2, -1))
    assert torch.allclose(low[0, :, 5:-5, 5:-5], torch.from_numpy(approx)[:, 5:-5, 5:-5], atol=1e-6)
    grey = x[:1].expand(3, 40, 40)  # no chroma details: the luma details rebuild the image
    normalised = normalize(grey)[None]
    reconstruction = wae.decode(*wae.encode(normalised), 40, 40)
    assert torch.allclose(reconstruction[..., 10:-10, 10:-10], normalised[..., 10:-10, 10:-10], atol=1e-2)
    interior = (reconstruction - normalised)[..., 10:-10, 10:-10].abs().max()
    assert interior < 0.1 * (normalised - normalised.mean()).abs().max()
    assert evaluate_wae(wae.float(), x.float())['high_energy_share'] < evaluate_wavelet(x.float())['high_energy_share']


def test_energy_term_can_be_met_by_shrinking_i_h_while_d_h_amplifies_it():
    """Why the paper's L_t alone does not make I_H small: the same I' at any scale of I_H."""
    torch.manual_seed(0)
    wae = WaveletLikeAutoEncoder().eval()
    x = torch.randn(2, 3, 24, 24)
    shrunk = rescale_high_band(wae, 0.1)
    with torch.no_grad():
        low, high, reconstruction = wae(x)
        low_s, high_s, reconstruction_s = shrunk(x)
    assert torch.allclose(reconstruction_s, reconstruction, atol=1e-5)
    assert high_s.pow(2).sum() == pytest.approx(0.01 * high.pow(2).sum().item(), rel=1e-4)
    assert transform_loss(x, reconstruction_s, high_s) < transform_loss(x, reconstruction, high)


def test_stage1_loss_options_add_the_low_band_term_and_decoder_weight_decay():
    torch.manual_seed(0)
    wae = WaveletLikeAutoEncoder()
    x = torch.randn(2, 3, 16, 16)
    paper, _ = autoencoder_loss(wae, x)
    with_low, metrics = autoencoder_loss(wae, x, low_band_weight=0.5)
    low_only = wae.decode_low(wae.encode(x).low, 16, 16)
    expected = (x - low_only).pow(2).sum() / 2
    assert with_low.item() == pytest.approx(paper.item() + 0.5 * expected.item(), rel=1e-5)
    assert metrics['low_band'] == pytest.approx(expected.item(), rel=1e-5) and 0 < metrics['decoded_high_share'] < 1
    recipe = dataclasses.replace(STAGE1_RECIPES['photos'], weight_decay=1e-5, decoder_weight_decay=1e-3)
    optimizer, _ = create_autoencoder_optimizer(wae, recipe)
    decays = {id(p): g['weight_decay'] for g in optimizer.param_groups for p in g['params']}
    assert decays[id(wae.decode_high.up.weight)] == pytest.approx(1e-3 + 1e-5)
    assert decays[id(wae.to_high.weight)] == pytest.approx(1e-5)
    assert len(decays) == len(list(wae.parameters()))
    with pytest.raises(ValueError, match='low_band_weight'):
        dataclasses.replace(recipe, low_band_weight=-1.)


def test_photo_crops_are_normalised_training_crops():
    training, _ = split_photographs()
    crops = PhotoCrops(training[:1], crop=32, crops_per_epoch=3, max_short_side=64)
    x, _ = crops[0]
    assert len(crops) == 3 and x.shape == (3, 32, 32) and x.min() < 0 < x.max()
    with pytest.raises(ValueError, match='at least one'):
        PhotoCrops([])
    with pytest.raises(ValueError, match='grayscale_prob'):
        PhotoCrops(training[:1], grayscale_prob=1.5)


def _is_grey(x: torch.Tensor) -> bool:
    rgb = x * torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1) + torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1)
    return torch.allclose(rgb[0], rgb[1], atol=1e-5) and torch.allclose(rgb[1], rgb[2], atol=1e-5)


def _crops(grayscale_prob: float, count: int):
    crops = PhotoCrops(split_photographs()[0][:2], crop=16, crops_per_epoch=count, max_short_side=48,
                       grayscale_prob=grayscale_prob)
    return [crops[i][0] for i in range(len(crops))]  # a PhotoCrops draws at random: it never ends by itself


def test_photo_crops_make_the_asked_share_grey():
    torch.manual_seed(0)
    assert not any(map(_is_grey, _crops(0., 6))) and all(map(_is_grey, _crops(1., 4)))
    assert 3 <= sum(map(_is_grey, _crops(0.5, 16))) <= 13


def test_matching_the_start_high_band_keeps_every_reconstruction_and_undoes_a_shrunk_i_h():
    """I_H shrunk 5-fold with D_H amplifying it (what Adam on L_t does): matching the start's RMS undoes it, not I'."""
    wae = WaveletLikeAutoEncoder(padding_mode=weights_padding_mode(NAME))
    load_wae_weights(wae, NAME)
    shrunk = rescale_high_band(wae, 0.2)
    photos = split_photographs()[0][:2]
    images = [load_photograph(p, 64) for p in photos]
    matched, scale = match_start_high_band(shrunk, photos, 'bior2.2', short_side=64)
    start = init_as_colour_wavelet(WaveletLikeAutoEncoder(padding_mode='reflect'), 'bior2.2')
    assert high_band_rms(matched, images) == pytest.approx(high_band_rms(start, images), rel=1e-4)
    assert 4 < scale < 6  # the shipped weights were matched over all training photographs at 256 px
    x = normalize(images[0])[None]
    with torch.no_grad():
        assert torch.allclose(matched(x)[2], shrunk(x)[2], atol=1e-5)
        assert torch.allclose(matched(x)[1], scale * shrunk(x)[1], atol=1e-6)


def test_balancing_hidden_layers_keeps_the_bands_and_the_reconstruction_and_equalises_norms():
    torch.manual_seed(0)
    wae = init_as_colour_wavelet(WaveletLikeAutoEncoder(padding_mode='reflect'), 'bior2.2')
    with torch.no_grad():
        wae.stem[0].weight.mul_(8.)  # an unbalanced stem: the next layer reads 8x larger features
        wae.stem[2].weight.div_(8.)
    balanced = balance_hidden_layers(wae)
    x = torch.randn(1, 3, 24, 20)
    with torch.no_grad():
        for before, after in zip(wae(x), balanced(x)):
            assert torch.allclose(before, after, atol=1e-5)
    stem0, stem2 = balanced.stem[0].weight.flatten(1).norm(dim=1), balanced.stem[2].weight.transpose(0, 1)
    assert torch.allclose(stem0, stem2.flatten(1).norm(dim=1), rtol=1e-3)
    assert balanced.stem[0].weight.norm() < wae.stem[0].weight.norm() / 2
    wae.merge_band_convs()
    with pytest.raises(ValueError, match='unmerged'):
        balance_hidden_layers(wae)


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


def test_eval_wae_refuses_to_overwrite_the_users_files(tmp_path):
    """Issue 10 item 8: an existing --out CSV (or its PNG) is kept unless --overwrite, before any work."""
    repo = Path(__file__).resolve().parents[1]
    out, figure = tmp_path / 'mine.csv', tmp_path / 'mine.png'
    out.write_text('my numbers\n')
    figure.write_bytes(b'my picture')
    result = subprocess.run([sys.executable, str(repo / 'tools' / 'eval_wae.py'), '--out', str(out)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 2 and '--overwrite' in result.stderr and str(out) in result.stderr
    assert out.read_text() == 'my numbers\n' and figure.read_bytes() == b'my picture'


def test_train_wae_photos_matches_the_start_high_band_only_from_the_wavelet_start(capsys):
    import runpy
    main = runpy.run_path(str(REPO / 'tools' / 'train_wae_photos.py'))['main']
    with pytest.raises(SystemExit) as exit_info:
        main(['--name', 'never_written', '--start', 'xavier', '--match-start-high-band'])
    assert exit_info.value.code == 2 and '--start colour_wavelet' in capsys.readouterr().err
    assert not (SHIPPED_WEIGHTS_DIR / 'never_written.safetensors').exists()
