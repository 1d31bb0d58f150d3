//! Any status and any body: classified or parsed without a panic, and a parsed token is valid.
#![no_main]

extern crate alloc;

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/core/error.rs"]
mod error;
#[allow(dead_code)]
#[path = "../../src/core/fetch.rs"]
mod fetch;
#[allow(dead_code)]
#[path = "../../src/core/http1.rs"]
mod http1;
#[path = "../../src/core/json.rs"]
mod json;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 2 {
        let status = u16::from_le_bytes([data[0], data[1]]);
        if let Err(e) = fetch::classify_status(status, data.len() % 2 == 0) {
            let _ = e.describe("http://h/p", 1);
        }
    }
    match fetch::parse(data) {
        Ok(f) => {
            assert!(!f.token.is_empty() && !f.token.chars().any(char::is_control));
            assert!(f.expires_in.as_secs() >= 1 && f.expires_in.as_secs() <= fetch::MAX_EXPIRES_IN_SECS);
        }
        Err(e) => {
            let message = e.describe("http://h/p", 1);
            // A message never repeats a string from the body (the token could be any of them).
            if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice::<serde_json::Value>(data) {
                if let Some(serde_json::Value::String(t)) = o.get("access_token") {
                    assert!(t.len() < 12 || !message.contains(t.as_str()), "{message}");
                }
            }
        }
    }
});
