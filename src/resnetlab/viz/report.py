"""One self-contained HTML page about a trained run: every picture inlined as a data: URI, no script,
no style sheet or font from the network, so it opens from disk in any browser."""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path

import torch

from ..errors import ResnetlabError
from ..run import Run, RunRecord
from .common import Output, png_bytes

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
p.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; } td, th { padding: 0.25em 0.8em; border-bottom: 1px solid #eee;
  text-align: left; vertical-align: top; }
th { background: #f6f6f6; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img.figure { max-width: 100%; height: auto; border: 1px solid #eee; }
.bar { display: inline-block; height: 0.8em; background: #4a7bd0; vertical-align: middle; }
.samples { display: flex; flex-wrap: wrap; gap: 10px; }
.sample { width: 120px; text-align: center; font-size: 0.8em; padding: 4px; border: 2px solid #cde8cd;
  border-radius: 4px; }
.sample.wrong { border-color: #e06060; background: #fff3f3; }
.sample img { width: 96px; height: 96px; image-rendering: pixelated; object-fit: contain; }
.sample .pred { font-weight: bold; } .sample.wrong .pred { color: #b00000; }
.mark { font-weight: bold; color: #b00000; }
"""


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image_png(image: torch.Tensor) -> bytes:
    """uint8 (or [0, 1] float) C x H x W, C = 1 or 3, as PNG bytes."""
    from PIL import Image

    if image.dtype != torch.uint8:
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    array = image[0].numpy() if image.shape[0] == 1 else image[:3].permute(1, 2, 0).contiguous().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _figure(plot, *args, **kwargs) -> str:
    return png_uri(png_bytes(plot, *args, **kwargs))


@torch.no_grad()
def predict(model, images, record: RunRecord, normalizer, device="cpu",
            batch_size: int = 256) -> torch.Tensor:
    """Softmax probabilities (N x K) of the run's model on a split (ImageSet or StreamSet), as the
    run's evaluation sees it (the scores of ten crops, or of an image and its mirror, averaged)."""
    from ..data.augment import crop_mean
    from ..train.evaluate import eval_loader

    out = [crop_mean(model(x).float().softmax(1), y.shape[0]).cpu()
           for x, y in eval_loader(images, record, normalizer, device, batch_size).epoch()]
    return torch.cat(out) if out else torch.zeros(0, record.num_classes)


def _display_images(split, count: int) -> torch.Tensor:
    return split.images[:count] if hasattr(split, "images") else split.read(range(count))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def _samples_html(images: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor, classes: list[str]) -> str:
    cells = []
    for image, label, p in zip(images, labels.tolist(), probs, strict=True):
        pred = int(p.argmax())
        wrong = pred != label
        truth = html.escape(classes[label])
        guess = html.escape(classes[pred])
        mark = '<span class="mark">&#10007; wrong</span><br>' if wrong else ""
        cells.append(
            f'<div class="sample{" wrong" if wrong else ""}"><img src="{png_uri(image_png(image))}" '
            f'alt="test image, true class {truth}"><br>{mark}true: {truth}<br>'
            f'<span class="pred">predicted: {guess}</span> ({100 * float(p[pred]):.0f}%)</div>')
    return '<div class="samples">' + "".join(cells) + "</div>"


def write_report(run_dir: str | Path, out: Output | None = None, data: str | None = None,
                 data_dir: str | None = None, device: str = "auto", samples: int = 24,
                 seed: int = 0) -> Output:
    """Write RUN_DIR/report.html (or `out`, a path or a text file object): summary, learning curves,
    confusion matrix, per-class accuracy, sample test predictions with their images, first-layer
    filters. Evaluates the run on its test split (fp32, as `resnetlab eval`)."""
    from ..run import load_trained
    from ..train.engine import resolve_device
    from ..train.evaluate import evaluate_split, open_run_data
    from ..train.metrics import read_metrics
    from .confusion import plot_confusion
    from .curves import plot_run_curves
    from .filters import first_conv, plot_filters

    if samples < 1:
        raise ResnetlabError(f"--samples must be 1 or more, got {samples}")
    run = Run.open(run_dir)
    dev = resolve_device(device)
    model, record, normalizer = load_trained(run.root, dev)
    cfg = record.config
    summary = run.summary() or {}
    name = run.root.resolve().name
    spec, splits = open_run_data(record, data, data_dir)
    result = evaluate_split(model, record, normalizer, spec, splits, device=dev)
    classes = result["classes"]
    data_name = Path(str(spec)).name

    # Sample predictions: `samples` random test images, and mistakes from a larger random pool.
    pool_size = min(len(splits.test), max(512, samples))
    pool = torch.randperm(len(splits.test), generator=torch.Generator().manual_seed(seed))[:pool_size]
    pool_set = splits.test.subset(pool)
    probs = predict(model, pool_set, record, normalizer, dev)
    labels, shown = pool_set.labels, _display_images(pool_set, pool_size)
    n_random = min(samples, pool_size)
    wrong = (probs.argmax(1) != labels).nonzero().flatten()
    wrong = wrong[wrong >= n_random][:max(1, min(12, samples // 2))]
    n_wrong = int((probs[:n_random].argmax(1) != labels[:n_random]).sum())

    records = read_metrics(run.metrics_file)
    conv_name, conv = first_conv(model)
    curves_title = f"{cfg.model}: training error (dashed), test error (solid)"
    curves = (_img(_figure(plot_run_curves, {name: records}, title=curves_title), "learning curves")
              if records else "<p>No training metrics in this run folder (not trained yet, or imported).</p>")
    confusion_title = f"{cfg.model} on {data_name}, {result['split']} split"
    confusion = _img(_figure(plot_confusion, result["confusion_matrix"], classes, title=confusion_title),
                     "confusion matrix")
    filters = _img(_figure(plot_filters, conv.weight.detach().cpu(), layer=conv_name,
                           title=f"{cfg.model} ({name})"), "first-layer filters")
    e = html.escape
    written = time.strftime("%Y-%m-%d %H:%M")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(name)}: {e(cfg.model)} on {e(data_name)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>{e(name)}: {e(cfg.model)} on {e(data_name)}</h1>
<p class="sub">resnetlab run report, written {e(written)} from {e(str(run.root.resolve()))}</p>
<h2>Summary</h2>
{_summary_table(model, record, summary, result, spec)}
<h2>Learning curves</h2>
{curves}
<h2>Confusion matrix</h2>
<p>Rows: true class; columns: predicted class; each cell the number of {e(result['split'])} images.</p>
{confusion}
<h2>Per-class accuracy</h2>
{_class_table(result)}
<h2>Sample test predictions</h2>
<p>{n_random} test images drawn at random (seed {seed}): {n_random - n_wrong} right,
{n_wrong} wrong (red).</p>
{_samples_html(shown[:n_random], labels[:n_random], probs[:n_random], classes)}
"""
    if len(wrong):
        page += (f"<h3>Some mistakes</h3>\n<p>Misclassified images among {pool_size - n_random} further "
                 "random test images.</p>\n"
                 + _samples_html(shown[wrong], labels[wrong], probs[wrong], classes))
    page += f"""
<h2>First-layer filters</h2>
<p>The weights of <code>{e(conv_name)}</code>, each filter scaled to its own range.</p>
{filters}
</body></html>
"""
    if out is None:
        out = run.root / "report.html"
    if isinstance(out, (str, Path)):
        out = Path(out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(page, encoding="utf-8")
        except OSError as err:
            raise ResnetlabError(f"cannot write {out}: {err.strerror or err}") from None
    else:
        out.write(page)
    return out


def _img(uri: str, alt: str) -> str:
    return f'<img class="figure" alt="{html.escape(alt)}" src="{uri}">'


def _summary_table(model, record: RunRecord, summary: dict, result: dict, spec) -> str:
    from ..models import count_params

    cfg, recipe = record.config, record.config.recipe
    engine = summary.get("engine") or _engine_text(record.engine.to_dict())
    length = (f"{summary['epochs']:.1f} epochs, {summary['steps']} iterations" if "steps" in summary
              else f"{record.total_steps or '?'} iterations planned (unfinished)")
    nesterov = " Nesterov" if recipe.nesterov else ""
    recipe_text = (f"{recipe.name}: batch {recipe.batch_size}, lr {recipe.lr} ({recipe.schedule}), "
                   f"momentum {recipe.momentum}{nesterov}, weight decay {recipe.weight_decay}, "
                   f"augment {recipe.augment}, normalize {recipe.normalize}; {length}")
    if record.imported_from:   # `resnetlab import`: weights trained elsewhere
        recipe_text = (f"not trained here: imported from {record.imported_from} "
                       f"({record.description or ''}); normalize {recipe.normalize}")
    options = ", ".join(f"{k}={v}" for k, v in cfg.model_options.items())
    parts = ((record.train_images, "training"), (record.val_images, "validation"),
             (record.test_images, "test"))
    counts = [f"{n} {what}" for n, what in parts if n]
    machine = ", ".join(x for x in (record.machine, record.torch and f"torch {record.torch}") if x)
    rows = [
        ("model", f"{cfg.model}{f' ({options})' if options else ''}, {count_params(model):,} parameters"),
        ("data", f"{spec}: {', '.join(counts) + ' images, ' if counts else ''}"
                 f"input {'x'.join(map(str, record.input_size))}, {len(result['classes'])} classes"),
        ("recipe", recipe_text),
        ("engine", f"{engine}{f' ({machine})' if machine else ''}"),
        ("test error (top-1 / top-5)", f"{_pct(result['top1_error'])} / {_pct(result['top5_error'])} on "
                                       f"{result['n']} {result['split']} images, evaluated now in fp32"),
    ]
    if summary:
        rows.append(("errors at the end of training",
                     f"test {_pct(summary.get('test_top1_error'))}, best test "
                     f"{_pct(summary.get('best_test_top1_error'))}, training "
                     f"{_pct(summary.get('final_train_error'))}"))
    if "val_top1_error" in summary:
        rows.append(("validation error", _pct(summary["val_top1_error"])))
    if "wall_time_s" in summary:
        speed = f", {summary['images_per_s']:.0f} images/s" if "images_per_s" in summary else ""
        rows.append(("wall time", _duration(summary["wall_time_s"]) + speed))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="summary">{body}</table>'


def _class_table(result: dict) -> str:
    e = html.escape
    classes = result["classes"]
    conf = torch.tensor(result["confusion_matrix"])
    rows = []
    for i, c in enumerate(classes):
        acc = result["per_class_accuracy"][c]
        off = conf[i].clone()
        off[i] = 0
        j = int(off.argmax())
        confused = f"{e(classes[j])} ({int(off[j])})" if int(off[j]) else "—"
        rows.append(f'<tr><td>{e(c)}</td><td class="num">{int(conf[i].sum())}</td>'
                    f'<td class="num">{100 * acc:.2f}%</td>'
                    f'<td><span class="bar" style="width:{round(120 * acc)}px"></span></td>'
                    f"<td>{confused}</td></tr>")
    head = ("<tr><th>class</th><th>images</th><th>accuracy</th><th></th>"
            "<th>most often taken for (count)</th></tr>")
    return f'<table class="per-class"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _engine_text(engine: dict) -> str:
    if not engine:
        return "—"
    layout = " + channels_last" if engine.get("channels_last") else ""
    compiled = " + compile" if engine.get("compile") else ""
    return f"{engine.get('precision', '?')}{layout}{compiled} on {engine.get('device', '?')}"
