"""Training throughput: resnetlab's engine against the conventional PyTorch pipeline.

Both train the same model on the same data with the paper's optimiser (SGD, batch 128, lr 0.1,
momentum 0.9, weight decay 1e-4) and the paper's augmentation (pad 4, random crop, flip):

  reference  torchvision per-sample transforms (PIL image -> RandomCrop(padding=4) ->
             RandomHorizontalFlip -> ToTensor -> Normalize) + torch DataLoader, fp32,
             written as the PyTorch tutorials do; the faster of num_workers 0 and 2 is kept.
             For a known data set (Fashion-MNIST, CIFAR pickles) the dataset holds the uint8
             array in memory, as torchvision.datasets.FashionMNIST / CIFAR10 do; for a folder
             or archive of images it is torchvision.datasets.ImageFolder over the extracted
             files (PIL decodes every image every epoch, the usual way to train on a folder);
  engine     resnetlab: uint8 data in memory, whole-batch augmentation, and the precision /
             memory format the engine's timing probe picks on this machine.

Each pipeline runs in its own process (so peak memory is its own), alternating reference and
engine `--repeats` times; the script prints images/s, peak RSS and the ratio of each pair, and the
median ratio.

    python benchmarks/throughput.py --data fashion-mnist --model resnet20 --steps 150
    python benchmarks/throughput.py --data ../shared/data/cifar10-jpeg.tar.gz --steps 150
    # kernels held to AVX2 (as on a Zen 3, where bf16 is emulated): the engine then picks fp32
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        python benchmarks/throughput.py --data fashion-mnist --steps 150
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def load(data: str):
    from resnetlab.data import load_dataset
    return load_dataset(data, download=False)


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)


def run_reference(args) -> dict:
    import numpy as np
    from PIL import Image
    from torchvision import transforms

    splits = load(args.data)
    images, labels = splits.train.images, splits.train.labels
    c, h, w = images.shape[1:]
    # Normalisation statistics are a one-off, computed before timing, as a tutorial would hard-code them.
    mean = (images.float() / 255).mean((0, 2, 3)).tolist()
    std = (images.float() / 255).std((0, 2, 3)).tolist()
    tf = transforms.Compose([transforms.RandomCrop((h, w), padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(mean, std)])
    folder = None if args.data in KNOWN else extracted_train_folder(args.data)

    class Dataset(torch.utils.data.Dataset):
        # As torchvision.datasets.FashionMNIST / CIFAR10 do: one PIL image per __getitem__.
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            arr = images[i].numpy()
            img = Image.fromarray(arr[0] if c == 1 else np.transpose(arr, (1, 2, 0)))
            return tf(img), int(labels[i])

    from resnetlab import create_model
    best = None
    for workers in ((0, 2) if args.workers is None else (args.workers,)):
        torch.manual_seed(0)
        model = create_model(args.model, num_classes=len(splits.classes), in_channels=c)
        opt = sgd(model)
        from torchvision.datasets import ImageFolder
        dataset = Dataset() if folder is None else ImageFolder(str(folder), transform=tf)
        loader = torch.utils.data.DataLoader(dataset, batch_size=128, shuffle=True, drop_last=True,
                                             num_workers=workers, persistent_workers=workers > 0)
        rate = timed(loader, model, opt, args, autocast=None)
        best = max(best or (0, 0), (rate, workers))
    source = "in-memory dataset" if folder is None else "ImageFolder (PIL decode per image)"
    return {"images_per_s": best[0], "workers": best[1],
            "detail": f"fp32, {source}, DataLoader num_workers={best[1]}"}


KNOWN = ("fashion-mnist", "mnist", "cifar10", "cifar100")


def extracted_train_folder(spec: str):
    """The train/ tree of an image folder as files on disk (an archive is extracted once, untimed)."""
    import tarfile
    import tempfile
    from pathlib import Path
    path = Path(spec)
    if path.is_dir():
        return path / "train" if (path / "train").is_dir() else path
    target = Path(tempfile.gettempdir()) / f"resnetlab-bench-{path.name.split('.')[0]}"
    if not (target / "train").is_dir():
        with tarfile.open(path) as tar:
            tar.extractall(target, filter="data")
    return target / "train"


def run_engine(args) -> dict:
    from resnetlab import create_model
    from resnetlab.data.augment import Normalizer
    from resnetlab.data.loader import BatchLoader, View
    from resnetlab.train.engine import choose_engine

    splits = load(args.data)
    images, labels = splits.train.images, splits.train.labels
    c = images.shape[1]

    def build():
        return create_model(args.model, num_classes=len(splits.classes), in_channels=c)

    engine = choose_engine(build, args.model, tuple(images.shape[1:]), 128, len(splits.classes),
                           torch.device("cpu"), precision=args.precision, compile="off")
    torch.manual_seed(0)
    model = build().to(memory_format=engine.memory_format)
    opt = sgd(model)
    # The decoded images come from resnetlab's cache when the folder was loaded before (untimed).
    loader = BatchLoader(images, labels, 128, train=True, view=View("pad-crop-flip", pad=4),
                         normalizer=Normalizer.fit(images, "channel"), channels_last=engine.channels_last)

    class Batches:   # endless iteration over epochs, like a DataLoader re-created every epoch
        def __iter__(self):
            epoch = 0
            while True:
                yield from loader.epoch(epoch)
                epoch += 1

    rate = timed(Batches(), model, opt, args, autocast=engine)
    return {"images_per_s": rate, "detail": engine.label()}


def timed(loader, model, opt, args, autocast) -> float:
    model.train()
    it = iter(loader)
    n = 0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            t0 = time.perf_counter()
        x, y = next(it)
        ctx = autocast.autocast() if autocast else torch.autocast("cpu", enabled=False)
        with ctx:
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= args.warmup:
            n += y.shape[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="alternating reference/engine pairs")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="the engine's arithmetic (auto: the probe's choice; fp32: as on a CPU without bf16)")
    p.add_argument("--mode", choices=["reference", "engine"], help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    if args.mode:
        result = run_reference(args) if args.mode == "reference" else run_engine(args)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    # Reference and engine alternate, each in its own process, `--repeats` times: the machine's
    # speed drifts (shared host), so the ratio is taken pair by pair and its median reported.
    def one(mode, workers=None):
        cmd = [sys.executable, __file__, "--mode", mode, "--data", args.data, "--model", args.model,
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--precision", args.precision]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    pairs, workers = [], None
    for _ in range(args.repeats):
        ref = one("reference", workers)
        workers = ref["workers"]   # the first pair tries 0 and 2 workers; later pairs use the faster
        pairs.append((ref, one("engine")))
    threads = torch.get_num_threads()
    from resnetlab.train.engine import machine_id
    print(f"machine: {machine_id(torch.device('cpu'))}, kernels: {torch.backends.cpu.get_cpu_capability()}")
    print(f"{args.model} on {args.data}, batch 128, {args.steps} timed steps per run, {threads} threads, "
          f"{args.repeats} alternating pairs")
    print(f"{'pair':<5} {'reference img/s':>16} {'engine img/s':>13} {'ratio':>6} {'ref RSS MB':>11} "
          f"{'engine RSS MB':>14}")
    for i, (ref, eng) in enumerate(pairs, 1):
        print(f"{i:<5} {ref['images_per_s']:>16.0f} {eng['images_per_s']:>13.0f} "
              f"{eng['images_per_s'] / ref['images_per_s']:>6.2f} {ref['peak_rss_mb']:>11.0f} "
              f"{eng['peak_rss_mb']:>14.0f}")
    ratios = sorted(e["images_per_s"] / r["images_per_s"] for r, e in pairs)
    print(f"reference: {pairs[0][0]['detail']}")
    print(f"engine:    {pairs[0][1]['detail']}")
    print(f"ratio engine/reference: median {ratios[len(ratios) // 2]:.2f}x "
          f"(min {ratios[0]:.2f}x, max {ratios[-1]:.2f}x)")


if __name__ == "__main__":
    main()
