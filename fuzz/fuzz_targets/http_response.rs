//! Any bytes as the whole HTTP response, split into reads of any size: the core's reader (what
//! both drivers run) ends the attempt in a token or an error once the connection ends, never a
//! panic, and a token it returns is valid.
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
    // The first byte sets the size of each read.
    let Some((&step, raw)) = data.split_first() else {
        return;
    };
    let mut answer = fetch::new_answer();
    let mut ended = None;
    for piece in raw.chunks(usize::from(step).max(1)) {
        answer.feed(piece);
        ended = fetch::read_answer(&mut answer);
        if ended.is_some() {
            break;
        }
    }
    let (result, _) = ended.unwrap_or_else(|| {
        answer.eof();
        fetch::read_answer(&mut answer).expect("an answer whose connection ended is over")
    });
    match result {
        Ok(f) => assert!(!f.token.is_empty()),
        Err(e) => assert!(e.code().starts_with("ERR_METADATA_")),
    }
});
