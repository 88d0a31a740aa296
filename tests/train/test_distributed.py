"""Several CPU processes over loopback (gloo) against one process with the same global batch: two
processes from one launcher (--nproc 2) and two launchers as two nodes (c10d rendezvous)."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from fakedata import write_fashion_like
from procs import free_port, kill_all, pids_with_env, tail, wait_for
from safetensors.torch import load_file

from resnetlab.train.checkpoint import list_checkpoints

FIXED = ["--precision", "fp32", "--channels-last", "off", "--compile", "off", "--no-progress"]
# Comparisons of 1 vs N processes run in fp64. In fp32 the two differ by rounding alone (summation
# order: DDP averages two half-batch gradients, SyncBN sums two halves), and how far rounding moves
# a training run depends on the CPU's vector width: 16 steps took a 6e-8 difference at step 1 to
# 5.5e-4 in the loss and 0.5% in a BN running variance on a Zen 3, much less on a Zen 4, so no fixed
# fp32 tolerance holds on every x86-64 CPU. fp64's unit roundoff is 1.1e-16: even that amplification
# (~1e4) leaves ~1e-12: measured 3.4e-12 (losses) and 9.8e-12 (weights, norm-wise) on a Zen 4. The
# bounds are relative to each tensor's own norm and 1000x above that, for CPUs that amplify more; a
# real error (a wrong gradient average, BN over half the batch, a rank training on the wrong slice)
# moves step 1's loss by over 1e-5 and the weights by ~1e-2.
EXACT = ["--precision", "fp64", "--channels-last", "off", "--compile", "off", "--no-progress"]
LOSS_RTOL, WEIGHT_RTOL = 1e-8, 1e-7


@pytest.fixture
def data_dir(tmp_path):
    write_fashion_like(tmp_path / "data", n_train=256, n_test=64, size=12)
    return str(tmp_path / "data")


def train_cmd(data_dir, out, *extra, engine=FIXED):
    return [sys.executable, "-m", "resnetlab", "train", "--model", "resnet8", "--data", "fashion-mnist",
            "--data-dir", data_dir, "--recipe", "fast", "--batch-size", "32", "--out", str(out),
            "--log-every", "1", *engine, *extra]


def node_flags(rank, port):
    return ["--nproc", "1", "--nnodes", "2", "--node-rank", str(rank), "--rdzv-endpoint", f"127.0.0.1:{port}"]


def env(tmp_path, **more):
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1", **more}


def losses(run):
    recs = [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in recs if r["kind"] == "train"]


def assert_same_training(one, many):
    """Same losses at every step, same final weights and BN statistics, same test error (fp64 runs)."""
    a, b = losses(one), losses(many)
    assert len(a) == len(b) > 0
    assert a == pytest.approx(b, rel=LOSS_RTOL)
    wa, wb = load_file(str(Path(one) / "model.safetensors")), load_file(str(Path(many) / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        if not wa[k].is_floating_point():      # num_batches_tracked
            assert torch.equal(wa[k], wb[k]), k
            continue
        assert wa[k].dtype == torch.float64
        err = (wa[k] - wb[k]).norm() / wa[k].norm().clamp_min(1e-300)
        assert err <= WEIGHT_RTOL, f"{k}: relative difference {err:.2e}"
    s1 = json.loads((Path(one) / "summary.json").read_text())
    s2 = json.loads((Path(many) / "summary.json").read_text())
    assert s1["test_top1_error"] == s2["test_top1_error"]   # logits 1e-12 apart: no prediction flips


def run_ok(cmd, tmp_path, **more):
    r = subprocess.run(cmd, env=env(tmp_path, **more), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-8000:]
    return r


def launch_nodes(cmds, tmp_path, name, tags=(None, None)):
    """One launcher per node, each its own process group; stderr to files (a pipe nobody reads fills)."""
    procs = []
    for rank, (cmd, tag) in enumerate(zip(cmds, tags, strict=True)):
        err = tmp_path / f"{name}.node{rank}.err"
        more = {"NODE_TAG": tag} if tag else {}
        procs.append((subprocess.Popen(cmd, env=env(tmp_path, **more), stdout=subprocess.DEVNULL,
                                       stderr=err.open("w"), start_new_session=True), err))
    return procs


def finish(procs, timeout=600):
    for p, err in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            raise AssertionError(f"a node did not finish in {timeout} s:\n{tail(err)}") from None
    return [(p.returncode, err.read_text()) for p, err in procs]


# The fast-training options (a weight average of the SyncBN model, flip evaluation, per-group decay)
# change nothing in how ranks agree.
@pytest.mark.parametrize("options", [(), ("--ema", "0.9", "--eval-view", "flip", "--bn-weight-decay", "0")],
                         ids=["paper", "fast-options"])
def test_two_processes_with_syncbn_match_one_process(tmp_path, data_dir, options):
    one, two = tmp_path / "one", tmp_path / "two"
    run_ok(train_cmd(data_dir, one, "--epochs", "2", *options, engine=EXACT), tmp_path)
    run_ok(train_cmd(data_dir, two, "--epochs", "2", "--nproc", "2", "--sync-bn", *options, engine=EXACT),
           tmp_path)
    assert len(losses(one)) == 16
    assert_same_training(one, two)
    cfg = json.loads((two / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["config"]["sync_bn"] is True
    assert cfg["config"]["recipe"]["ema"] == (0.9 if options else 0.0)


def test_two_nodes_over_loopback_match_one_process(tmp_path, data_dir):
    one, two = tmp_path / "one", tmp_path / "two"
    run_ok(train_cmd(data_dir, one, "--epochs", "2", engine=EXACT), tmp_path)
    port = free_port()
    cmds = [train_cmd(data_dir, two, "--epochs", "2", "--sync-bn", *node_flags(r, port), engine=EXACT)
            for r in (0, 1)]
    results = finish(launch_nodes(cmds, tmp_path, "two"))
    assert all(code == 0 for code, _ in results), results
    assert_same_training(one, two)
    assert json.loads((two / "config.json").read_text())["world_size"] == 2


def test_without_syncbn_each_rank_normalises_its_own_half(tmp_path, data_dir):
    one, two = tmp_path / "one", tmp_path / "two"
    run_ok(train_cmd(data_dir, one, "--iterations", "2", engine=EXACT), tmp_path)
    run_ok(train_cmd(data_dir, two, "--iterations", "2", "--nproc", "2", engine=EXACT), tmp_path)
    # Per-rank BN statistics of 16 images are not those of 32: step 1 already differs, by far more
    # than fp64 rounding (~1e-16) could make it.
    assert abs(losses(one)[0] - losses(two)[0]) / losses(one)[0] > 1e-5
    assert not (two / "metrics.jsonl.tmp").exists() and (two / "summary.json").exists()


def test_sync_batchnorm_is_batchnorm_without_a_process_group():
    from resnetlab import create_model
    from resnetlab.train.distributed import SyncBatchNorm2d, convert_sync_batchnorm

    torch.manual_seed(0)
    model = create_model("resnet8")
    ref = create_model("resnet8")
    ref.load_state_dict(model.state_dict())
    convert_sync_batchnorm(model, torch.device("cpu"))
    assert sum(isinstance(m, SyncBatchNorm2d) for m in model.modules()) == 7   # stem + 2 per block
    assert model.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(4, 3, 16, 16)
    assert torch.equal(model(x), ref(x))


@pytest.mark.parametrize("device", ["cpu", "cuda"])   # CUDA's class is only built here, never run
def test_sync_batchnorm_leaves_frozen_batchnorm_frozen(device):
    from resnetlab import create_model
    from resnetlab.train.distributed import SyncBatchNorm2d, convert_sync_batchnorm
    from resnetlab.transfer import FrozenBatchNorm2d, freeze

    model = create_model("resnet8")
    freeze(model, "stages:1")
    frozen = [n for n, m in model.named_modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen
    convert_sync_batchnorm(model, torch.device(device))
    sync_class = torch.nn.SyncBatchNorm if device == "cuda" else SyncBatchNorm2d
    modules = dict(model.named_modules())
    assert all(type(modules[n]) is FrozenBatchNorm2d for n in frozen)
    synced = [m for m in modules.values() if isinstance(m, sync_class)]
    assert len(synced) + len(frozen) == 7 and all(m.weight.requires_grad for m in synced)


def test_resume_hint_names_each_nodes_share(monkeypatch):
    from resnetlab.train.distributed import Dist, launch_flags

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert launch_flags(Dist(rank=1, world_size=2)) == "--nproc 2`"
    hint = launch_flags(Dist(rank=3, world_size=4))
    assert hint.startswith("--nproc 2 --nnodes 2 --node-rank N --rdzv-endpoint") and "every node" in hint


def _checkpoint_at(run, step):
    return lambda: bool((c := list_checkpoints(run)) and c[-1].step >= step)


def _assert_readable_and_unfinished(part):
    assert not (part / "model.safetensors").exists()
    for c in list_checkpoints(part):   # whatever is on disk is complete and readable
        load_file(str(c.path / "model.safetensors"))


def _assert_equal_weights(a, b):
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_dying_rank_stops_the_run_with_a_clear_error_and_the_run_resumes(tmp_path, data_dir):
    full, part = tmp_path / "full", tmp_path / "part"
    args = ("--epochs", "12", "--nproc", "2", "--checkpoint-every", "4")
    run_ok(train_cmd(data_dir, full, *args), tmp_path)

    tag, err = uuid.uuid4().hex, tmp_path / "part.err"
    launcher = subprocess.Popen(train_cmd(data_dir, part, *args), env=env(tmp_path, RUN_TAG=tag),
                                stdout=subprocess.DEVNULL, stderr=err.open("w"))
    wait_for(_checkpoint_at(part, 8), launcher, "a checkpoint at step 8", err)
    rank1 = [p for p in pids_with_env(f"RUN_TAG={tag}") if p in pids_with_env("RANK=1")]
    assert rank1, f"rank 1 not found:\n{tail(err)}"
    kill_all(rank1)
    launcher.wait(timeout=600)
    assert launcher.returncode == 2, tail(err)
    last = err.read_text().strip().splitlines()[-1]
    assert last.startswith("error: the 2-process run stopped") and f"--resume {part} --nproc 2" in last
    _assert_readable_and_unfinished(part)

    run_ok([sys.executable, "-m", "resnetlab", "train", "--resume", str(part), "--nproc", "2",
            "--no-progress"], tmp_path)
    _assert_equal_weights(full, part)


def test_a_dying_node_stops_the_other_with_a_clear_error_and_two_nodes_resume(tmp_path, data_dir):
    full, part = tmp_path / "full", tmp_path / "part"
    args = ("--epochs", "12", "--checkpoint-every", "4")
    port = free_port()
    results = finish(launch_nodes([train_cmd(data_dir, full, *args, *node_flags(r, port)) for r in (0, 1)],
                                  tmp_path, "full"))
    assert all(code == 0 for code, _ in results), results

    tag, port = uuid.uuid4().hex, free_port()
    nodes = launch_nodes([train_cmd(data_dir, part, *args, *node_flags(r, port)) for r in (0, 1)], tmp_path,
                         "part", tags=(None, tag))
    (node0, err0), (node1, _) = nodes
    wait_for(_checkpoint_at(part, 8), node0, "a checkpoint at step 8", err0)
    kill_all(pids_with_env(f"NODE_TAG={tag}"))   # the machine of node 1 is gone: launcher, agent, worker
    (code0, text0), (code1, _) = finish(nodes)
    assert code1 == -9
    assert code0 == 2, text0[-4000:]
    last = text0.strip().splitlines()[-1]
    assert last.startswith("error: the 2-process run stopped") and f"--resume {part}" in last
    assert "--nnodes 2" in last and "on every node" in last
    _assert_readable_and_unfinished(part)

    port = free_port()
    resume = [[sys.executable, "-m", "resnetlab", "train", "--resume", str(part), "--no-progress",
               *node_flags(r, port)] for r in (0, 1)]
    results = finish(launch_nodes(resume, tmp_path, "resume"))
    assert all(code == 0 for code, _ in results), results
    _assert_equal_weights(full, part)


LEAVE = """
import os, sys, torch
from resnetlab.train import distributed
distributed.init("cpu")
net = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 3))
net(torch.ones(2, 3)).sum().backward()
del net
distributed.shutdown()
names = [open(f"/proc/self/task/{t}/comm").read() for t in os.listdir("/proc/self/task")]
left = sum("gloo" in n for n in names)
open(os.path.join(sys.argv[1], "rank" + os.environ["RANK"]), "w").write(str(left))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread names from /proc (Linux)")
def test_leaving_the_group_after_ddp_ends_gloo_threads(tmp_path):
    # The cause of the rare abort at exit: gloo's threads outliving destroy_process_group() because
    # something still held the group (torch._dynamo, first imported by DDP). None may be left.
    script = tmp_path / "leave.py"
    script.write_text(LEAVE)
    run_ok([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            str(script), str(tmp_path)], tmp_path)
    # one file per rank: two ranks printing to one pipe interleave their lines
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["0", "0"]
