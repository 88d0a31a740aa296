"""torch.distributed glue for `torchrun --nproc_per_node=N -m resnetlab train ...`.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; `init()` joins the
process group (gloo on CPU, NCCL on CUDA) and returns a Dist describing this process. Every rank
holds the whole data set and trains on its slice of each global batch (BatchLoader); DDP averages
the gradients; metrics are summed over ranks; only rank 0 writes files.
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ResnetlabError
from .engine import at_least_fp32

# A rank that dies leaves the others blocked in a collective; this bounds how long they wait
# before failing with an error (torchrun also tears the group down when a worker exits).
TIMEOUT = timedelta(seconds=int(os.environ.get("RESNETLAB_DIST_TIMEOUT", "300")))

# SyncBatchNorm2d needs an all_reduce that autograd differentiates; torch.distributed.nn's is the
# public one (its suggested replacement is private and not differentiable in every release), so its
# deprecation notice, printed once per rank, is noise to a user.
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_reduce is deprecated")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def resume_flags(nproc: int, nnodes: int = 1, endpoint: str = "HOST:PORT") -> str:
    """The launch flags of `resnetlab train --resume` (and its closing backquote) for a run of
    `nproc` processes on each of `nnodes` machines."""
    if nnodes == 1:
        return f"--nproc {nproc}`"
    return f"--nproc {nproc} --nnodes {nnodes} --node-rank N --rdzv-endpoint {endpoint}` on every node"


def launch_flags(d: Dist) -> str:
    """resume_flags for the run `d` belongs to (torchrun names each node's share)."""
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", d.world_size)))
    return resume_flags(local, max(1, d.world_size // local))


def init(device: str = "auto") -> Dist:
    """Join the process group torchrun set up, or return the single-process Dist."""
    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)),
                    dist.get_backend())
    if not launched_by_torchrun():
        return Dist()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    cuda = torch.cuda.is_available() and device != "cpu"
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(local)
    # Import torch._dynamo before the group exists. DDP imports it on first use, and that import,
    # made while a group exists, keeps ten references to the group (torch 2.14): destroy_process_group()
    # then cannot free gloo's worker threads, which live on into interpreter teardown and there,
    # now and then, abort the process after its work is done. Imported first, it holds none.
    importlib.import_module("torch._dynamo")
    try:
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=TIMEOUT)
    except (RuntimeError, ValueError) as e:
        raise ResnetlabError(f"could not join the process group ({backend}, rank {rank} of {world}): {e}; "
                             "check torchrun's --master-addr/--master-port (or --rdzv-endpoint)") from None
    return Dist(rank, world, local, backend)


def device_for(d: Dist, device: torch.device) -> torch.device:
    """Each rank drives its own GPU (LOCAL_RANK); CPU ranks share the CPU."""
    if d.enabled and device.type == "cuda":
        return torch.device("cuda", d.local_rank)
    return device


def sum_over_ranks(values: list[float], d: Dist) -> list[float]:
    """Element-wise sum of `values` over all ranks (float64, on the CPU for gloo)."""
    if not d.enabled:
        return values
    device = torch.device("cuda", d.local_rank) if d.backend == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def sum_tensor_over_ranks(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if not d.enabled:
        return t
    device = torch.device("cuda", d.local_rank) if d.backend == "nccl" else torch.device("cpu")
    out = t.to(device=device, dtype=torch.float64)
    dist.all_reduce(out)
    return out.to(t.dtype).cpu()


def broadcast(obj, d: Dist):
    """Rank 0's `obj` on every rank (any picklable object)."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj, d: Dist) -> list:
    """Every rank's `obj`, in rank order, on every rank."""
    if not d.enabled:
        return [obj]
    out = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group before the interpreter exits, as PyTorch's docs ask: this frees the
    gloo backend and joins its threads while Python is fully alive. Left to interpreter teardown,
    threads that still run can abort a finished process ("terminate called without an active
    exception", pytorch/pytorch#179291); `init` makes sure nothing else keeps the group alive."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(n: int, d: Dist) -> slice:
    """This rank's contiguous share of n items (evaluation)."""
    per = -(-n // d.world_size)
    return slice(min(n, d.rank * per), min(n, (d.rank + 1) * per))


_PEER_FAILURE = ("connection closed by peer", "connection reset", "broken pipe", "timed out", "timeout",
                 "nccl", "gloo", "socket")


def is_peer_failure(e: BaseException) -> bool:
    """Whether a RuntimeError raised inside a collective means another rank is gone."""
    if isinstance(e, getattr(dist, "DistError", ())):
        return True
    text = str(e).lower()
    return any(k in text for k in _PEER_FAILURE)


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the global batch of every rank, on any device.

    torch.nn.SyncBatchNorm runs only on CUDA. This does the same arithmetic with plain tensor ops:
    per-channel sums of x and x^2 and the count are summed over ranks with the differentiable
    all_reduce of torch.distributed.nn, whose backward sums the gradients of those statistics over
    ranks, as SyncBatchNorm's backward does. Same parameter and buffer names as BatchNorm2d, so
    checkpoints are interchangeable. Outside training, or without a process group, it is BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not (dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        xf = at_least_fp32(x)
        count = torch.full((1,), x.numel() / c, dtype=xf.dtype, device=x.device)
        stats = all_reduce(torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count]))
        n = stats[2 * c]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1).clamp_min(1))
        y = (xf - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d -> SyncBatchNorm: PyTorch's on CUDA, SyncBatchNorm2d elsewhere.

    Only the exact class: a frozen one (transfer.FrozenBatchNorm2d, a subclass) stays as it is, its
    statistics fixed (PyTorch's own convert_sync_batchnorm would replace it and let them move).
    """
    sync_class = nn.SyncBatchNorm if device.type == "cuda" else SyncBatchNorm2d
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = sync_class(child.num_features, child.eps, child.momentum, child.affine,
                              child.track_running_stats).to(child.weight.device, child.weight.dtype)
            sync.load_state_dict(child.state_dict())
            sync.requires_grad_(child.weight.requires_grad)
            setattr(model, name, sync)
        else:
            convert_sync_batchnorm(child, device)
    return model
