"""Paper Fig. 1 / Fig. 6: plain nets get worse as they get deeper; ResNets get better.

Trains plain and residual CIFAR-family nets at each depth with one recipe, once per seed (a seed
fixes the initialisation and the data order, the same for every net), draws training error
(dashed) and test error (solid) against iterations, one panel for the plain nets and one for the
ResNets (mean over seeds, band min-max), and states what happened: each comparison with the
difference of the means over seeds and its 95% interval, "not resolved at this budget" when the
interval contains 0.
"""

from __future__ import annotations

import time

from ..viz.curves import plot_degradation, seed_band
from .common import (
    ExperimentSpec,
    Seeds,
    is_cifar10,
    label,
    load_data,
    seeds_note,
    train_seeds,
    versus,
    write_results,
)

# Paper, CIFAR-10 (Table 6; Fig. 6 shows the plain nets only as curves).
PAPER_RESNET_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}


def mean_running_error(net: Seeds) -> dict[int, float]:
    steps, mean, _, _ = seed_band([r.steps for r in net.runs], [r.train_error for r in net.runs])
    return dict(zip(steps, mean, strict=True))


def gap_along_run(deep: Seeds, shallow: Seeds) -> tuple[int, int, int | None]:
    """Where along the run the deeper net's mean (over seeds) running training error is above the
    shallower one's: (points above, logged points in common, first step from which it stays above to
    the end, or None). Only steps both logged are compared."""
    a, b = (mean_running_error(net) for net in (deep, shallow))
    common = sorted(set(a) & set(b))
    above = [a[s] > b[s] for s in common]
    since = None
    for s, up in zip(reversed(common), reversed(above), strict=True):
        if not up:
            break
        since = s
    return sum(above), len(common), since


def _conclusion(d, deeper_higher: str, deeper_lower: str) -> str:
    if not d.resolved:
        return ""
    return f" — {deeper_higher if d.diff > 0 else deeper_lower}"


def verdicts(curves: dict[str, Seeds], depths: list[int]) -> list[str]:
    """Sentences computed from the runs: is the deeper plain net worse (degradation), is the deeper
    ResNet better (the paper's second claim), do the shortcuts help at each depth."""
    lo, hi = min(depths), max(depths)
    out = []
    for kind, worse, better in (
            ("plain", "degradation present", "no degradation at this budget"),
            ("resnet", "the deeper ResNet is behind at this budget (the paper finds it ahead)",
             "the deeper ResNet is ahead, as in the paper")):
        deep, shallow = curves[f"{kind}{hi}"], curves[f"{kind}{lo}"]
        text, d = versus(deep, shallow, "final_train_error", "training error")
        out.append(f"{'plain nets' if kind == 'plain' else 'ResNets'}, training error: {text}"
                   f"{_conclusion(d, worse, better)}")
        out += _along(deep, shallow)
        text, d = versus(deep, shallow, "final_test_error", "test error")
        out.append(f"{'plain nets' if kind == 'plain' else 'ResNets'}, test error: {text}")
    out += [f"{'plain nets' if kind == 'plain' else 'ResNets'}, {a} -> {b} layers, training error: "
            f"{versus(curves[f'{kind}{b}'], curves[f'{kind}{a}'], 'final_train_error', 'training error')[0]}"
            for kind, a, b in _steps(depths)]
    for d in depths:
        text, diff = versus(curves[f"resnet{d}"], curves[f"plain{d}"], "final_train_error", "training error")
        out.append(f"depth {d}, shortcuts vs none: {text}"
                   + _conclusion(diff, "the shortcuts do not help here", "the shortcuts lower it"))
    return out


def _steps(depths: list[int]) -> list[tuple[str, int, int]]:
    """Each step in depth (kind, shallower, deeper), when there are depths between the end points:
    "rises (falls) with depth" is a claim about every step, not only the two ends."""
    if len(depths) < 3:
        return []
    return [(kind, a, b) for kind in ("plain", "resnet") for a, b in zip(depths, depths[1:], strict=False)]


def _along(deep: Seeds, shallow: Seeds) -> list[str]:
    # The end point is one budget; the curve says whether the verdict holds at shorter ones too.
    n, total, since = gap_along_run(deep, shallow)
    if not total:
        return []
    when = (f"continuously from step {since} to the end" if since is not None
            else "but not at the last logged step")
    return [f"along the run, {label(deep.name)}'s mean running training error is above "
            f"{label(shallow.name)}'s at {n} of {total} logged steps" + (f" ({when})" if n else "")]


def run(spec: ExperimentSpec, depths: list[int] | None = None) -> dict:
    started = time.time()
    depths = sorted(depths or [20, 56])
    data = load_data(spec)
    curves: dict[str, Seeds] = {}
    # The shallowest and deepest pairs first: if the run is stopped early, the comparison that
    # matters already exists; the depths between fill in the curve.
    for d in [depths[0], depths[-1], *depths[1:-1]]:
        for kind in ("plain", "resnet"):
            name = f"{kind}{d}"
            curves[name] = train_seeds(spec, name, data=data)
    fig = "degradation.png"
    plot_degradation(curves, depths, spec.out / fig, title=f"{spec.data_label}, budget {spec.budget}")
    rows = ["| depth | params | plain train err | plain test err | ResNet train err | ResNet test err | "
            "paper ResNet (CIFAR-10) |", "|---|---|---|---|---|---|---|"]
    models = {}
    for d in depths:
        p, r = curves[f"plain{d}"], curves[f"resnet{d}"]
        paper = PAPER_RESNET_ERROR.get(d)
        rows.append(f"| {d} | {r.params:,} | {p.summary('final_train_error').pct()} | "
                    f"{p.summary('final_test_error').pct()} | {r.summary('final_train_error').pct()} | "
                    f"{r.summary('final_test_error').pct()} | {f'{paper:.2f}%' if paper else '–'} |")
        for c in (p, r):
            models[c.name] = c.to_dict(depth=d)
    table = "\n".join(rows) + "\n\n" + seeds_note(spec, curves[f"resnet{depths[0]}"].runs[0].train_error_kind)
    if not is_cifar10(data):
        table += (f"\n\nTraining and test errors are on {spec.data_label}; the paper column is CIFAR-10 "
                  "(Table 6), a different data set, shown for the direction of the effect only.")
    v = verdicts(curves, depths)
    differences = {f"{kind}{depths[-1]}-{kind}{depths[0]}": {
        what: versus(curves[f"{kind}{depths[-1]}"], curves[f"{kind}{depths[0]}"], attr, what)[1].to_dict()
        for attr, what in (("final_train_error", "training error"), ("final_test_error", "test error"))}
        for kind in ("plain", "resnet")}
    for kind, a, b in _steps(depths):
        differences[f"{kind}{b}-{kind}{a}"] = {"training error": versus(
            curves[f"{kind}{b}"], curves[f"{kind}{a}"], "final_train_error", "training error")[1].to_dict()}
    return write_results(spec, "degradation", {"depths": depths, "models": models, "differences": differences,
                                                 "paper_resnet_cifar10_error": PAPER_RESNET_ERROR},
                         table, v, [fig], started)
