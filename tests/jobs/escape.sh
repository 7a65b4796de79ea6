#!/bin/sh
# Hostile job (attack 5): trial 1 starts a writer in a new session
# (setsid), out of the process group the supervisor signals, that appends
# to a file every 50 ms for a minute, and records its pid.
# usage: escape.sh TOY_ARGS…
if [ "$REAGENT_TRIAL" = 1 ]; then
  setsid sh -c '
    end=$(( $(date +%s) + 60 ))
    while [ "$(date +%s)" -lt "$end" ]; do echo tick >> "$1"; sleep 0.05; done' \
    escaped "$REAGENT_JOB_DIR/escaped.log" < /dev/null > /dev/null 2>&1 &
  echo "$!" > "$REAGENT_JOB_DIR/escaped.pid"
fi
exec sh toy.sh "$@"
