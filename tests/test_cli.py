"""The ``wae-timm`` command line: every command's help, validate, ``run`` of a script, and the installed wheel."""
import dataclasses
import json
import os
import runpy
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from wae_timm.cli import COMMANDS, main, parse_args
from wae_timm.cli.train import config_from_args
from wae_timm.data import FASHION_MNIST_DIR, FashionMNIST, find_photographs
from wae_timm.train.classifier import ClassifierTrainConfig

REPO = Path(__file__).resolve().parents[1]

needs_fashion_mnist = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / 't10k-images-idx3-ubyte.gz').is_file(),
    reason='Fashion-MNIST not installed: run tools/setup.sh')

# what a timm repository script looks like to `run`: argparse-free, a sibling import, exit status from argv
TINY_SCRIPT = '''\
import sys

import timm
import torch

import tiny_helper  # a sibling module, as timm's scripts import theirs

model = timm.create_model('wae_resnet18', num_classes=3).eval()
with torch.no_grad():
    print('shape', tuple(model(torch.randn(1, 3, 32, 32)).shape))
print('argv', sys.argv)
print('name', __name__, tiny_helper.NAME)
print('wae_timm', sys.modules['wae_timm'].__file__)
if '--exit' in sys.argv:
    code = sys.argv[sys.argv.index('--exit') + 1]
    sys.exit(int(code) if code.isdigit() else code)
'''


@pytest.fixture
def tiny_script(tmp_path) -> Path:
    folder = tmp_path / 'scripts'
    folder.mkdir()
    (folder / 'tiny_helper.py').write_text("NAME = 'helper'\n")
    script = folder / 'tiny.py'
    script.write_text(TINY_SCRIPT)
    return script


def _clean_env() -> dict:
    """The environment without PYTHONPATH, so a subprocess imports wae_timm from where it is installed."""
    return {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}


@pytest.mark.parametrize('command', sorted(COMMANDS))
def test_every_command_has_help_via_python_m(command, monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', ['wae_timm', command, '--help'])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module('wae_timm', run_name='__main__', alter_sys=True)  # what `python -m wae_timm` runs
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f'usage: wae-timm {command} ')
    assert len(out.splitlines()) > 8  # the command's own description and flags, not just the listing


# the demo (pretrained classification, then the photograph): tests/test_pretrained_offline.py


def test_python_m_lists_every_command():
    result = subprocess.run([sys.executable, '-m', 'wae_timm', '--help'], capture_output=True, text=True,
                            cwd=REPO, check=True)
    for command in COMMANDS:
        assert f'\n    {command}' in result.stdout


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['trian'])
    assert exit_info.value.code == 2 and "invalid choice: 'trian'" in capsys.readouterr().err


def test_train_flags_are_the_config_fields_with_its_defaults():
    args = parse_args(['train', '--output', 'runs/x'])
    dests = {a.dest for a in args._parser._actions} - {'help', 'data', 'no_progress'}
    assert dests <= {f.name for f in dataclasses.fields(ClassifierTrainConfig)}
    defaults, config = ClassifierTrainConfig(output='runs/x'), config_from_args(args)
    assert tuple(config.decay_milestones) == defaults.decay_milestones  # the flag gives a list
    assert dataclasses.replace(config, decay_milestones=defaults.decay_milestones) == defaults


def test_usage_errors_name_the_argument(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['train-wae', '--photographs', '--output', str(tmp_path / 'wae.pt')])
    assert exit_info.value.code == 2 and '--output must be a .safetensors file' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(['benchmark', '--batch-sizes', '1', '32', '--rounds', '3'])
    assert exit_info.value.code == 2 and '--rounds needs one count per batch size' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(['push', 'ckpt.pth.tar', 'wae_resnet18.fmnist', '--out', str(tmp_path), '--model-kwargs', 'oops'])
    assert exit_info.value.code == 2 and "--model-kwargs expects key=value, got 'oops'" in capsys.readouterr().err


def test_benchmark_records_the_command_that_regenerates_it(tmp_path, monkeypatch, capsys):
    from wae_timm.cli import benchmark as benchmark_cli
    calls = {}

    def fake_run_benchmark(backbones, batch_sizes, rounds, backend, **kwargs):
        calls['run'] = (backbones, batch_sizes, rounds, backend, kwargs['device'], kwargs['clock'])
        return []

    def fake_write_results(rows, out_dir, name, env, final_step, command, overwrite=False):
        calls['command'], calls['name'] = command, name
        (out_dir / 'x.md').parent.mkdir(parents=True, exist_ok=True)
        (out_dir / 'x.md').write_text('table')
        return {'md': out_dir / 'x.md'}

    monkeypatch.setattr(benchmark_cli, 'run_benchmark', fake_run_benchmark)
    monkeypatch.setattr(benchmark_cli, 'write_results', fake_write_results)
    argv = ['--backbones', 'resnet18', '--batch-sizes', '1', '--rounds', '2', '--device', 'cpu',
            '--out-dir', str(tmp_path), '--clock', 'thread']
    assert main(['benchmark', *argv]) == 0
    assert calls['run'] == (['resnet18'], [1], {1: 2}, ['jit'], 'cpu', 'thread') and calls['name'] == 'benchmark_cpu'
    assert calls['command'] == 'PYTHONPATH=. python tools/benchmark.py ' + ' '.join(argv)
    assert capsys.readouterr().out.startswith('table')


# validate

def _validate(argv, capsys) -> dict:
    assert main(['validate', '-j', '0', '--no-progress', '--device', 'cpu', *argv]) == 0
    out = capsys.readouterr().out
    assert out.startswith(' * Acc@1 ')
    return json.loads(out.split('--result\n', 1)[1])


@needs_fashion_mnist
def test_validate_scores_a_checkpoint_on_fashion_mnist(tmp_path, capsys):
    torch.manual_seed(0)
    model = timm.create_model('wae_resnet18', num_classes=10).eval()
    checkpoint = tmp_path / 'model.safetensors'
    save_file(model.state_dict(), checkpoint)
    results = _validate(['--model', 'wae_resnet18', '--checkpoint', str(checkpoint), '--dataset', 'fashion_mnist',
                         '--num-samples', '24', '-b', '16'], capsys)

    test_set = FashionMNIST('test', indices=range(24))
    x = torch.stack([test_set[i][0] for i in range(24)])
    with torch.no_grad():
        logits = model(x)
    top1 = 100 * (logits.argmax(1) == test_set.labels).float().mean().item()
    top5 = 100 * (logits.topk(5).indices == test_set.labels[:, None]).any(1).float().mean().item()
    loss = torch.nn.functional.cross_entropy(logits, test_set.labels).item()
    assert results['count'] == 24 and results['img_size'] == 32
    assert results['top1'] == pytest.approx(top1, abs=1e-3) and results['top5'] == pytest.approx(top5, abs=1e-3)
    assert results['top1_err'] == pytest.approx(100 - top1, abs=1e-3)
    assert results['loss'] == pytest.approx(loss, rel=1e-4)
    assert results['model'] == 'wae_resnet18' and results['param_count'] == pytest.approx(11.9, abs=0.1)


def test_validate_on_an_image_folder_takes_its_classes_and_size(tmp_path, capsys):
    """Two classes of real photographs (made small: JPEG decoding of wallpapers is the slow part)."""
    for index, path in enumerate(find_photographs()[:4]):
        folder = tmp_path / 'data' / 'validation' / ('ab'[index % 2])
        folder.mkdir(parents=True, exist_ok=True)
        Image.open(path).convert('RGB').resize((96, 72)).save(folder / f'{index}.png')
    results = _validate([str(tmp_path / 'data'), '--model', 'wae_resnet18', '--img-size', '64', '-b', '3'], capsys)
    assert results['count'] == 4 and results['img_size'] == 64 and results['top5'] == 100.0  # 2 classes
    assert results['crop_pct'] == pytest.approx(0.875) and results['interpolation'] == 'bilinear'


@pytest.mark.parametrize('argv, message', [
    (['--model', 'wae_resnet18'], 'give --data-dir DIR (an image folder) or --dataset fashion_mnist'),
    (['--model', 'wae_resnet18', '--data-dir', 'no/such/dir'], '--data-dir no/such/dir is not a folder'),
    (['--model', 'wae_resnet18', '--dataset', 'fashion_mnist', '--split', 'validation'],
     "--split for --dataset fashion_mnist must be one of ('train', 'test'), got 'validation'"),
    (['--model', 'wae_resnet18', '--dataset', 'fashion_mnist', '--img-size', '64'], '--img-size applies to image'),
    (['--model', 'wae_resnet18', '--dataset', 'fashion_mnist', '--checkpoint', 'no.safetensors'],
     '--checkpoint no.safetensors is not a file'),
    (['--model', 'wae_resnet18', '--dataset', 'fashion_mnist', '-b', '0'], '--batch-size must be positive, got 0'),
    (['--model', 'wae_resnet18', '--dataset', 'fashion_mnist', '--pretrained', '--checkpoint', 'x'],
     'not allowed with argument --pretrained'),
])
def test_validate_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['validate', *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@needs_fashion_mnist
def test_validate_refuses_a_model_with_fewer_outputs_than_classes(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['validate', '--model', 'wae_resnet18', '--dataset', 'fashion_mnist', '--num-classes', '5'])
    assert exit_info.value.code == 2
    assert 'wae_resnet18 has 5 outputs but the dataset 10 classes' in capsys.readouterr().err


@needs_fashion_mnist
@pytest.mark.parametrize('model_name', ['resnet18', 'wae_resnet18'])
def test_validate_names_a_truncated_checkpoint_of_any_model(tmp_path, model_name):
    """A timm baseline's checkpoint went through timm's loader, whose errors do not name the file."""
    from wae_timm.models.pretrained import CorruptWeightsError
    good = tmp_path / 'good.safetensors'
    save_file({k: v.contiguous() for k, v in timm.create_model(model_name, num_classes=10).state_dict().items()},
              str(good))
    bad = tmp_path / 'bad.safetensors'
    bad.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CorruptWeightsError, match=rf'--checkpoint {bad} is not a readable checkpoint'):
        main(['validate', '--model', model_name, '--dataset', 'fashion_mnist', '--checkpoint', str(bad)])


# run

def test_run_passes_argv_and_registers_the_models(tiny_script, capsys):
    argv, path = sys.argv[:], sys.path[:]
    args = ['data dir', '--model', 'wae_resnet18', '-h', '--', '--exit', '0']
    assert main(['run', str(tiny_script), *args]) == 0
    out = capsys.readouterr().out
    assert 'shape (1, 3)' in out and 'name __main__ helper' in out
    assert f'argv {[str(tiny_script), *args]}' in out
    assert sys.argv == argv and sys.path == path


@pytest.mark.parametrize('code, status, stderr', [('3', 3, ''), ('0', 0, ''), ('boom', 1, 'boom')])
def test_run_passes_the_exit_status_through(tiny_script, code, status, stderr, capsys):
    assert main(['run', str(tiny_script), '--exit', code]) == status
    assert capsys.readouterr().err.strip() == stderr


def test_run_of_a_missing_script_is_a_one_line_error(tmp_path, capsys):
    assert main(['run', str(tmp_path / 'validate.py'), '--model', 'x']) == 2
    err = capsys.readouterr().err
    assert err == f'wae-timm run: error: script {tmp_path / "validate.py"} not found\n'
    assert main(['run', str(tmp_path)]) == 2
    assert 'is not a file' in capsys.readouterr().err


def test_run_needs_a_script(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['run'])
    assert exit_info.value.code == 2 and 'required: SCRIPT' in capsys.readouterr().err


# the installed wheel

def test_wheel_installs_the_command_line_and_the_weights(tmp_path, tiny_script):
    """Build the wheel, install it into a fresh venv, run `wae-timm` from outside the repository."""
    source = tmp_path / 'source'  # a copy: building in the repository would leave build/ and *.egg-info there
    shutil.copytree(REPO / 'wae_timm', source / 'wae_timm', ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    for name in ('pyproject.toml', 'README.md'):
        shutil.copy2(REPO / name, source / name)
    env = _clean_env()
    dist = tmp_path / 'dist'
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation', '-w', str(dist),
                    '.'], cwd=source, env=env, check=True)
    wheel, = dist.glob('wae_timm-*.whl')
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith('.dist-info/entry_points.txt'))
    shipped = {p.relative_to(REPO).as_posix() for p in (REPO / 'wae_timm' / 'weights').iterdir()}
    assert shipped and shipped <= names
    assert {'wae_timm/__main__.py', 'wae_timm/cli/__init__.py', 'wae_timm/cli/validate.py'} <= names
    assert 'wae-timm = wae_timm.cli:console_main' in entry_points

    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', '--without-pip', str(venv)], check=True)
    python, wae_timm_cli = venv / 'bin' / 'python', venv / 'bin' / 'wae-timm'
    subprocess.run([str(python), '-m', 'pip', 'install', '-q', '--no-deps', '--no-index', str(wheel)],
                   env=env, check=True)
    outside = tiny_script.parent  # in tmp_path, not the repository
    listing = subprocess.run([str(wae_timm_cli), '--help'], cwd=outside, env=env, capture_output=True, text=True,
                             check=True)
    assert listing.stdout.startswith('usage: wae-timm ') and 'validate' in listing.stdout
    result = subprocess.run([str(wae_timm_cli), 'run', tiny_script.name, 'x', '--exit', '4'], cwd=outside, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 4, result.stderr
    assert 'shape (1, 3)' in result.stdout and "argv ['tiny.py', 'x', '--exit', '4']" in result.stdout
    module_file = Path(result.stdout.split('wae_timm ', 1)[1].splitlines()[0])
    assert module_file.resolve().is_relative_to(venv.resolve()), module_file


def test_user_errors_are_one_line_and_exit_2_at_the_command_line(tmp_path):
    """`python -m wae_timm` (as the console script): a missing file is one line naming it, no traceback."""
    missing = tmp_path / 'no_such_checkpoint.pth.tar'
    command = [sys.executable, '-m', 'wae_timm', 'push', str(missing), 'wae_resnet18.fmnist',
               '--out', str(tmp_path / 'out'), '--dry-run']
    env = {k: v for k, v in os.environ.items() if k != 'WAE_TIMM_DEBUG'}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if 'error' in line]
    assert len(errors) == 1 and str(missing) in errors[0] and errors[0].startswith('wae-timm push: error:')
    assert 'Traceback' not in result.stderr
    debug = subprocess.run(command, capture_output=True, text=True, env=dict(env, WAE_TIMM_DEBUG='1'), cwd=tmp_path)
    assert debug.returncode == 1 and 'Traceback' in debug.stderr
