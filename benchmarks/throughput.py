"""Training throughput: resnetlab's engine against the conventional PyTorch pipeline.

Both train the same model on the same data with the paper's optimiser (SGD, batch 128, lr 0.1,
momentum 0.9, weight decay 1e-4) and the paper's augmentation (pad 4, random crop, flip):

  reference  torchvision per-sample transforms (PIL image -> RandomCrop(padding=4) ->
             RandomHorizontalFlip -> ToTensor -> Normalize) + torch DataLoader, fp32,
             written as the PyTorch tutorials do; the faster of num_workers 0 and 2 is kept;
  engine     resnetlab: uint8 data in memory, whole-batch augmentation, and the precision /
             memory format the engine's timing probe picks on this machine.

Each pipeline runs in its own process (so peak memory is its own); the script prints images/s,
peak RSS and the ratio side by side.

    python benchmarks/throughput.py --data fashion-mnist --model resnet20 --steps 150
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
    from resnetlab.data.sources import load_dataset
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
    mean = (images.float() / 255).mean((0, 2, 3)).tolist()
    std = (images.float() / 255).std((0, 2, 3)).tolist()
    tf = transforms.Compose([transforms.RandomCrop((h, w), padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(mean, std)])

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
    for workers in (0, 2):
        torch.manual_seed(0)
        model = create_model(args.model, num_classes=len(splits.classes), in_channels=c)
        opt = sgd(model)
        loader = torch.utils.data.DataLoader(Dataset(), batch_size=128, shuffle=True, drop_last=True,
                                             num_workers=workers, persistent_workers=workers > 0)
        rate = timed(loader, model, opt, args, autocast=None)
        best = max(best or (0, 0), (rate, workers))
    return {"images_per_s": best[0], "detail": f"fp32, DataLoader num_workers={best[1]}"}


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
                           torch.device("cpu"), compile="off")
    torch.manual_seed(0)
    model = build().to(memory_format=engine.memory_format)
    opt = sgd(model)
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
    p.add_argument("--mode", choices=["reference", "engine"], help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    if args.mode:
        result = run_reference(args) if args.mode == "reference" else run_engine(args)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    rows = {}
    for mode in ("reference", "engine"):
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--data", args.data, "--model",
                              args.model, "--steps", str(args.steps), "--warmup", str(args.warmup)],
                             check=True, capture_output=True, text=True).stdout
        rows[mode] = json.loads(out.strip().splitlines()[-1])
    print(f"{args.model} on {args.data}, batch 128, {args.steps} timed steps, {torch.get_num_threads()} threads")
    print(f"{'pipeline':<10} {'images/s':>9} {'peak RSS MB':>12}  set-up")
    for mode, r in rows.items():
        print(f"{mode:<10} {r['images_per_s']:>9.0f} {r['peak_rss_mb']:>12.0f}  {r['detail']}")
    ratio = rows["engine"]["images_per_s"] / rows["reference"]["images_per_s"]
    print(f"ratio engine/reference: {ratio:.2f}x")


if __name__ == "__main__":
    main()
