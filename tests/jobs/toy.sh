#!/bin/sh
# A scripted training job for the campaign tests: computes a noisy loss
# from its knobs and reports it as JSON lines to $REAGENT_METRICS.
# usage: toy.sh LR OPTIMIZER LAYERS BATCH SEED
# A trial fails on purpose when $FAIL_T<trial> names a mode:
# oom | nan | timeout | crash | nometric | garbage | html.
lr=$1; opt=$2; layers=$3; batch=$4; seed=$5
if [ -n "$TOY_RUNS" ]; then echo "$REAGENT_JOB_DIR" >> "$TOY_RUNS"; fi
# $TOY_SPANS: when each job started and ended (ns), for the quota tests.
if [ -n "$TOY_SPANS" ]; then
  echo "start $(date +%s%N) $REAGENT_CAMPAIGN $REAGENT_JOB_DIR" >> "$TOY_SPANS"
  trap 'echo "end $(date +%s%N) $REAGENT_CAMPAIGN $REAGENT_JOB_DIR" >> "$TOY_SPANS"' EXIT
fi
if [ -n "$TOY_SLEEP" ]; then sleep "$TOY_SLEEP"; fi
eval "mode=\${FAIL_T${REAGENT_TRIAL}:-}"
case "$mode" in
  oom) echo "loading data"; echo "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (batch $batch)" >&2; exit 1 ;;
  nan) echo '{"step":1,"train_loss":0.69}' >> "$REAGENT_METRICS"
       echo '{"step":2,"train_loss":NaN}' >> "$REAGENT_METRICS"; sleep 20; exit 0 ;;
  timeout) sleep 30 ;;
  crash) printf 'Traceback (most recent call last):\n  File "train.py", line 3, in <module>\nValueError: shapes (3,) and (4,) not aligned\n' >&2; exit 1 ;;
  nometric) echo '{"step":1,"other":1}' >> "$REAGENT_METRICS"; exit 0 ;;
  garbage) echo 'this is not json' >> "$REAGENT_METRICS"; exit 0 ;;
  html) echo 'RuntimeError: <script>alert("job")</script><img src=x onerror=alert(1)>' >&2; exit 1 ;;
esac
awk -v lr="$lr" -v opt="$opt" -v layers="$layers" -v batch="$batch" -v seed="$seed" 'BEGIN {
  x = log(lr) / log(10) + 1.5
  loss = 0.5 + 0.05 * x * x
  if (opt == "adam") loss -= 0.03
  loss -= 0.01 * layers
  loss += 0.00001 * (batch - 256) / 256
  srand(seed); loss += (rand() - 0.5) * 0.002
  m = ENVIRON["REAGENT_METRICS"]
  printf("{\"step\":1,\"train_loss\":%.6f,\"valid_loss\":%.6f}\n", loss + 0.1, loss + 0.05) >> m
  printf("{\"step\":2,\"train_loss\":%.6f,\"valid_loss\":%.6f,\"valid_loss_stderr\":0.0005,\"test_loss\":%.6f}\n", loss + 0.05, loss, loss + 0.002) >> m
}'
