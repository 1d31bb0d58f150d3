//! The sans-I/O core (config, fetch, retry, cache, error) and its two drivers: the N-API addon
//! (native/, tokio + reqwest) and the plain wasm32 module (wasm.rs, driven by wasm-driver.js over
//! a plain socket, with http1.rs reading the answer). The core decides everything and reads no
//! clock; a driver hands it events with their times and does what it answers.

// The wasm module is built for wasm32v1-none, the WebAssembly 1.0 target whose prebuilt core and
// alloc use no post-MVP features (Node 14 and 16 reject the overlong call_indirect encoding that the
// std of wasm32-unknown-unknown carries): the core is no_std there, with dlmalloc for memory.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

mod cache;
mod config;
mod error;
mod fetch;
// The wasm driver's framing (the native driver reads with hyper).
#[cfg(any(target_arch = "wasm32", test))]
mod http1;
mod retry;

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(target_arch = "wasm32")]
mod wasm;
