#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| reagent::fuzz::insights_import(data));
