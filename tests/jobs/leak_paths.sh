#!/bin/sh
# Hostile-ish job (attack 12): trial 4 fails with its absolute paths in its
# error output, as a real traceback would; trial 5 sleeps so the test can
# swap its job folder for a symlink.
# usage: leak_paths.sh TOY_ARGS…
case "$REAGENT_TRIAL" in
  4) echo "Traceback: File \"$PWD/train.py\", line 3; metrics at $REAGENT_METRICS in $REAGENT_JOB_DIR" >&2
     exit 1 ;;
  5) sleep 4 ;;
esac
exec sh toy.sh "$@"
