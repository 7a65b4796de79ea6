"""A Reagent generator. `propose` dispatches on the phase; validate, combine
and exploit each propose something here. Change what you like.

Test it natively with `pytest`; build the component with
`reagent strategy build`.
"""

from reagent_sdk import (
    Generator,
    Hypothesis,
    Rng,
    TrialStatus,
    assignments_key,
    export_generator,
    history,
    log,
    render,
)


class Strategy(Generator):
    def validate(self, ctx, max):
        """One random change per knob, in random order."""
        rng = Rng(ctx.seed)
        tried = tried_keys()
        out = []
        for knob in ctx.knobs:
            value = knob.from_unit(rng.random())
            h = (
                Hypothesis(f"try {knob.name} = {render(value)}")
                .because("a first look at each knob")
                .in_category(knob.name)
                .set(knob.name, value)
            )
            if value != knob.baseline and h.key() not in tried:
                out.append(h)
        rng.shuffle(out)
        out = out[:max]
        log.info(f"validate: {len(out)} single changes")
        return out

    def combine(self, ctx, max):
        """Pairs of promising single changes that touch different knobs."""
        promising = [h for h in history.hypotheses() if h.promising and not h.parents]
        promising.sort(key=lambda h: -(h.effect or 0.0))
        tried = tried_keys()
        out = []
        for i, a in enumerate(promising):
            for b in promising[i + 1 :]:
                if len(out) >= max:
                    break
                if {x.knob for x in a.assignments} & {x.knob for x in b.assignments}:
                    continue
                h = (
                    Hypothesis(f"{a.title} + {b.title}")
                    .because("both helped on their own")
                    .in_category("combination")
                    .with_parents([a.id, b.id])
                )
                for x in a.assignments + b.assignments:
                    h.set(x.knob, x.value)
                if h.key() not in tried:
                    tried.add(h.key())
                    out.append(h)
        if not out:
            log.info("combine: fewer than two promising changes; stepping around the best")
            return self.exploit(ctx, max)
        log.info(f"combine: {len(out)} pairs of {len(promising)} promising changes")
        return out

    def exploit(self, ctx, max):
        """Small random steps, one knob at a time, around the best so far."""
        if not ctx.knobs:
            return []
        rng = Rng(ctx.seed)
        best = best_assignments(ctx)
        tried = tried_keys()
        out = []
        for _ in range(20 * max):
            if len(out) >= max:
                break
            knob = ctx.knobs[rng.below(len(ctx.knobs))]
            changes = {a.knob: a.value for a in best}
            u = knob.to_unit(changes.get(knob.name, knob.baseline))
            u = rng.random() if u is None else u + 0.15 * rng.normal()
            changes[knob.name] = knob.from_unit(u)
            h = (
                Hypothesis(f"near the best: {knob.name} = {render(changes[knob.name])}")
                .because("a small step from the best configuration so far")
                .in_category("exploit")
            )
            for spec in ctx.knobs:
                if spec.name in changes and changes[spec.name] != spec.baseline:
                    h.set(spec.name, changes[spec.name])
            if h.assignments and h.key() not in tried:
                tried.add(h.key())
                out.append(h)
        log.info(f"exploit: {len(out)} steps around {len(best)} changed knobs")
        return out


def tried_keys():
    """Keys of every configuration proposed so far in this campaign."""
    return {assignments_key(h.assignments) for h in history.hypotheses()}


def best_assignments(ctx):
    """The changes of the best succeeded trial so far (none: the baseline)."""
    best = None
    for t in history.trials():
        if t.status == TrialStatus.SUCCEEDED and t.objective is not None:
            if best is None or ctx.better(t.objective, best.objective):
                best = t
    return list(best.assignments) if best else []


WitWorld = export_generator(Strategy())
