#!/bin/sh
# Hostile job (attack 8): trial 1 writes its whole environment to env.txt,
# looking for the language model's API key and anything else the host has.
# usage: dump_env.sh TOY_ARGS…
if [ "$REAGENT_TRIAL" = 1 ]; then env > "$REAGENT_JOB_DIR/env.txt"; fi
exec sh toy.sh "$@"
