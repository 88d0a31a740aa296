#!/usr/bin/env bash
# The seed sweeps behind docs/RESULTS.md "Seeds and depth" (issue 16), one training at a time, in
# order of what matters most. Every step reuses finished runs and resumes a partial one, so running
# this again after an interruption continues where it stopped. Hours of CPU: run it in the background,
#   nohup bash benchmarks/seed_sweeps.sh > results/seed-sweeps.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
R=.venv/bin/resnetlab
CIFAR=${CIFAR:-../shared/data/cifar10-jpeg.tar.gz}
# Runs finished by an earlier session on another machine (committed by `seed_runs.py save`).
.venv/bin/python benchmarks/seed_runs.py restore

$R reproduce degradation --data fashion-mnist --budget full --epochs 4 --depths 20 32 44 56 --jobs 2 \
    --out results/fmnist-seeds --no-progress
# Seeds 3 and 4 of ResNet-20 and ResNet-56 (the pair the paper's second claim rests on): 5 seeds
# resolve a difference that 3 seeds (t with 2 degrees of freedom) leave open.
$R reproduce depth --data fashion-mnist --budget full --epochs 4 --depths 20 56 --seeds 5 --jobs 2 \
    --out results/fmnist-seeds --no-progress
cp results/fmnist-seeds/depth.md results/fmnist-seeds/depth-20-56-5seeds.md
cp results/fmnist-seeds/results.json results/fmnist-seeds/results-depth-20-56-5seeds.json
$R reproduce shortcuts --data fashion-mnist --budget full --epochs 4 --depth 20 --jobs 2 \
    --out results/fmnist-seeds --no-progress
# The cells paper, warmup and onecycle ran before run records were kept (their table is
# docs/results/depth-ablation/ablation.md); naming them here would train them again (~75 min).
.venv/bin/python benchmarks/depth_ablation.py --out results/depth-ablation --cells zero-init fp32
cp results/depth-ablation/ablation.md results/depth-ablation/ablation-zero-init-fp32.md
cp results/depth-ablation/ablation.json results/depth-ablation/ablation-zero-init-fp32.json
$R reproduce depth --data fashion-mnist --budget full --epochs 4 --depths 20 32 44 56 --jobs 2 \
    --out results/fmnist-seeds --no-progress   # reuses the degradation runs: the depth table
$R reproduce depth --data "$CIFAR" --budget full --depths 20 56 --jobs 2 --out results/cifar10-seeds \
    --no-progress
# The ResNet-20/56 pair at a longer budget (the 4-epoch pair is not resolved): 12 epochs, 5 seeds,
# about 2.3 hours on 2 cores with bf16.
$R reproduce depth --data fashion-mnist --budget full --epochs 12 --depths 20 56 --seeds 5 --jobs 2 \
    --out results/fmnist-seeds-e12 --no-progress
