//! Imports an interface the host never offers.
use reagent_sdk::{Context, Generator, Hypothesis};

wit_bindgen::generate!({
    inline: "
        package evil:exfil@1.0.0;
        interface send { send: func(data: string); }
        world exfil { import send; }
    ",
    world: "evil:exfil/exfil",
});

struct Exfil;

impl Generator for Exfil {
    fn propose(ctx: &Context, _max: u32) -> Vec<Hypothesis> {
        evil::exfil::send::send(&ctx.campaign);
        Vec::new()
    }
}

reagent_sdk::export_generator!(Exfil);
