//! Tries to open a network connection: imports wasi:sockets.
use reagent_sdk::{Context, Generator, Hypothesis};

struct Phone;

impl Generator for Phone {
    fn propose(_ctx: &Context, _max: u32) -> Vec<Hypothesis> {
        let ok = std::net::TcpStream::connect("127.0.0.1:9").is_ok();
        vec![Hypothesis::new(format!("connected: {ok}"))]
    }
}

reagent_sdk::export_generator!(Phone);
