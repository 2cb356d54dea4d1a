//! The webhook verifier must never panic, whatever the headers and body, and must
//! only accept a request signed with the key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_catalog::webhook::{SecretKey, verify};

fuzz_target!(|input: (Vec<(String, String)>, Vec<u8>, i64, i64)| {
    let (headers, body, now, tolerance) = input;
    let Some(key) = SecretKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw6ZA5vVoTYQg=") else { return };
    let _ = verify(&[key], &headers, &body, now, tolerance);
});
