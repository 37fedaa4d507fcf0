"""Side-by-side speed benchmark: backbone at 224 and 112, the WAE model and the paper's baselines.

Everything is timed in one process and interleaved: each *round* calls every
entry (a model prepared by one optimisation step of
:data:`STEPS`) once, starting one entry later
than the round before, so a burst of load from other processes falls on all
models alike instead of on whichever ran during it. Statistics are over
rounds: median, min and max of the wall time of one call (CUDA: CUDA events
after warm-up). Each model's speed-up is the backbone at 224's median divided
by its own, taken from the same batch size and either the same optimisation
step (fair: both optimised alike) or the backbone's eager step.

The candidates are the methods of the paper's comparison
(:data:`wae_timm.models.comparison.COMPARISON`), each run eager and through the fast
path of every requested backend (jit, compile, onnxruntime), in fp32 or bf16 (weights and
inputs), on CPU or CUDA. What a run writes (CSV, the same rows in timm benchmark.py's
columns, markdown summary, plot) is in :mod:`wae_timm.experiments.speed_report`.
"""
import copy
import os
import statistics
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
from tqdm import tqdm

from .flops import count_flops, parameter_count
from ..deploy.inference import prepare_for_inference
from ..models.comparison import COMPARISON, REFERENCE, WAE

__all__ = [
    'Candidate', 'Entry', 'TimingRow', 'Target', 'TARGETS', 'STEPS', 'PRECISIONS', 'TIMM_COLUMNS',
    'default_candidates', 'interleaved_order', 'run_benchmark', 'speedups', 'check_targets', 'check_precision',
    'timm_rows', 'step_applies', 'ablation_steps', 'REFERENCE_LABEL', 'ABLATED_LABELS',
]

# optimisation steps (prepare_for_inference arguments), cumulative up to channels_last; then alternative
# graph backends on top of it (onnxruntime's graph is NCHW), and the jit step with the WAE model's two
# branches run concurrently (models with a fusion branch only)
STEPS: Dict[str, Dict[str, object]] = {
    'eager': dict(fold_bn=False, channels_last=False, backend='eager'),
    'fold BN': dict(fold_bn=True, channels_last=False, backend='eager'),
    'fold BN + channels_last': dict(fold_bn=True, channels_last=True, backend='eager'),
    'fold BN + channels_last + jit freeze': dict(fold_bn=True, channels_last=True, backend='jit'),
    'fold BN + channels_last + torch.compile': dict(fold_bn=True, channels_last=True, backend='compile'),
    'fold BN + onnxruntime': dict(fold_bn=True, channels_last=False, backend='onnxruntime'),
    'fold BN + channels_last + jit freeze + concurrent branches': dict(
        fold_bn=True, channels_last=True, backend='jit', concurrent_branches=True),
}
EAGER = 'eager'
CONCURRENT = 'fold BN + channels_last + jit freeze + concurrent branches'
# a step only some models can take is compared with the backbone's step of the same backend
FAIR_REFERENCE_STEP = {CONCURRENT: 'fold BN + channels_last + jit freeze'}
PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16}


def optimised_step(backend: str) -> str:
    """The step name of the full fast path with graph backend ``backend`` ('jit', 'compile' or 'onnxruntime')."""
    for name, args in STEPS.items():
        if args['backend'] == backend and backend != 'eager':
            return name
    raise ValueError(f'no optimisation step uses backend {backend!r}; expected one of '
                     f"{sorted({a['backend'] for a in STEPS.values()} - {'eager'})}")


def ablation_steps(backends: Sequence[str]) -> List[str]:
    """The ablation's steps: every step of :data:`STEPS` but onnxruntime's, unless it is one of ``backends``
    (it needs the optional ``deploy`` extra)."""
    return [name for name, args in STEPS.items() if args['backend'] != 'onnxruntime' or 'onnxruntime' in backends]


def step_applies(step: str, model: nn.Module) -> bool:
    """Whether ``model`` can take ``step``: the concurrent-branches step needs a fusion branch."""
    if STEPS[step].get('concurrent_branches'):
        return hasattr(model, 'concurrent_branches') and bool(getattr(model, 'fusion', False))
    return True


@dataclass(frozen=True)
class Candidate:
    """One model of the comparison: what it is, which timm model, at which input size."""
    label: str  # what the paper calls it: 'backbone @224', 'WAE', 'I_R', ...
    model_name: str  # timm name (wae_timm registered)
    input_size: int
    backbone: str  # the reference is this backbone at 224


REFERENCE_LABEL = REFERENCE.label
ABLATED_LABELS = (REFERENCE_LABEL, WAE.label)  # the models that run every step of the ablation


def default_candidates(backbone: str) -> List[Candidate]:
    """The paper's comparison for ``backbone``: every method of :data:`~wae_timm.models.comparison.COMPARISON`
    (the backbone at 224 and 112, its WAE model and the baselines), in the table's order."""
    return [Candidate(m.label, m.model_name(backbone), m.input_size, backbone) for m in COMPARISON]


@dataclass
class Entry:
    """A candidate prepared by one optimisation step, ready to be timed."""
    candidate: Candidate
    step: str
    forward: Callable[[torch.Tensor], torch.Tensor]
    inputs: torch.Tensor
    precision: str = 'fp32'
    max_abs_diff: float = 0.  # largest difference of its outputs from the eager model's
    samples: List[float] = field(default_factory=list)  # seconds per call, one per round
    loads: List[float] = field(default_factory=list)  # 1-min load average at each sample


@dataclass
class TimingRow:
    """One CSV row: a model at one optimisation step and batch size."""
    backbone: str
    label: str
    model: str
    input_size: int
    step: str
    backend: str  # the step's backend: eager, jit, compile or onnxruntime
    precision: str  # fp32 or bf16 (weights and inputs)
    batch_size: int
    device: str
    threads: int
    rounds: int
    median_ms: float
    min_ms: float
    max_ms: float
    throughput_img_s: float  # batch_size / median
    speedup_same_step: float = float('nan')  # the fair ratio: backbone @224 at the same step / this, medians
    speedup_vs_eager_backbone: float = float('nan')  # backbone @224 eager / this, medians
    gflops: float = float('nan')  # fvcore, batch 1 (one multiply-add = one FLOP)
    params_m: float = float('nan')
    max_abs_diff: float = 0.
    load_avg_1m: float = float('nan')  # mean over this row's samples


def interleaved_order(num_entries: int, rounds: int) -> List[List[int]]:
    """Per round, the order to call entries in: every entry once, round ``r`` starting at entry ``r``.

    >>> interleaved_order(3, 2)
    [[0, 1, 2], [1, 2, 0]]
    """
    return [[(r + i) % num_entries for i in range(num_entries)] for r in range(rounds)]


def time_call(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, clock: str = 'wall') -> float:
    """Seconds of one ``forward(x)``: CUDA events on a GPU (the kernels, not the launch); on CPU wall
    time, or with ``clock='thread'`` the CPU time of the calling thread. With one torch thread the
    latter is the compute the model used, and does not count time the OS gave to other processes,
    which makes it the robust measure on a shared machine."""
    if x.device.type == 'cuda':
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        forward(x)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    timer = time.thread_time if clock == 'thread' else time.perf_counter
    start_time = timer()
    forward(x)
    return timer() - start_time


def _load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')


def check_precision(precision: str, device: torch.device, backends: Sequence[str] = ()) -> torch.dtype:
    """The dtype of ``precision`` ('fp32' or 'bf16'); raises ``ValueError`` for a combination that cannot run."""
    if precision not in PRECISIONS:
        raise ValueError(f'precision={precision!r}: expected one of {tuple(PRECISIONS)}')
    if precision != 'fp32' and 'onnxruntime' in backends:
        raise ValueError(f'precision={precision!r} with the onnxruntime backend: its session runs the fp32 export '
                         '(use --precision fp32, or leave onnxruntime out of --backends)')
    if device.type == 'cuda' and 'onnxruntime' in backends:
        raise ValueError('the onnxruntime backend runs on the CPU (CPUExecutionProvider): leave it out of '
                         '--backends on CUDA')
    return PRECISIONS[precision]


def prepare_entries(
        candidates: Sequence[Candidate],
        steps_for: Callable[[Candidate], Sequence[str]],
        batch_size: int,
        device: torch.device,
        create: Callable[[str], nn.Module],
        warmup: int = 3,
        progress: bool = True,
        precision: str = 'fp32',
) -> List[Entry]:
    """Build, prepare and warm up every (candidate, step); check each step's outputs against eager.

    ``create(model_name)`` builds a model (``timm.create_model`` by default in
    :func:`run_benchmark`) once per candidate; every step gets its own copy of it
    (steps change models in place), so all steps share the same weights. The first
    step of each candidate must be ``'eager'``: it gives the reference outputs (at the same
    ``precision``: weights and inputs in that dtype). A step a model cannot take
    (:func:`step_applies`) is left out for it.
    """
    dtype = check_precision(precision, device)
    entries = []
    generator = torch.Generator().manual_seed(0)
    bar = tqdm(total=sum(len(steps_for(c)) for c in candidates), desc=f'prepare batch {batch_size}',
               disable=not progress)
    for candidate in candidates:
        x = torch.randn(batch_size, 3, candidate.input_size, candidate.input_size, generator=generator)
        x = x.to(device=device, dtype=dtype)
        reference: Optional[torch.Tensor] = None
        base = create(candidate.model_name).to(device=device, dtype=dtype).eval()
        for step in steps_for(candidate):
            bar.update()
            if not step_applies(step, base):
                continue
            args = dict(STEPS[step])
            model = copy.deepcopy(base)
            if reference is None and step != EAGER:
                raise ValueError(f'the first step of {candidate.model_name} must be {EAGER!r}, got {step!r}')
            if args['backend'] == 'onnxruntime':
                args['example_input'] = x[:1]
            forward = prepare_for_inference(model, **args)
            inputs = x.contiguous(memory_format=torch.channels_last) if args['channels_last'] else x
            with torch.inference_mode():
                # eager needs one call to fill oneDNN's primitive cache; graph backends optimise on later calls
                for _ in range(warmup if args['backend'] != 'eager' else 1):
                    out = forward(inputs)
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            if reference is None:
                reference = out.float()
            entry = Entry(candidate, step, forward, inputs, precision)
            entry.max_abs_diff = float((out.float().to(reference.device) - reference).abs().max())
            entries.append(entry)
    bar.close()
    return entries


def time_entries(
        entries: Sequence[Entry], rounds: int, progress: bool = True, desc: str = '', clock: str = 'wall') -> None:
    """Call every entry once per round, in :func:`interleaved_order`, recording times and load."""
    schedule = interleaved_order(len(entries), rounds)
    with torch.inference_mode(), tqdm(total=rounds * len(entries), desc=desc, disable=not progress) as bar:
        for order in schedule:
            for index in order:
                entry = entries[index]
                entry.samples.append(time_call(entry.forward, entry.inputs, clock))
                entry.loads.append(_load_average())
                bar.update()


def summarise(entries: Sequence[Entry], batch_size: int) -> List[TimingRow]:
    """One :class:`TimingRow` per entry: median/min/max in ms, throughput, then :func:`speedups`."""
    rows = []
    for e in entries:
        median = statistics.median(e.samples)
        rows.append(TimingRow(
            backbone=e.candidate.backbone, label=e.candidate.label, model=e.candidate.model_name,
            input_size=e.candidate.input_size, step=e.step, backend=str(STEPS[e.step]['backend']),
            precision=e.precision, batch_size=batch_size,
            device=e.inputs.device.type, threads=torch.get_num_threads(), rounds=len(e.samples),
            median_ms=median * 1000, min_ms=min(e.samples) * 1000, max_ms=max(e.samples) * 1000,
            throughput_img_s=batch_size / median, max_abs_diff=e.max_abs_diff,
            load_avg_1m=statistics.fmean(e.loads) if e.loads else float('nan')))
    return speedups(rows)


def speedups(rows: Sequence[TimingRow]) -> List[TimingRow]:
    """Fill each row's speed-ups over its backbone at 224 (same batch size, device and precision): the fair
    one (the backbone at the same step, or at :data:`FAIR_REFERENCE_STEP`'s) and the one over eager."""
    reference: Dict[Tuple[str, str, int, str, str], float] = {
        (r.backbone, r.step, r.batch_size, r.device, r.precision): r.median_ms
        for r in rows if r.label == REFERENCE_LABEL}
    for r in rows:
        fair_step = FAIR_REFERENCE_STEP.get(r.step, r.step)
        same = reference.get((r.backbone, fair_step, r.batch_size, r.device, r.precision))
        eager = reference.get((r.backbone, EAGER, r.batch_size, r.device, r.precision))
        r.speedup_same_step = same / r.median_ms if same else float('nan')
        r.speedup_vs_eager_backbone = eager / r.median_ms if eager else float('nan')
    return list(rows)


def create_with_wae_padding(model_name: str, wae_padding: str = 'zeros') -> nn.Module:
    """``timm.create_model(model_name)``, its learned WAE (if it has one) padding with ``wae_padding``.

    Models without a learned WAE (the backbone, Wavelet+CNN, I_R) do not take the argument and are
    built as they are; so one run times both kinds side by side.
    """
    model = timm.create_model(model_name)
    if wae_padding != 'zeros' and getattr(model, 'decomposition', None) == 'wae':
        model = timm.create_model(model_name, wae_padding=wae_padding)
    return model


def run_benchmark(
        backbones: Sequence[str] = ('resnet50', 'vgg16'),
        batch_sizes: Sequence[int] = (1, 32),
        rounds: Optional[Dict[int, int]] = None,
        backends: Sequence[str] = ('jit',),
        ablation_batch_sizes: Sequence[int] = (1,),
        device: str = 'cpu',
        warmup: int = 3,
        create: Optional[Callable[[str], nn.Module]] = None,
        candidates: Optional[Sequence[Candidate]] = None,
        steps: Optional[Sequence[str]] = None,
        progress: bool = True,
        clock: str = 'wall',
        precision: str = 'fp32',
        wae_padding: str = 'zeros',
) -> List[TimingRow]:
    """Time every candidate of ``backbones`` at each batch size; returns rows with speed-ups and FLOPs.

    Every candidate runs eager and with the full fast path of each of ``backends``
    ('jit', 'compile', 'onnxruntime'); the backbone at 224 and the WAE model also run the
    :func:`ablation_steps` (or those named in ``steps``) at ``ablation_batch_sizes``
    (the ablation). Each batch size is one interleaved phase;
    ``rounds[batch_size]`` calls per entry (default 10 at batch 1, 2 otherwise).
    ``candidates`` replaces the :func:`default_candidates` of ``backbones``; ``clock``: see :func:`time_call`;
    ``precision``: 'fp32' or 'bf16' (weights and inputs cast; see :func:`check_precision`);
    ``wae_padding``: how the models with a learned WAE pad (see :func:`create_with_wae_padding`).
    """
    if isinstance(backends, str):
        backends = (backends,)
    create = create or partial(create_with_wae_padding, wae_padding=wae_padding)
    torch_device = torch.device(device)
    check_precision(precision, torch_device, backends)
    if candidates is None:
        candidates = [c for b in backbones for c in default_candidates(b)]
    final_steps = [optimised_step(b) for b in backends]
    ablation = list(steps) if steps else ablation_steps(backends)
    rows: List[TimingRow] = []
    for batch_size in batch_sizes:
        def steps_for(candidate: Candidate) -> List[str]:
            if batch_size in ablation_batch_sizes and candidate.label in ABLATED_LABELS:
                return list(ablation)
            return [EAGER] + final_steps

        entries = prepare_entries(
            candidates, steps_for, batch_size, torch_device, create, warmup, progress, precision)
        count = (rounds or {}).get(batch_size, 10 if batch_size == 1 else 2)
        time_entries(entries, count, progress, desc=f'batch {batch_size}', clock=clock)
        rows += summarise(entries, batch_size)
        del entries
    costs = {c.model_name + f'@{c.input_size}': _cost(create(c.model_name), c.input_size) for c in candidates}
    for r in rows:
        r.gflops, r.params_m = costs[r.model + f'@{r.input_size}']
    return rows


# timm's benchmark.py CSV columns, in its units: samples/s, ms per batch, batch, image side,
# parameters in millions, GMACs per sample (fvcore counts one multiply-add as one FLOP)
TIMM_COLUMNS = ('model', 'infer_samples_per_sec', 'infer_step_time', 'infer_batch_size', 'infer_img_size',
                'param_count', 'infer_gmacs')


def timm_rows(rows: Sequence[TimingRow]) -> List[Dict[str, object]]:
    """Each row in timm benchmark.py's columns (:data:`TIMM_COLUMNS`, rounded as timm rounds them), then what
    timm's rows leave implicit: backend, step, precision, device, threads, load, and the speed-ups.

    timm divides its total samples by its total time; here samples/s and the step time come from the
    median call (robust to a burst of load), one per round of the interleaved schedule."""
    return [{
        'model': r.model, 'infer_samples_per_sec': round(r.throughput_img_s, 2),
        'infer_step_time': round(r.median_ms, 3), 'infer_batch_size': r.batch_size, 'infer_img_size': r.input_size,
        'param_count': round(r.params_m, 2), 'infer_gmacs': round(r.gflops, 2),
        'backend': r.backend, 'step': r.step, 'precision': r.precision, 'device': r.device, 'threads': r.threads,
        'load_avg_1m': round(r.load_avg_1m, 2), 'fair_speedup_same_step': round(r.speedup_same_step, 3),
        'speedup_vs_eager_backbone': round(r.speedup_vs_eager_backbone, 3), 'label': r.label,
    } for r in rows]



def _cost(model: nn.Module, input_size: int) -> Tuple[float, float]:
    return count_flops(model, (3, input_size, input_size)).total / 1e9, parameter_count(model) / 1e6


# ----------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class Target:
    """A speed-up the WAE model must reach over its backbone at 224, both through the same path (issue 13)."""
    model: str
    backbone: str
    batch_size: int
    required: float  # eager, both models
    paper: Optional[float]
    metric: str  # 'latency' (batch 1) or 'throughput'
    required_optimised: Optional[float] = None  # any other step, both models through it (default: required)

    def required_at(self, step: str) -> float:
        """The speed-up required with both models at ``step``."""
        if step == EAGER or self.required_optimised is None:
            return self.required
        return self.required_optimised


TARGETS: Tuple[Target, ...] = (
    Target('wae_vgg16', 'vgg16', 1, 4.0, 3.13, 'latency', required_optimised=3.5),
    Target('wae_resnet50', 'resnet50', 1, 1.9, 1.88, 'latency', required_optimised=2.3),
    Target('wae_resnet50', 'resnet50', 32, 2.6, None, 'throughput'),
)


def check_targets(rows: Sequence[TimingRow], targets: Sequence[Target] = TARGETS) -> List[dict]:
    """For each target and each optimisation step that both models ran (same device and precision): the fair
    speed-up (both at that step), the speed-up of the WAE model at that step over the eager backbone, and
    whether the fair one meets the target at that step. The eager step gives the straightforward build's."""
    results = []
    for t in targets:
        mine = [r for r in rows if r.model == t.model and r.batch_size == t.batch_size and r.backbone == t.backbone]
        for r in mine:
            if r.speedup_same_step != r.speedup_same_step:  # NaN: the backbone did not run this step
                continue
            required = t.required_at(r.step)
            results.append(dict(
                model=t.model, backbone=t.backbone, batch_size=t.batch_size, metric=t.metric,
                required=required, paper=t.paper, step=r.step, precision=r.precision, device=r.device,
                both_same_step=r.speedup_same_step, wae_vs_eager_backbone=r.speedup_vs_eager_backbone,
                met=r.speedup_same_step >= required))
    return results
