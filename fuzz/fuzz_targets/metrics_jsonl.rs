#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| reagent::fuzz::metrics_jsonl(data));
