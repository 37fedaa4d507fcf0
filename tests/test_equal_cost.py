"""The equal-cost grid: resumable row by row, each row's numbers bound to its checkpoint, and its report."""
from dataclasses import replace

import pytest
import torch

from wae_timm.data import FASHION_MNIST_DIR
from wae_timm.experiments.equal_cost import GRID_CONFIG, GRID_FILES, file_sha256, forget_rows, grid_rows, read_rows, \
    run_grid
from wae_timm.experiments.equal_cost_report import REPORT_FILES, RowSummary, verdict, write_grid_report
from wae_timm.experiments.reproduction import ResizedInput, build_row_model
from wae_timm.experiments.reproduction_setup import GRID_ROWS, SWEEP_RESOLUTIONS

needs_fashion_mnist = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / 't10k-images-idx3-ubyte.gz').is_file(),
    reason='Fashion-MNIST not installed: run tools/setup.sh')


def test_sweep_rows_run_the_backbone_at_their_resolution():
    seen = []
    for resolution in SWEEP_RESOLUTIONS:
        row = next(r for r in GRID_ROWS if r.key == f'backbone_{resolution}')
        model = build_row_model(row, GRID_CONFIG)
        assert isinstance(model, ResizedInput)
        model.model.forward = lambda x, seen=seen: seen.append(tuple(x.shape[-2:])) or torch.zeros(x.shape[0], 10)
        model(torch.rand(2, 3, 32, 32))
    assert seen == [(r, r) for r in SWEEP_RESOLUTIONS]


def test_grid_rows_bring_their_parents_and_refuse_unknown_names():
    assert [r.key for r in grid_rows(['wae_stage3'])] == ['wae_stage2', 'wae_stage3']
    with pytest.raises(ValueError, match='unknown grid rows'):
        grid_rows(['backbone_99'])


def test_verdict_needs_two_seeds_and_twice_the_standard_error():
    ours = RowSummary('wae_stage3', [90.0, 90.2, 90.1], [99.] * 3, [0, 1, 2])
    assert verdict(ours, RowSummary('backbone_16', [88.0, 88.1, 87.9], [99.] * 3, [0, 1, 2]))[0] == 'win'
    assert verdict(ours, RowSummary('backbone_32', [92.0, 92.1, 91.9], [99.] * 3, [0, 1, 2]))[0] == 'loss'
    assert verdict(ours, RowSummary('wavelet', [90.0, 90.3, 89.9], [99.] * 3, [0, 1, 2]))[0] == 'tie'
    assert verdict(ours, RowSummary('wavelet', [80.0], [99.], [0]))[0] == 'undecided'


@needs_fashion_mnist
def test_grid_resumes_row_by_row_and_binds_numbers_to_checkpoints(tmp_path):
    config = replace(GRID_CONFIG, epochs=1, finetune_epochs=1, train_images=64, test_images=64, batch_size=32,
                     wae_batch_size=32, latency_repeats=1, latency_batch=2)
    results, checkpoints = tmp_path / 'results', tmp_path / 'ckpt'
    rows = ['wae_stage3', 'backbone_16']
    first = run_grid(config, [0], results, checkpoints, rows=rows, progress=False, max_rows=1)
    assert [r['key'] for r in first] == ['wae_stage2']  # stopped after one row, as if killed there
    second = run_grid(config, [0], results, checkpoints, rows=rows, progress=False)
    assert [r['key'] for r in second] == ['wae_stage3', 'backbone_16']  # the finished row is skipped
    assert run_grid(config, [0], results, checkpoints, rows=rows, progress=False) == []
    recorded = read_rows(results / GRID_FILES['results'])
    assert [(r['key'], r['seed']) for r in recorded] == [('wae_stage2', '0'), ('wae_stage3', '0'), ('backbone_16', '0')]
    for row in recorded:
        assert row['weights_sha256'] == file_sha256(row['checkpoint'])
        assert 0 <= float(row['top1']) <= 100
    noise = read_rows(results / GRID_FILES['noise'])
    assert {n['key'] for n in noise} == {'wae_stage3'}  # the noise rows of Table 7
    markdown = write_grid_report(results)
    assert 'undecided' in markdown and (results / REPORT_FILES['markdown']).read_text() == markdown


def test_report_refuses_an_empty_grid(tmp_path):
    with pytest.raises(FileNotFoundError, match='no finished rows'):
        write_grid_report(tmp_path)


@needs_fashion_mnist
def test_grid_refuses_rows_of_another_schedule_until_they_are_forgotten(tmp_path):
    config = replace(GRID_CONFIG, epochs=1, finetune_epochs=1, train_images=32, test_images=32, batch_size=32,
                     wae_batch_size=32, latency_repeats=1, latency_batch=2)
    results, checkpoints = tmp_path / 'results', tmp_path / 'ckpt'
    run_grid(config, [0], results, checkpoints, rows=['wae_stage3', 'backbone_16'], progress=False)
    before = (results / GRID_FILES['results']).read_bytes()
    changed = replace(config, finetune_lr=config.finetune_lr * 10)
    with pytest.raises(ValueError, match=r'wae_stage3 seed 0: lr 0.0001 \(now 0.001\)'):
        run_grid(changed, [0], results, checkpoints, rows=['wae_stage3'], progress=False)
    assert (results / GRID_FILES['results']).read_bytes() == before  # nothing trained, nothing written
    # forgetting stage 2 forgets what continued it; other rows and seeds stay
    forgotten = forget_rows(results, ['wae_stage2'], [0, 1])
    assert sorted(r['key'] for r in forgotten) == ['wae_stage2', 'wae_stage3']
    assert [r['key'] for r in read_rows(results / GRID_FILES['results'])] == ['backbone_16']
    assert read_rows(results / GRID_FILES['noise']) == []
    retrained = run_grid(changed, [0], results, checkpoints, rows=['wae_stage3'], progress=False)
    assert [(r['key'], r['lr']) for r in retrained] == [('wae_stage2', config.lr), ('wae_stage3', 0.001)]
