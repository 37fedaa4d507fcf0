"""Pretrained tags, publishing and offline loading through timm's own machinery.

A random-init wae_resnet18 (32x32, the fmnist tag's input) stands in for a
trained checkpoint: it is saved as timm's train.py saves, published with the
project's code into a folder and a temporary Hugging Face cache, and loaded back
from the folder with 'local-dir:', and with HF_HUB_OFFLINE through
create_model, 'hf-hub:' and torch.hub.
"""
import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import timm
import torch
from huggingface_hub import ModelCard, constants as hf_constants
from safetensors.torch import load_file, save_file

import wae_timm
from wae_timm.cli import main as cli_main
from wae_timm.publish.hub import export_checkpoint, find_tag, install_into_hf_cache, read_checkpoint, upload_folder
from wae_timm.models.wae import PRETRAINED_TAGS, published_tags
from wae_timm.models.pretrained import CheckpointMismatchError, CorruptWeightsError, MissingWeightsError, \
    NoPretrainedWeightsError

REPO = Path(__file__).resolve().parents[1]
TAG = 'wae_resnet18.fmnist'


class Payload:
    """An arbitrary pickled object, as an unsafe checkpoint may hold: refused by weights_only=True."""


def _outputs(model, x):
    with torch.no_grad():
        return model.eval()(x)


@pytest.fixture(scope='module')
def published(tmp_path_factory):
    """A train.py checkpoint published into a private HF cache; the model its EMA weights make."""
    root = tmp_path_factory.mktemp('hub')
    torch.manual_seed(0)
    raw = timm.create_model(TAG)
    ema = timm.create_model(TAG)
    for p in ema.parameters():
        p.data.add_(0.01)
    checkpoint = root / 'model_best.pth.tar'
    torch.save({'epoch': 3, 'arch': 'wae_resnet18', 'state_dict': raw.state_dict(),
                'state_dict_ema': ema.state_dict(), 'optimizer': torch.optim.SGD(raw.parameters(), 0.1).state_dict(),
                'args': argparse.Namespace(lr=0.1)}, checkpoint)
    folder = export_checkpoint(checkpoint, TAG, root / 'out', results_dir=root / 'no_results')
    cache = root / 'cache'
    install_into_hf_cache(folder, find_tag(TAG).hf_hub_id, cache)
    return dict(root=root, checkpoint=checkpoint, folder=folder, cache=cache, reference=ema)


@pytest.fixture
def offline_cache(published, monkeypatch):
    monkeypatch.setattr(hf_constants, 'HF_HUB_CACHE', str(published['cache']))
    monkeypatch.setattr(hf_constants, 'HF_HUB_OFFLINE', True)
    return published


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_every_model_has_tags_and_in1k_is_the_default():
    for name in wae_timm.models.WAE_MODEL_ARGS:
        assert f'{name}.in1k' in PRETRAINED_TAGS
        assert timm.models.get_pretrained_cfg(name).tag == 'in1k'  # defaults stay 1000 classes at 224
    assert timm.list_models('wae_*', pretrained=True) == sorted(t.name for t in published_tags())
    cfg = timm.models.get_pretrained_cfg(TAG)
    assert cfg.hf_hub_id == 'wae-timm/wae_resnet18.fmnist' and cfg.hf_hub_filename == 'model.safetensors'


def test_tag_without_weights_raises_instead_of_random_init():
    with pytest.raises(NoPretrainedWeightsError, match=r'wae_resnet50\.in1k has no pretrained weights.*not trained'):
        timm.create_model('wae_resnet50', pretrained=True)
    with pytest.raises(NoPretrainedWeightsError, match=r"wae_resnet18\.in1k.*'wae_resnet18\.fmnist'"):
        timm.create_model('wae_resnet18.in1k', pretrained=True)


def test_published_folder_is_timm_format_without_training_state(published):
    folder = published['folder']
    assert sorted(p.name for p in folder.iterdir()) == ['README.md', 'config.json', 'model.safetensors']
    config = json.loads((folder / 'config.json').read_text())
    assert config['architecture'] == 'wae_resnet18' and config['num_classes'] == 10
    assert 'with_decoder' not in config['model_args']  # fmnist tags are inference-only: the default, no decoder
    assert config['pretrained_cfg']['tag'] == 'fmnist' and 'hf_hub_id' not in config['pretrained_cfg']
    weights = load_file(folder / 'model.safetensors')
    assert not any(k.startswith('wae.decode_') for k in weights)
    torch.testing.assert_close(weights['head_low.fc.weight'], published['reference'].state_dict()['head_low.fc.weight'])
    card = (folder / 'README.md').read_text()
    assert card.startswith('---\n') and '\ntags:\n- image-classification\n' in card.split('---\n')[1]


def test_offline_round_trip_is_bit_identical(offline_cache):
    expected = _outputs(offline_cache['reference'], X)
    model = timm.create_model(TAG, pretrained=True)
    assert not model.wae.has_decoder
    assert torch.equal(_outputs(model, X), expected)
    from_hub_name = timm.create_model(f'hf-hub:{find_tag(TAG).hf_hub_id}', pretrained=True)
    assert torch.equal(_outputs(from_hub_name, X), expected)
    from_torch_hub = torch.hub.load(str(REPO), 'wae_resnet18', source='local', pretrained=True, pretrained_cfg='fmnist')
    assert torch.equal(_outputs(from_torch_hub, X), expected)


def test_published_folder_loads_with_timms_local_dir_source(published):
    """A folder loads as it is through 'local-dir:', without a Hugging Face cache."""
    expected = _outputs(published['reference'], X)
    model = timm.create_model(f"local-dir:{published['folder']}", pretrained=True)
    assert model.pretrained_cfg['tag'] == 'fmnist' and not model.wae.has_decoder
    assert torch.equal(_outputs(model, X), expected)
    new_head = timm.create_model(f"local-dir:{published['folder']}", pretrained=True, num_classes=5)
    assert new_head.head_low.fc.out_features == 5 and new_head.head_fusion.fc.out_features == 5
    assert torch.equal(new_head.state_dict()['wae.to_high.weight'], model.state_dict()['wae.to_high.weight'])


def test_num_classes_and_in_chans_adaptation(offline_cache):
    reference = offline_cache['reference'].state_dict()
    model = timm.create_model(TAG, pretrained=True, num_classes=5, in_chans=1).eval()
    state = model.state_dict()
    assert model.head_low.fc.out_features == 5 and model.head_fusion.fc.out_features == 5
    # timm's adapt_input_conv sums the RGB filters of the first conv for one channel
    torch.testing.assert_close(state['wae.stem.0.weight'], reference['wae.stem.0.weight'].sum(1, keepdim=True))
    for key in ('low.layer4.1.conv2.weight', 'high.layer1.0.bn1.running_var', 'wae.to_high.weight'):
        assert torch.equal(state[key], reference[key])
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 5)


def test_pretrained_feature_extractor(offline_cache):
    """num_classes=0: timm drops the classifiers, and the pooled features come once each."""
    reference = offline_cache['reference'].eval()
    model = timm.create_model(TAG, pretrained=True, num_classes=0).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model(x)
        assert features.shape == (2, reference.low_channels + reference.high_channels)
        torch.testing.assert_close(features, reference.forward_head(reference.forward_features(x), pre_logits=True))
    model = timm.create_model(TAG, pretrained=True, num_classes=0, in_chans=1).eval()
    assert model(torch.randn(2, 1, 32, 32)).shape == features.shape


def test_missing_corrupt_and_foreign_files_name_the_file(published, tmp_path, monkeypatch):
    monkeypatch.setattr(hf_constants, 'HF_HUB_OFFLINE', True)
    monkeypatch.setattr(hf_constants, 'HF_HUB_CACHE', str(tmp_path / 'empty'))
    with pytest.raises(MissingWeightsError, match=r'model\.safetensors of Hub repo wae-timm/wae_resnet18\.fmnist'):
        timm.create_model(TAG, pretrained=True)

    corrupt = tmp_path / 'corrupt'
    corrupt.mkdir()
    for name in ('config.json', 'README.md'):
        (corrupt / name).write_bytes((published['folder'] / name).read_bytes())
    (corrupt / 'model.safetensors').write_bytes((published['folder'] / 'model.safetensors').read_bytes()[:5000])
    install_into_hf_cache(corrupt, find_tag(TAG).hf_hub_id, tmp_path / 'corrupt_cache')
    monkeypatch.setattr(hf_constants, 'HF_HUB_CACHE', str(tmp_path / 'corrupt_cache'))
    with pytest.raises(CorruptWeightsError, match=r'cached at .*corrupt_cache.*model\.safetensors.*corrupt or truncated'):
        timm.create_model(TAG, pretrained=True)

    foreign = timm.create_model('wae_resnet34', num_classes=10, with_decoder=False).state_dict()
    save_file({k: v.contiguous() for k, v in foreign.items()}, corrupt / 'model.safetensors')
    install_into_hf_cache(corrupt, find_tag(TAG).hf_hub_id, tmp_path / 'foreign_cache')
    monkeypatch.setattr(hf_constants, 'HF_HUB_CACHE', str(tmp_path / 'foreign_cache'))
    with pytest.raises(CheckpointMismatchError, match=r'foreign_cache.*not a checkpoint of this wae_resnet18.*unexpected'):
        timm.create_model(TAG, pretrained=True, num_classes=3)  # even when timm would load non-strictly


def test_checkpoint_without_decoder_loads_into_a_model_with_one(offline_cache):
    """The decoder-less tag loads into a stage-3 model: the decoder keeps its weights, with a warning."""
    reference = timm.create_model(TAG, pretrained=True)
    with pytest.warns(UserWarning, match='no WAE decoder; the decoder keeps its initial weights'):
        model = timm.create_model(TAG, pretrained=True, aux_loss_weight=1e-3)
    assert model.wae.has_decoder
    for name, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_read_checkpoint_is_safe_and_picks_ema(published, tmp_path):
    ckpt = published['checkpoint']
    ema = read_checkpoint(ckpt)
    raw = read_checkpoint(ckpt, use_ema=False)
    key = 'head_low.fc.bias'
    assert not torch.equal(ema[key], raw[key])
    assert torch.equal(ema[key], published['reference'].state_dict()[key])

    unsafe = tmp_path / 'unsafe.pth'
    torch.save({'state_dict': {'a': torch.zeros(1)}, 'payload': Payload()}, unsafe)
    with pytest.raises(CorruptWeightsError, match=r'unsafe\.pth is not a readable checkpoint.*only tensors are loaded'):
        read_checkpoint(unsafe)
    with pytest.raises(MissingWeightsError, match=r'nope\.pth does not exist'):
        read_checkpoint(tmp_path / 'nope.pth')


def test_export_refuses_foreign_checkpoint_and_non_empty_folder(published, tmp_path):
    foreign = tmp_path / 'foreign.safetensors'
    save_file(timm.create_model('wae_resnet34', num_classes=10).state_dict(), foreign)
    with pytest.raises(ValueError, match='not a wae_resnet18'):
        export_checkpoint(foreign, TAG, tmp_path / 'out', results_dir=tmp_path)
    with pytest.raises(FileExistsError, match='--overwrite'):
        export_checkpoint(published['checkpoint'], TAG, published['folder'], results_dir=tmp_path)


def test_push_tool_dry_run_and_upload_call(published, tmp_path):
    safetensors_ckpt = tmp_path / 'weights.safetensors'
    save_file(published['reference'].state_dict(), safetensors_ckpt)
    out = tmp_path / 'folder'
    with mock.patch('wae_timm.publish.hub.HfApi') as api_cls:
        assert cli_main(['push', str(safetensors_ckpt), TAG, '--out', str(out), '--dry-run']) == 0
    api_cls.assert_not_called()
    assert load_file(out / 'model.safetensors').keys() == load_file(published['folder'] / 'model.safetensors').keys()
    with pytest.raises(FileExistsError):
        cli_main(['push', str(safetensors_ckpt), TAG, '--out', str(out), '--dry-run'])

    api = mock.MagicMock()
    api.create_repo.return_value = mock.Mock(repo_id='wae-timm/wae_resnet18.fmnist')
    upload_folder(out, 'wae-timm/wae_resnet18.fmnist', api=api)
    api.create_repo.assert_called_once_with('wae-timm/wae_resnet18.fmnist', private=False, exist_ok=True)
    assert api.upload_folder.call_args.kwargs['folder_path'] == str(out)
    with mock.patch('wae_timm.publish.hub.HfApi') as api_cls:
        api_cls.return_value.create_repo.return_value = mock.Mock(repo_id='me/x')
        cli_main(['push', str(safetensors_ckpt), TAG, '--out', str(out), '--overwrite', '--repo-id', 'me/x'])
    api_cls.return_value.upload_folder.assert_called_once()
    assert api_cls.return_value.upload_folder.call_args.kwargs['repo_id'] == 'me/x'


def test_offline_env_in_a_fresh_process(published):
    """HF_HUB_OFFLINE / HF_HUB_CACHE as a user sets them: read by huggingface_hub at import."""
    expected = _outputs(published['reference'], X)
    torch.save(X, published['root'] / 'x.pt')
    code = (
        'import sys, timm, torch, wae_timm\n'
        f"m = timm.create_model('hf-hub:wae-timm/{TAG}', pretrained=True).eval()\n"
        f"x = torch.load(r'{published['root'] / 'x.pt'}', weights_only=True)\n"
        f"with torch.no_grad(): torch.save(m(x), r'{published['root'] / 'y.pt'}')\n")
    env = dict(os.environ, HF_HUB_OFFLINE='1', HF_HUB_CACHE=str(published['cache']), PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, '-c', code], env=env, check=True, cwd=published['root'])
    assert torch.equal(torch.load(published['root'] / 'y.pt', weights_only=True), expected)


def test_shipped_cards_have_every_section():
    for tag in published_tags():
        card = (REPO / 'hub' / tag.name / 'README.md').read_text()
        metadata = card.split('---\n')[1]
        assert 'library_name: timm' in metadata and f'- {tag.dataset}' in metadata and 'license:' in metadata
        assert 'metrics:' in metadata
        for section in ('## Usage', '## Accuracy', '## Measured speed', '## Training', '## Limitations', '@inproceedings'):
            assert section in card


def test_fashion_mnist_cfg_matches_the_training_inputs():
    from wae_timm.data.fashion_mnist import FASHION_MNIST_CLASSES, FashionMNIST, fashion_mnist_stats
    cfg = timm.models.get_pretrained_cfg(TAG)
    mean, std = fashion_mnist_stats()
    assert cfg.mean == pytest.approx((mean,) * 3, abs=1e-4) and cfg.std == pytest.approx((std,) * 3, abs=1e-4)
    assert cfg.label_names == FASHION_MNIST_CLASSES
    assert cfg.input_size == tuple(FashionMNIST('test', indices=[0])[0][0].shape)


def _measurement(sha256, top1, images=10000):
    return dict(tag=TAG, weights_sha256=sha256, dataset='zalando-datasets/fashion_mnist', split='test',
                images=str(images), batch_size='250', top1=str(top1), top5='99.81', loss='0.3')


def test_card_accuracy_is_bound_to_the_weights_sha256(tmp_path):
    """Issue 10 item 11: numbers only for the file the results row measured; any other file: not measured."""
    from wae_timm.publish.measurements import record_measurements
    from wae_timm.publish.model_card import NotMeasuredWarning, render_model_card
    tag = find_tag(TAG)
    (tmp_path / 'fashion_mnist_cost.csv').write_text(
        'key,label,params_m,gflops,latency_ms,load_average\nwae_stage3,"WAE, ours",11.9,0.0221,21.5,0.123456789\n'
        'backbone_32,backbone @32,11.2,0.0372,30.5,0.2\nwavelet,x,1,2,0.3,0.4\n')
    (tmp_path / 'fashion_mnist_seeds.csv').write_text('key,label,seed,top1\nbackbone_32,backbone @32,0,92.05\n')
    (tmp_path / 'benchmark_cpu.csv').write_text('model,backbone,input,median ms\nwae_resnet18,resnet18,224,12.5\n')
    record_measurements(tmp_path, [_measurement('a' * 64, 91.37), _measurement('a' * 64, 90.1, images=1000)])

    card = render_model_card(tag, tmp_path, weights_sha256='a' * 64)
    assert '| 10000 | 91.37 | 99.81 |' in card and '| 1000 | 90.10 | 99.81 |' in card and 'a' * 64 in card
    results = ModelCard(card).data.eval_results
    metrics = {(r.metric_type, r.metric_value, r.dataset_type, r.dataset_split) for r in results}
    assert metrics == {('accuracy', 91.37, tag.dataset, 'test'), ('top_5_accuracy', 99.81, tag.dataset, 'test')}
    # cost for context: only the columns a reader needs, only the rows the tag names; no other weights' accuracy
    assert '| backbone @32 | 0.0372 | 30.5 |' in card and '0.123456789' not in card and '| x |' not in card
    assert '92.05' not in card and '| wae_stage3 | 21.5 | 1.42x |' in card
    # the measured speed comes from the same side-by-side cost run, against the backbone at 32
    assert 'speed-up over backbone_32' in card

    with pytest.warns(NotMeasuredWarning, match=r'NOT MEASURED'):
        other = render_model_card(tag, tmp_path, weights_sha256='b' * 64)
    assert '**Accuracy of these weights: not measured.**' in other and 'b' * 64 in other
    assert ModelCard(other).data.eval_results is None
    for number in ('91.37', '92.05'):  # no accuracy of this tag's other file or of other weights (cost may stay)
        assert number not in other


def test_random_weight_export_gets_no_numbers(published, tmp_path):
    """Issue 10 item 11: the reproduction's results/ (87.65% for its own checkpoint) give a random export nothing."""
    from wae_timm.publish.model_card import NotMeasuredWarning
    results = tmp_path / 'results'
    results.mkdir()
    for f in (REPO / 'results').glob('*.csv'):
        (results / f.name).write_bytes(f.read_bytes())
    with pytest.warns(NotMeasuredWarning, match=r'wae_resnet18\.fmnist.*NOT MEASURED'):
        folder = export_checkpoint(published['checkpoint'], TAG, tmp_path / 'random', results_dir=results)
    card = (folder / 'README.md').read_text()
    assert 'not measured' in card and ModelCard(card).data.eval_results is None
    accuracy = card.split('## Accuracy')[1].split('## Measured speed')[0]
    assert published_sha(folder) in accuracy
    assert re.findall(r'\d+\.\d+', accuracy) == []  # no accuracy at all, not even the comparisons'


def published_sha(folder):
    from wae_timm.publish.measurements import sha256_of_file
    return sha256_of_file(Path(folder) / 'model.safetensors')


def test_card_finds_results_from_outside_the_repo_or_says_so(tmp_path, monkeypatch):
    from wae_timm.publish import measurements
    from wae_timm.publish.model_card import NotMeasuredWarning, render_model_card
    monkeypatch.chdir(tmp_path)  # no ./results here
    assert measurements.find_results_dir() == REPO / 'results'  # the checkout's, from anywhere
    monkeypatch.setattr(measurements, '_REPOSITORY_RESULTS', tmp_path / 'gone')
    with pytest.warns(UserWarning, match=r'no results/ folder found \(looked in .*gone'):
        assert measurements.find_results_dir() is None
    with pytest.warns((UserWarning, NotMeasuredWarning)):
        card = render_model_card(find_tag(TAG), weights_sha256='c' * 64)
    assert 'not measured.** no results/ folder was found' in card


def test_card_usage_starts_with_the_install_line_and_import():
    from wae_timm.publish.model_card import INSTALL_LINE, render_model_card
    with pytest.warns(UserWarning):
        card = render_model_card(find_tag(TAG), weights_sha256='d' * 64)
    usage = card.split('## Usage\n')[1]
    assert usage.lstrip().startswith(f'```bash\n{INSTALL_LINE}\n```')
    python_block = usage.split('```python\n')[1]
    assert python_block.startswith('import wae_timm')


@pytest.mark.parametrize('training_kwargs', [
    ['freeze_wae=True', 'pretrained_backbone=False'],  # stage 2
    ['aux_loss_weight=0.001', 'with_decoder=True'],  # stage 3
])
def test_published_config_holds_only_architecture_args(published, tmp_path, training_kwargs):
    """A model trained from a local stage-1 file loads from its published folder once that file is gone."""
    stage1 = tmp_path / 'stage1.safetensors'
    save_file(timm.create_model(TAG).wae.state_dict(), stage1)
    checkpoint = tmp_path / 'weights.safetensors'
    save_file(published['reference'].state_dict(), checkpoint)
    out = tmp_path / 'out'
    cli_main(['push', str(checkpoint), TAG, '--out', str(out), '--dry-run', '--results-dir', str(tmp_path),
              '--model-kwargs', f'wae_weights={stage1}', *training_kwargs])
    model_args = json.loads((out / 'config.json').read_text())['model_args']
    for name in ('wae_weights', 'freeze_wae', 'aux_loss_weight', 'pretrained_backbone', 'with_decoder'):
        assert name not in model_args, name
    stage1.unlink()
    model = timm.create_model(f'local-dir:{out}', pretrained=True)
    assert not model.wae.has_decoder and model.aux_loss_weight == 0
    assert torch.equal(_outputs(model, X), _outputs(published['reference'], X))


def test_push_uploads_only_the_files_it_wrote(published, tmp_path, capsys):
    from huggingface_hub.utils import filter_repo_objects
    checkpoint = tmp_path / 'weights.safetensors'
    save_file(published['reference'].state_dict(), checkpoint)
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'my_notes.txt').write_text('private')
    (out / 'old').mkdir()
    (out / 'old' / 'model.safetensors').write_bytes(b'an old export')
    with mock.patch('wae_timm.publish.hub.HfApi') as api_cls:
        api_cls.return_value.create_repo.return_value = mock.Mock(repo_id='me/x')
        cli_main(['push', str(checkpoint), TAG, '--out', str(out), '--overwrite', '--repo-id', 'me/x',
                  '--results-dir', str(tmp_path)])
    call = api_cls.return_value.upload_folder.call_args.kwargs
    on_disk = [p.relative_to(out).as_posix() for p in Path(call['folder_path']).rglob('*') if p.is_file()]
    sent = filter_repo_objects(on_disk, allow_patterns=call.get('allow_patterns'),
                               ignore_patterns=call.get('ignore_patterns'))
    assert sorted(sent) == ['README.md', 'config.json', 'model.safetensors']
    assert "also holds ['my_notes.txt', 'old'], which are not published" in capsys.readouterr().err


def test_float16_export_halves_the_file_and_loads_as_stored(published, tmp_path):
    folder = export_checkpoint(published['checkpoint'], TAG, tmp_path / 'fp16', results_dir=tmp_path,
                               dtype=torch.float16)
    weights = load_file(folder / 'model.safetensors')
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float16}
    assert (folder / 'model.safetensors').stat().st_size < 25e6  # the Hub-folder budget (fp32: ~48 MB)
    model = timm.create_model(f'local-dir:{folder}', pretrained=True)
    assert model.head_low.fc.weight.dtype == torch.float32  # loading casts into the model's dtype
    expected = timm.create_model(TAG)
    expected.load_state_dict(weights)  # the stored fp16 values, exactly
    assert torch.equal(_outputs(model, X), _outputs(expected, X))


def _install_state_dict(state_dict, published, where):
    folder = where / 'folder'
    folder.mkdir()
    for name in ('config.json', 'README.md'):
        (folder / name).write_bytes((published['folder'] / name).read_bytes())
    save_file({k: v.contiguous() for k, v in state_dict.items()}, folder / 'model.safetensors')
    install_into_hf_cache(folder, find_tag(TAG).hf_hub_id, where / 'cache')
    return folder


@pytest.mark.parametrize('num_classes', [None, 3, 5])
def test_three_class_checkpoint_is_refused_for_the_ten_class_tag(published, tmp_path, monkeypatch, num_classes):
    """Issue 10 item 12. timm trusts the cfg: with its num_classes it would load strictly (a bare size
    mismatch), with any other it would drop the classifiers and load the rest silently. The file must hold
    the classes its tag declares, whatever num_classes asks for."""
    three_classes = timm.create_model(TAG, num_classes=3).state_dict()
    _install_state_dict(three_classes, published, tmp_path)
    monkeypatch.setattr(hf_constants, 'HF_HUB_OFFLINE', True)
    monkeypatch.setattr(hf_constants, 'HF_HUB_CACHE', str(tmp_path / 'cache'))
    kwargs = {} if num_classes is None else dict(num_classes=num_classes)
    with pytest.raises(CheckpointMismatchError, match=r'model\.safetensors of Hub repo wae-timm/wae_resnet18\.fmnist '
                       r'\(cached at .*\).*head_(low|fusion)\.fc\.weight has 3 classes.*num_classes=10'):
        timm.create_model(TAG, pretrained=True, **kwargs)


def test_hf_hub_with_an_empty_offline_cache_names_the_repo_and_file(tmp_path, monkeypatch):
    """Issue 10 item 13: timm reads config.json before our code runs; import wae_timm wraps that one call."""
    from huggingface_hub.errors import LocalEntryNotFoundError
    monkeypatch.setattr(hf_constants, 'HF_HUB_OFFLINE', True)
    monkeypatch.setattr(hf_constants, 'HF_HUB_CACHE', str(tmp_path / 'empty'))
    with pytest.raises(MissingWeightsError, match=r'hf-hub:wae-timm/wae_resnet18\.fmnist: config\.json of Hub repo '
                       r'wae-timm/wae_resnet18\.fmnist is neither reachable.*install-weights') as info:
        timm.create_model('hf-hub:wae-timm/wae_resnet18.fmnist', pretrained=True)
    assert isinstance(info.value, FileNotFoundError)  # callers catching timm's error type still catch it
    with pytest.raises(LocalEntryNotFoundError) as other:  # other organisations' repos: timm's own error
        timm.create_model('hf-hub:timm/resnet18.a1_in1k', pretrained=True)
    assert not isinstance(other.value, MissingWeightsError)


def test_install_is_idempotent_validates_first_and_never_touches_the_folder(published, tmp_path):
    from wae_timm.publish.hub import install_folder
    from wae_timm.publish.measurements import sha256_of_file
    folder = published['folder']
    before = {p.name: (sha256_of_file(p), p.stat().st_mtime_ns) for p in folder.iterdir()}
    cache = tmp_path / 'cache'
    snapshot, changed = install_folder(folder, cache)
    assert changed and (snapshot / 'model.safetensors').resolve().parent.name == 'blobs'
    files = {p: p.stat().st_mtime_ns for p in cache.rglob('*') if p.is_file()}
    assert install_folder(folder, cache) == (snapshot, False)  # setup run twice: nothing written
    assert {p: p.stat().st_mtime_ns for p in cache.rglob('*') if p.is_file()} == files
    blob = (snapshot / 'model.safetensors').resolve()
    blob.write_bytes(b'truncated by a killed setup')
    assert install_folder(folder, cache) == (snapshot, True)  # a damaged blob is replaced
    assert sha256_of_file(blob) == blob.name
    assert {p.name: (sha256_of_file(p), p.stat().st_mtime_ns) for p in folder.iterdir()} == before

    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'config.json').write_text('{"architecture": "wae_resnet18", "pretrained_cfg": {"tag": "fmnist"}}')
    save_file({'head_low.fc.weight': torch.zeros(3, 512)}, bad / 'model.safetensors')
    with pytest.raises(ValueError, match=r'bad/model\.safetensors is not a checkpoint of wae_resnet18\.fmnist'):
        cli_main(['install-weights', str(folder), str(bad), '--cache-dir', str(tmp_path / 'new_cache')])
    assert not (tmp_path / 'new_cache').exists()  # every folder is checked before the first write
    (bad / 'config.json').write_text('{"architecture": "wae_resnet18"}')
    with pytest.raises(ValueError, match=r'bad/config\.json is not a timm config\.json'):
        cli_main(['install-weights', str(bad), '--cache-dir', str(tmp_path / 'new_cache')])


def test_push_measure_records_the_written_file_and_binds_the_card(published, tmp_path, monkeypatch):
    """--measure scores the written (fp16) file through timm's loader; the card then quotes exactly that row."""
    import functools
    from wae_timm.publish import hub, measurements
    # the real measurement on the first 64 test images (the default, all 10000 + 1000, is the slow part)
    monkeypatch.setattr(hub, 'measure_weights', functools.partial(measurements.measure_weights, subsets=(64,)))
    checkpoint = tmp_path / 'weights.safetensors'
    save_file(published['reference'].state_dict(), checkpoint)
    results = tmp_path / 'results'
    results.mkdir()
    other = _measurement('e' * 64, 12.5)  # another file's row stays
    measurements.record_measurements(results, [other])
    out = tmp_path / 'out'
    assert cli_main(['push', str(checkpoint), TAG, '--out', str(out), '--dry-run', '--dtype', 'float16',
                     '--measure', '--results-dir', str(results)]) == 0
    sha256 = measurements.sha256_of_file(out / 'model.safetensors')
    row = measurements.find_measurement(results, TAG, sha256, 64)
    model = timm.create_model(f'local-dir:{out}', pretrained=True)
    assert float(row['top1']) == measurements.evaluate_test_split(model, find_tag(TAG).dataset, 64)['top1']
    assert measurements.find_measurement(results, TAG, 'e' * 64) == other
    card = (out / 'README.md').read_text()
    assert f'| 64 | {float(row["top1"]):.2f} |' in card and sha256 in card
    assert ModelCard(card).data.eval_results[0].metric_value == round(float(row['top1']), 2)
