"""The weights shipped in hub/ load offline through timm's own machinery after the README's setup (issue 15).

A fresh Hugging Face cache (a temporary HF_HOME) is filled by the command
tools/setup.sh runs; then a new process with HF_HUB_OFFLINE=1 builds the model
with ``timm.create_model(..., pretrained=True)``, ``hf-hub:`` and
``torch.hub.load``. Its weights and outputs must be bit-identical to the stored
file's, and its top-1 on the first 1000 test images must equal the number
recorded for that file (matched by sha256) in results/pretrained_weights.csv,
with tolerance 0. Nothing here is hard-coded: the expected numbers are the
folder's recorded results.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

import wae_timm  # noqa: F401  (registers the models)
from wae_timm.models.pretrained import SHIPPED_FOLDERS
from wae_timm.models.wae import published_tags
from wae_timm.publish.hub import EXPORTED_FILES, find_tag, read_exported_folder
from wae_timm.publish.measurements import SLICE_IMAGES, find_measurement, sha256_of_file
from wae_timm.publish.model_card import render_model_card

REPO = Path(__file__).resolve().parents[1]
TAG = 'wae_resnet18.fmnist'
SHIPPED = REPO / SHIPPED_FOLDERS / TAG
RESULTS = REPO / 'results'
BUILD_COMMAND = ('wae-timm push output/fashion_mnist_grid/seed0/wae_stage3.safetensors wae_resnet18.fmnist '
                 '--out hub/wae_resnet18.fmnist --dtype float16 --measure --dry-run (docs/publishing.md)')


def _folder_state(folder: Path):
    return {p.name: (sha256_of_file(p), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def _env(home: Path, offline: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith('HF_')}  # the user's cache settings out
    env.update(HF_HOME=str(home), PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')
    if offline:
        env['HF_HUB_OFFLINE'] = '1'
    return env


@pytest.fixture(scope='module')
def shipped():
    assert (SHIPPED / 'model.safetensors').is_file(), f'no shipped weights in {SHIPPED}: build them with {BUILD_COMMAND}'
    sha256 = sha256_of_file(SHIPPED / 'model.safetensors')
    recorded = find_measurement(RESULTS, TAG, sha256, SLICE_IMAGES)
    assert recorded is not None, f'results/pretrained_weights.csv has no row for {SHIPPED}/model.safetensors ({sha256})'
    return dict(sha256=sha256, slice_top1=float(recorded['top1']))


@pytest.fixture(scope='module')
def fresh_cache(shipped, tmp_path_factory):
    """A new HF_HOME filled by the command tools/setup.sh runs, twice (setup run twice is fine)."""
    home = tmp_path_factory.mktemp('hf_home')
    before = _folder_state(SHIPPED)
    command = [sys.executable, '-m', 'wae_timm', 'install-weights', f'{SHIPPED_FOLDERS}/{TAG}']
    first = subprocess.run(command, cwd=REPO, env=_env(home, offline=True), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(command, cwd=REPO, env=_env(home, offline=True), capture_output=True, text=True)
    assert first.stdout.startswith('installed: ') and second.stdout.startswith('already installed: '), second.stdout
    assert _folder_state(SHIPPED) == before  # the shipped folder is only read
    return home


def test_shipped_folder_is_exactly_what_goes_to_the_hub(shipped):
    assert sorted(p.name for p in SHIPPED.iterdir()) == sorted(EXPORTED_FILES)
    tag, weights = read_exported_folder(SHIPPED)  # a registered tag, the model's keys and shapes, finite values
    assert tag.name == TAG and published_tags() == [tag]
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float16}
    assert (SHIPPED / 'model.safetensors').stat().st_size < 25e6
    config = json.loads((SHIPPED / 'config.json').read_text())
    assert config['architecture'] == 'wae_resnet18' and config['pretrained_cfg']['tag'] == 'fmnist'
    # the card is the one results/ gives for this exact file (tools/make_model_cards.py --check)
    card = (SHIPPED / 'README.md').read_text(encoding='utf-8')
    assert card == render_model_card(tag, RESULTS, weights_sha256=shipped['sha256'])
    assert shipped['sha256'] in card and f'{shipped["slice_top1"]:.2f}' in card


def test_shipped_folder_stays_out_of_the_wheel():
    from setuptools import find_namespace_packages
    from setuptools.config.pyprojecttoml import read_configuration
    config = read_configuration(REPO / 'pyproject.toml', expand=False)['tool']['setuptools']
    packages = find_namespace_packages(str(REPO), include=config['packages']['find']['include'])
    assert packages and all(p.split('.')[0] == 'wae_timm' for p in packages)
    assert set(config['package-data']) == {'wae_timm'}  # package data only inside the package
    assert not (REPO / SHIPPED_FOLDERS / '__init__.py').exists()


def test_setup_installs_every_shipped_folder():
    setup = (REPO / 'tools' / 'setup.sh').read_text()
    assert f'shipped=({SHIPPED_FOLDERS}/*/)' in setup
    assert 'python -m wae_timm install-weights "${shipped[@]}"' in setup


def test_offline_after_setup_loads_bit_identical_weights_and_scores_as_recorded(shipped, fresh_cache, tmp_path):
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / 'x.pt')
    code = f'''
import timm, torch, wae_timm
from wae_timm.publish.measurements import SLICE_IMAGES, evaluate_test_split
torch.set_num_threads(1)
x = torch.load(r"{tmp_path / 'x.pt'}", weights_only=True)
models = dict(
    tag=timm.create_model("{TAG}", pretrained=True),
    hf_hub=timm.create_model("hf-hub:{find_tag(TAG).hf_hub_id}", pretrained=True),
    torch_hub=torch.hub.load(r"{REPO}", "wae_resnet18", source="local", pretrained=True, pretrained_cfg="fmnist"))
with torch.no_grad():
    outputs = {{name: m.eval()(x) for name, m in models.items()}}
result = evaluate_test_split(models["tag"], "zalando-datasets/fashion_mnist", SLICE_IMAGES)
torch.save(dict(outputs=outputs, state=models["tag"].state_dict(), top1=result["top1"], count=result["count"]),
           r"{tmp_path / 'loaded.pt'}")
'''
    run = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=_env(fresh_cache, offline=True),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = torch.load(tmp_path / 'loaded.pt', weights_only=True)

    stored = load_file(SHIPPED / 'model.safetensors')
    assert loaded['state'].keys() == stored.keys()
    for key, value in stored.items():  # fp16 in the file, the model's fp32 holds exactly those values
        assert torch.equal(loaded['state'][key], value.to(loaded['state'][key].dtype)), key
    reference = timm.create_model(TAG).eval()
    reference.load_state_dict(stored)
    with torch.no_grad():
        expected = reference(x)
    for name, output in loaded['outputs'].items():
        assert torch.equal(output, expected), name
    assert loaded['count'] == SLICE_IMAGES
    assert loaded['top1'] == shipped['slice_top1']  # tolerance 0: the number recorded with these weights


def test_demo_prints_the_pretrained_accuracy_next_to_the_recorded_one(shipped, fresh_cache, tmp_path):
    """The README's first command (with a small model for the photograph, to stay fast)."""
    run = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'demo.py'), '--test-images', str(SLICE_IMAGES), '--model', 'wae_resnet18',
         '--classification-figure', str(tmp_path / 'classes.png'), '--figure', str(tmp_path / 'photo.png')],
        cwd=tmp_path, env=_env(fresh_cache, offline=True), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    top1 = f'top-1 {shipped["slice_top1"]:.2f}%'
    assert f"timm.create_model('{TAG}', pretrained=True)" in out and shipped['sha256'] in out
    assert f'the first {SLICE_IMAGES} real images' in out and f'{top1}, top-5' in out  # measured now
    assert f'{top1} (the same)' in out  # recorded for this sha256
    # the photograph: the shipped stage-1 WAE's shapes and reconstruction, then the FLOP table
    assert 'I_L (1, 3, 112, 112)  I_H (1, 3, 112, 112)  reconstruction (1, 3, 224, 224)' in out
    psnr = float(re.search(r'reconstruction PSNR ([\d.]+) dB', out).group(1))
    assert psnr > 25, f'the shipped stage-1 WAE reconstructs at {psnr} dB'
    assert '| wae_resnet18 | 224 |' in out and '| resnet18 | 224 |' in out
    assert (tmp_path / 'classes.png').stat().st_size > 10_000 and (tmp_path / 'photo.png').stat().st_size > 10_000


def test_demo_without_installed_weights_says_how_and_exits_2(tmp_path):
    run = subprocess.run([sys.executable, str(REPO / 'tools' / 'demo.py')], cwd=tmp_path,
                         env=_env(tmp_path / 'empty_home', offline=True), capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == ''
    message = [line for line in run.stderr.splitlines() if line.startswith('demo:')]
    assert len(message) == 1 and 'bash tools/setup.sh' in message[0] and f'install-weights hub/{TAG}' in message[0]
