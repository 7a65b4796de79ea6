#!/bin/sh
# A scripted training job with a learning curve, for the early-stopping
# tests: reports valid_loss at steps 1..10, one step every $CURVE_STEP_SECS
# (default 0.3 s), falling towards a final loss set by its knobs.
# usage: curve.sh LR LAYERS SEED
lr=$1; layers=$2; seed=$3
pause=${CURVE_STEP_SECS:-0.3}
step=1
while [ "$step" -le 10 ]; do
  awk -v lr="$lr" -v layers="$layers" -v seed="$seed" -v step="$step" 'BEGIN {
    x = log(lr) / log(10) + 1.5
    final = 0.5 + 0.05 * x * x - 0.01 * layers
    srand(seed * 100 + step); noise = (rand() - 0.5) * 0.002
    loss = final + 0.6 * (0.7 ^ step) + noise
    printf("{\"step\":%d,\"valid_loss\":%.6f}\n", step, loss) >> ENVIRON["REAGENT_METRICS"]
  }'
  sleep "$pause"
  step=$((step + 1))
done
