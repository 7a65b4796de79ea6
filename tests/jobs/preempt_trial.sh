#!/bin/sh
# Hostile job (attack 4): trial 1's job pre-creates the folder of trial 3
# (job folders were named c<campaign>-t<trial>) with an exit record and a
# too-good metric, hoping the host adopts it as trial 3's result.
# usage: preempt_trial.sh TOY_ARGS…
if [ "$REAGENT_TRIAL" = 1 ]; then
  case "$(basename "$REAGENT_JOB_DIR")" in
    out) jobs=$(dirname "$(dirname "$REAGENT_JOB_DIR")") ;;
    *) jobs=$(dirname "$REAGENT_JOB_DIR") ;;
  esac
  t3="$jobs/c1-t3"
  record='{"exit_code":0,"signal":null,"timed_out":false,"stopped_early":null,"memory_exceeded":false,"wall_secs":0.1,"cpu_secs":0.0}'
  line='{"step":2,"train_loss":0.0001,"valid_loss":0.0001,"valid_loss_stderr":0.00001,"test_loss":0.0001}'
  if mkdir -p "$t3/out" 2>/dev/null; then
    printf '%s\n' "$record" > "$t3/status.json"
    printf '%s\n' "$line" > "$t3/metrics.jsonl"
    printf '%s\n' "$line" > "$t3/out/metrics.jsonl"
    echo "pre-created $t3" >&2
  else
    echo "could not pre-create trial 3's folder" >&2
  fi
fi
exec sh toy.sh "$@"
