#!/bin/sh
# Hostile job (attack 3): trial 1 tries to write the workspace (.reagent/
# in its working directory): a new file, the database opened for writing,
# and approving request $HOSTILE_APPROVE as the operator with the job
# markers removed from its environment. What happened goes to `attempts`.
# usage: workspace_write.sh TOY_ARGS…
if [ "$REAGENT_TRIAL" = 1 ]; then
  ws="$PWD/.reagent"
  r=""
  if touch "$ws/planted" 2>/dev/null; then r="$r touch:ok"; else r="$r touch:denied"; fi
  if ( exec 3>>"$ws/reagent.redb" ) 2>/dev/null; then r="$r db:ok"; else r="$r db:denied"; fi
  if env -u REAGENT_TRIAL -u REAGENT_SUPERVISOR_PROCESS "$HOSTILE_REAGENT" approve "$HOSTILE_APPROVE" \
      --workspace "$PWD" > "$REAGENT_JOB_DIR/approve.out" 2>&1; then
    r="$r approve:ok"
  else
    r="$r approve:failed"
  fi
  echo "$r" > "$REAGENT_JOB_DIR/attempts"
fi
exec sh toy.sh "$@"
