"""Paper Fig. 1 / Fig. 6: plain nets get worse as they get deeper; ResNets get better.

Trains plain and residual CIFAR-family nets at each depth with one recipe, seed and data order,
draws training error (dashed) and test error (solid) against iterations, one panel for the plain
nets and one for the ResNets, and states what happened in numbers from the run.
"""

from __future__ import annotations

import time

from ..viz.curves import plot_degradation
from .common import (
    ExperimentSpec,
    RunCurves,
    is_cifar10,
    load_data,
    pct,
    read_curves,
    train_or_reuse,
    write_results,
)

# Paper, CIFAR-10 (Table 6; Fig. 6 shows the plain nets only as curves).
PAPER_RESNET_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}


def _cmp(a: float, b: float, more: str, less: str) -> str:
    return more if a > b else less if a < b else "the same"


def gap_along_run(deep: RunCurves, shallow: RunCurves) -> tuple[int, int, int | None]:
    """Where along the run the deeper net's training error is above the shallower one's: (points
    above, logged points in common, first step from which it stays above to the end, or None).
    Both runs log at the same steps when they share a recipe; only common steps are compared."""
    a = dict(zip(deep.steps, deep.train_error, strict=True))
    b = dict(zip(shallow.steps, shallow.train_error, strict=True))
    common = sorted(set(a) & set(b))
    above = [a[s] > b[s] for s in common]
    since = None
    for s, up in zip(reversed(common), reversed(above), strict=True):
        if not up:
            break
        since = s
    return sum(above), len(common), since


def verdicts(curves: dict[str, RunCurves], depths: list[int]) -> list[str]:
    """Sentences computed from the runs: degradation for plain nets, none for ResNets."""
    lo, hi = min(depths), max(depths)
    p_lo, p_hi = curves[f"plain{lo}"], curves[f"plain{hi}"]
    r_lo, r_hi = curves[f"resnet{lo}"], curves[f"resnet{hi}"]
    pair = lambda a, b: f"({pct(a)} vs {pct(b)})"  # noqa: E731
    word = _cmp(p_hi.final_train_error, p_lo.final_train_error, "higher", "lower")
    effect = "degradation present" if word == "higher" else "no degradation at this budget"
    out = [f"plain-{hi} ends with {word} training error than plain-{lo} "
           f"{pair(p_hi.final_train_error, p_lo.final_train_error)}: {effect}",
           *_along(p_hi, p_lo, f"plain-{hi}", f"plain-{lo}"),
           f"plain-{hi} ends with {_cmp(p_hi.final_test_error, p_lo.final_test_error, 'higher', 'lower')} "
           f"test error than plain-{lo} {pair(p_hi.final_test_error, p_lo.final_test_error)}"]
    beats = r_hi.final_test_error < r_lo.final_test_error
    out.append(f"resnet-{hi} {'beats' if beats else 'does not beat'} resnet-{lo} "
               f"(test error {pct(r_hi.final_test_error)} vs {pct(r_lo.final_test_error)})")
    out.append(f"resnet-{hi} ends with "
               f"{_cmp(r_hi.final_train_error, r_lo.final_train_error, 'higher', 'lower')} training error "
               f"than resnet-{lo} {pair(r_hi.final_train_error, r_lo.final_train_error)}")
    for d in depths:
        p, r = curves[f"plain{d}"], curves[f"resnet{d}"]
        gap = p.final_train_error - r.final_train_error
        out.append(f"at depth {d} the shortcuts {'lower' if gap > 0 else 'do not lower'} training error "
                   f"({pct(p.final_train_error)} plain vs {pct(r.final_train_error)} residual)")
    return out


def _along(deep: RunCurves, shallow: RunCurves, dn: str, sn: str) -> list[str]:
    # The end point is one budget; the curve says whether the verdict holds at shorter ones too.
    n, total, since = gap_along_run(deep, shallow)
    if not total:
        return []
    when = (f"continuously from step {since} to the end" if since is not None
            else "but not at the last logged step")
    return [f"along the run, {dn}'s training error is above {sn}'s at {n} of {total} logged steps"
            + (f" ({when})" if n else "")]


def run(spec: ExperimentSpec, depths: list[int] | None = None) -> dict:
    started = time.time()
    depths = sorted(depths or [20, 56])
    data = load_data(spec)
    curves = {}
    # The shallowest and deepest pairs first: if the run is stopped early, the comparison that
    # matters already exists; the depths between fill in the curve.
    for d in [depths[0], depths[-1], *depths[1:-1]]:
        for kind in ("plain", "resnet"):
            name = f"{kind}{d}"
            curves[name] = read_curves(train_or_reuse(spec, name, data=data), name)
    fig = "degradation.png"
    plot_degradation(curves, depths, spec.out / fig, title=f"{spec.data_label}, budget {spec.budget}")
    rows = ["| depth | params | plain train err | plain test err | ResNet train err | ResNet test err | "
            "paper ResNet (CIFAR-10) |", "|---|---|---|---|---|---|---|"]
    models = {}
    for d in depths:
        p, r = curves[f"plain{d}"], curves[f"resnet{d}"]
        paper = PAPER_RESNET_ERROR.get(d)
        rows.append(f"| {d} | {r.params:,} | {pct(p.final_train_error)} | {pct(p.final_test_error)} | "
                    f"{pct(r.final_train_error)} | {pct(r.final_test_error)} | "
                    f"{f'{paper:.2f}%' if paper else '–'} |")
        for c in (p, r):
            models[c.name] = {"depth": d, "params": c.params, "final_train_error": c.final_train_error,
                              "final_test_error": c.final_test_error, "best_test_error": min(c.test_error),
                              "steps": c.steps[-1], "run_dir": str(c.run_dir)}
    table = "\n".join(rows)
    if not is_cifar10(data):
        table += (f"\n\nTraining and test errors are on {spec.data_label}; the paper column is CIFAR-10 "
                  "(Table 6), a different data set, shown for the direction of the effect only.")
    v = verdicts(curves, depths)
    result = write_results(spec, "degradation", {"depths": depths, "models": models,
                                                 "paper_resnet_cifar10_error": PAPER_RESNET_ERROR},
                           table, v, [fig], started)
    return result
