//! The Pilot importer must never panic, and whatever it accepts must validate or
//! be refused with an error, never a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_catalog::{export, spec};

fuzz_target!(|json: &str| {
    if let Ok(mut parsed) = export::parse(json, 256 * 1024) {
        let _ = spec::validate(&mut parsed, spec::Limits { max_steps: 50, max_document_bytes: 256 * 1024 });
    }
});
