//! A valid component of some other world: it exports `greet`, not
//! `propose` or `diagnose`.

wit_bindgen::generate!({
    inline: "
        package other:hello@1.0.0;
        world hello { export greet: func() -> string; }
    ",
    world: "other:hello/hello",
});

struct Hello;

impl Guest for Hello {
    fn greet() -> String {
        "hello".to_string()
    }
}

export!(Hello);
