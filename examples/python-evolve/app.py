"""evolve: a small evolutionary generator (see README.md)."""

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

#: Parents kept for the exploit phase.
MU = 4


class Evolve(Generator):
    def validate(self, ctx, max):
        rng = Rng(ctx.seed)
        tried = tried_keys()
        out = []
        # Positions spread over [0, 1], a different offset per call, so
        # successive rounds fill the range in.
        shift = rng.random()
        # Round r proposes each knob's r-th untried sweep point, so every
        # knob is looked at before any is looked at twice.
        sweeps = []
        for knob in ctx.knobs:
            points = []
            for i in range(4):
                value = knob.from_unit(((i + shift) / 4.0) % 1.0)
                h = (
                    Hypothesis(f"{knob.name} = {render(value)}")
                    .because(f"sweep {knob.name} across its range")
                    .in_category(knob.name)
                    .set(knob.name, value)
                )
                if value != knob.baseline and h.key() not in tried:
                    tried.add(h.key())
                    points.append(h)
            sweeps.append(points)
        rounds = max_value(*[len(p) for p in sweeps], 0) if sweeps else 0
        for r in range(rounds):
            out.extend(shuffled(rng, [p[r] for p in sweeps if r < len(p)]))
        log.info(f"validate: {len(out[:max])} of {len(out)} sweep points")
        return out[:max]

    def combine(self, ctx, max):
        single = [h for h in history.hypotheses() if h.promising and not h.parents]
        single.sort(key=lambda h: -(h.effect or 0.0))
        tried = tried_keys()
        out = []
        for i, a in enumerate(single):
            for b in single[i + 1 :]:
                if len(out) >= max:
                    break
                if {x.knob for x in a.assignments} & {x.knob for x in b.assignments}:
                    continue
                h = (
                    Hypothesis(f"{a.title} with {b.title}")
                    .because("both helped alone")
                    .in_category("combine")
                    .with_parents([a.id, b.id])
                )
                for x in a.assignments + b.assignments:
                    h.set(x.knob, x.value)
                if h.key() not in tried:
                    tried.add(h.key())
                    out.append(h)
        if not out:
            return self.exploit(ctx, max)
        log.info(f"combine: {len(out)} pairs from {len(single)} promising changes")
        return out

    def exploit(self, ctx, max):
        if not ctx.knobs:
            return []
        rng = Rng(ctx.seed)
        parents = elite(ctx, MU)
        tried = tried_keys()
        # Wider steps early, narrower as the budget runs out.
        left = ctx.trials_left / max_value(ctx.trials_left + ctx.trials_done, 1)
        sigma = 0.05 + 0.2 * left
        out = []
        for _ in range(30 * max):
            if len(out) >= max:
                break
            mother = tournament(rng, parents)
            father = tournament(rng, parents)
            child = {}
            for knob in ctx.knobs:
                source = mother if rng.chance(0.5) else father
                value = source.get(knob.name, knob.baseline)
                if rng.chance(1.0 / len(ctx.knobs)) or not parents:
                    u = knob.to_unit(value)
                    u = rng.random() if u is None else u + sigma * rng.normal()
                    value = knob.from_unit(u)
                if value != knob.baseline:
                    child[knob.name] = value
            h = Hypothesis("evolved: " + ", ".join(f"{k}={render(v)}" for k, v in child.items()))
            h.because(f"crossover of the {len(parents)} best, mutation width {sigma:.2f}")
            h.in_category("exploit")
            for k, v in child.items():
                h.set(k, v)
            if h.assignments and h.key() not in tried:
                tried.add(h.key())
                out.append(h)
        log.info(f"exploit: {len(out)} children of {len(parents)} parents, sigma {sigma:.2f}")
        return out


def max_value(*values):
    return max(values)


def tournament(rng, ranked):
    """The better of two random picks from `ranked` (best first); {} if empty."""
    if not ranked:
        return {}
    return ranked[min(rng.below(len(ranked)), rng.below(len(ranked)))]


def shuffled(rng, items):
    items = list(items)
    rng.shuffle(items)
    return items


def tried_keys():
    return {assignments_key(h.assignments) for h in history.hypotheses()}


def elite(ctx, mu):
    """The `mu` best succeeded configurations, as {knob: value}, best first
    (each configuration's mean over its trials)."""
    by_config = {}
    for t in history.trials():
        if t.status == TrialStatus.SUCCEEDED and t.objective is not None:
            key = assignments_key(t.assignments)
            entry = by_config.setdefault(key, [t.assignments, []])
            entry[1].append(t.objective)
    ranked = sorted(
        by_config.values(),
        key=lambda e: sum(e[1]) / len(e[1]),
        reverse=not ctx.better(0.0, 1.0),
    )
    return [{a.knob: a.value for a in assignments} for assignments, _ in ranked[:mu]]


WitWorld = export_generator(Evolve())
