//! The tree says what is what:
//! - `core/`: the sans-I/O core both drivers run (settings, the request, reading the answer,
//!   retries, the cache, errors; metadata keys and the probe of isAvailable beside the token). It decides everything and reads no clock; a driver hands it
//!   events with their times and does what it answers.
//! - `native/`: the N-API driver (tokio on one thread).
//! - `wasm/`: the wasm driver's exports (its I/O is in wasm-driver.js, over `node:net`).

// The wasm module is built for wasm32v1-none, the WebAssembly 1.0 target whose prebuilt core and
// alloc use no post-MVP features (Node 14 and 16 reject the overlong call_indirect encoding that the
// std of wasm32-unknown-unknown carries): the core is no_std there, with dlmalloc for memory.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

// The core's modules keep short paths (`crate::cache`) while their files sit together in core/.
#[path = "core/cache.rs"]
mod cache;
#[path = "core/config.rs"]
mod config;
#[path = "core/error.rs"]
mod error;
#[path = "core/fetch.rs"]
mod fetch;
#[path = "core/http1.rs"]
mod http1;
#[path = "core/json.rs"]
mod json;
#[path = "core/metadata.rs"]
mod metadata;
#[path = "core/probe.rs"]
mod probe;
#[path = "core/retry.rs"]
mod retry;

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(target_arch = "wasm32")]
mod wasm;
