"""The stage-3 check for stage-1 weights: a small stage 2 then stage 3 with the project's trainer."""
import math
import runpy
from pathlib import Path

import pytest

from wae_timm.data.photographs import split_photographs, write_photograph_folder
from wae_timm.experiments.stage3_drift import Stage3Probe, ratio_summary, stage3_transform_drift

pytestmark = pytest.mark.usefixtures('single_threaded_torch')
REPO = Path(__file__).resolve().parents[1]


def test_photograph_folder_splits_training_photographs_into_an_image_folder(tmp_path):
    photos = split_photographs()[0][:5]
    root = write_photograph_folder(tmp_path, photos, size=(24, 18))
    train, validation = sorted((root / 'train').rglob('*.png')), sorted((root / 'validation').rglob('*.png'))
    assert len(train) == 3 and len(validation) == 2  # every third photograph validates
    assert {p.parent.name for p in train} == {'even', 'odd'}


def test_drift_trains_the_wae_in_stage3_and_keeps_it_at_lr_0(tmp_path):
    probe = Stage3Probe(img_size=32, photo_size=(40, 36), stage2_epochs=1, stage3_epochs=2, stage3_lr=1e-3)
    drift = stage3_transform_drift('photos', probe, photographs=split_photographs()[0][:6], workdir=tmp_path)
    assert len(drift['stage3']) == len(drift['untouched']) == 2
    assert all(math.isfinite(v) and v > 0 for v in drift['untouched'])
    assert drift['stage3'][-1] != pytest.approx(drift['untouched'][-1], rel=1e-3)  # the WAE was trained
    assert (tmp_path / 'stage2' / 'model.safetensors').exists()  # stage 3 started from stage 2


def test_ratio_summary_gives_the_median_and_counts_overflows():
    rows = [dict(weights='w', setting=1, ratio=r) for r in (2., math.inf, 5.)]
    assert ratio_summary(rows, keys=('weights', 'setting')) == [
        dict(weights='w', setting=1, runs=3, median_ratio=5., overflows=1)]


def test_stage3_drift_tool_refuses_bad_weights_and_an_existing_output(tmp_path, capsys):
    main = runpy.run_path(str(REPO / 'tools' / 'stage3_drift.py'))['main']
    with pytest.raises(SystemExit):
        main(['--weights', str(tmp_path / 'missing.safetensors'), '--out', str(tmp_path / 'out.csv')])
    assert 'missing.safetensors' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['--match-high-band', str(tmp_path / 'absent.safetensors'), '--out', str(tmp_path / 'out.csv')])
    assert 'absent.safetensors' in capsys.readouterr().err
    (tmp_path / 'out.csv').write_text('mine\n')
    with pytest.raises(SystemExit):
        main(['--out', str(tmp_path / 'out.csv')])
    assert '--overwrite' in capsys.readouterr().err and (tmp_path / 'out.csv').read_text() == 'mine\n'
