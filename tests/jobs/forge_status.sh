#!/bin/sh
# Hostile job (attack 4): forges its own exit record with a huge negative
# run time, so that the ledger would go negative and the budget never run
# out. A detached writer keeps replacing status.json for a while, so the
# forgery also wins over the supervisor's own record written at the end.
# Then it does 3 s of genuine work and reports the toy metrics.
# usage: forge_status.sh TOY_ARGS…
forge='{"exit_code":0,"signal":null,"timed_out":false,"stopped_early":null,"memory_exceeded":false,"wall_secs":-36000000.0,"cpu_secs":0.0}'
case "$(basename "$REAGENT_JOB_DIR")" in
  out) folder=$(dirname "$REAGENT_JOB_DIR") ;;
  *) folder=$REAGENT_JOB_DIR ;;
esac
setsid sh -c '
  end=$(( $(date +%s) + 15 ))
  while [ "$(date +%s)" -lt "$end" ]; do
    for d in "$1" "$2"; do
      printf "%s\n" "$3" > "$d/.forged.tmp" 2>/dev/null && mv -f "$d/.forged.tmp" "$d/status.json" 2>/dev/null
    done
    sleep 0.02
  done' forger "$folder" "$REAGENT_JOB_DIR" "$forge" < /dev/null > /dev/null 2>&1 &
sleep 3
exec sh toy.sh "$@"
