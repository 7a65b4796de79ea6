#!/bin/sh
# A stand-in for a training job, for the quickstart campaign.
#
# It does no real training: it computes a "loss" from its knobs with a
# formula (best near lr = 0.03, with adam, more layers) plus a little
# seed-dependent noise, and reports it the way a real job should: as JSON
# lines appended to the file named by $REAGENT_METRICS.
#
# usage: train.sh LR OPTIMIZER LAYERS BATCH SEED
#
# The knob values arrive as arguments because campaign.toml's command puts
# `{lr}`, `{optimizer}`, … there. A job can read them in two other ways:
#   - environment variables: $REAGENT_KNOB_LR, $REAGENT_KNOB_OPTIMIZER, …,
#     $REAGENT_SEED and $REAGENT_TRIAL;
#   - the JSON file named by $REAGENT_PARAMS, e.g.
#     {"lr": 0.3, "optimizer": "sgd", "layers": 0, "batch_size": 256,
#      "seed": 1, "trial": 1}
# The job runs in the campaign file's folder (the `workdir`); its stdout
# and stderr go to stdout.log and stderr.log in its job folder (the
# parent of $REAGENT_JOB_DIR, under .reagent/jobs/).
lr=$1; opt=$2; layers=$3; batch=$4; seed=$5

awk -v lr="$lr" -v opt="$opt" -v layers="$layers" -v batch="$batch" -v seed="$seed" 'BEGIN {
  # The made-up loss surface.
  x = log(lr) / log(10) + 1.5
  loss = 0.5 + 0.05 * x * x
  if (opt == "adam") loss -= 0.03
  loss -= 0.01 * layers
  loss += 0.00001 * (batch - 256) / 256
  # Seed noise: different seeds give slightly different results, as real
  # training does. Reagent measures this spread with the baseline replicates.
  srand(seed); loss += (rand() - 0.5) * 0.002

  # One JSON object per line. Numeric fields are metrics; "step" says where
  # in training the line was written. The last value reported for a metric
  # is the one Reagent uses.
  m = ENVIRON["REAGENT_METRICS"]
  printf("{\"step\":1,\"train_loss\":%.6f,\"valid_loss\":%.6f}\n", loss + 0.1, loss + 0.05) >> m
  # The final evaluation:
  #   valid_loss         the objective (campaign.toml: [objective] metric)
  #   valid_loss_stderr  the standard error of valid_loss due to the finite
  #                      validation set; Reagent adds it to its noise estimate
  #   test_loss          the holdout metric: recorded and reported only
  printf("{\"step\":2,\"train_loss\":%.6f,\"valid_loss\":%.6f,\"valid_loss_stderr\":0.0005,\"test_loss\":%.6f}\n", loss + 0.05, loss, loss + 0.002) >> m
}'
