//! A well-behaved generator that uses every import, so recording, replay
//! and the capabilities can be checked. Its output depends on what the
//! imports answered.
use reagent_sdk::{Context, Generator, Hypothesis, InsightQuery, history, insights, log, memory};

struct Echo;

impl Generator for Echo {
    fn propose(ctx: &Context, max: u32) -> Vec<Hypothesis> {
        log::info(&format!(
            "echo: phase {} round {}",
            ctx.phase_name(),
            ctx.round
        ));
        println!("echo on stdout");
        eprintln!("echo on stderr");
        let trials = history::trials();
        let hypotheses = history::hypotheses();
        let curve = trials
            .first()
            .map(|t| history::curve(t.id, &ctx.objective.metric))
            .unwrap_or_default();
        let seen = insights::find(&InsightQuery::TopEffects, 10);
        let calls = memory::get("calls").map(|v| v[0]).unwrap_or(0) + 1;
        memory::set("calls", &[calls]).expect("memory quota");
        let mut rng = reagent_sdk::Rng::new(ctx.seed);
        let mut out = Vec::new();
        for knob in &ctx.knobs {
            if out.len() as u32 >= max {
                break;
            }
            let value = knob.from_unit(rng.f64());
            if knob.accepts(&value) && value != knob.baseline {
                out.push(
                    Hypothesis::new(format!(
                        "{} trials={} hyps={} curve={} insights={} calls={}",
                        knob.name,
                        trials.len(),
                        hypotheses.len(),
                        curve.len(),
                        seen.len(),
                        calls
                    ))
                    .because("echo")
                    .category(knob.name.clone())
                    .set(knob.name.clone(), value),
                );
            }
        }
        out
    }
}

reagent_sdk::export_generator!(Echo);
