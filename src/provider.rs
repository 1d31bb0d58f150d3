//! Wires settings, the HTTP client, retries and the cache together, and owns the one small
//! runtime every fetch runs on.

use crate::cache::{BoxFuture, Cache, Upstream};
use crate::config::Settings;
use crate::error::Error;
use crate::fetch::{self, Fetched};
use crate::retry::{self, Backoff, Policy};
use std::sync::{Arc, Mutex, OnceLock};

/// The runtime, started on the first fetch: loading the addon or answering from the cache starts
/// no thread. One thread drives every fetch of the process (they are a few idle sockets), which
/// suits one-vCPU containers; its tasks never keep Node's event loop alive.
pub fn runtime() -> tokio::runtime::Handle {
    static RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                // Only name lookups of a host given by name block; one thread is plenty.
                .max_blocking_threads(1)
                .build()
                .expect("the tokio runtime must start");
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("yc-metadata-token".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .expect("the runtime thread must start");
            handle
        })
        .clone()
}

/// One client for the process, made on the runtime thread at the first fetch; it keeps the
/// connection to the metadata service alive between refreshes.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(fetch::client)
}

struct Metadata {
    /// Parsed once: parsing per request cost more CPU than the rest of building it.
    url: Arc<reqwest::Url>,
    policy: Policy,
}

impl Upstream for Metadata {
    fn fetch(&self) -> BoxFuture<(Result<Fetched, Error>, u32)> {
        let url = Arc::clone(&self.url);
        let policy = self.policy;
        Box::pin(async move {
            retry::run(&policy, |timeout| fetch::attempt(client(), &url, timeout)).await
        })
    }
}

/// A cache of its own for a `new TokenProvider()`; for the default provider, the one cache the
/// whole process (every worker thread) shares for these settings.
pub fn provider(settings: &Settings, shared: bool) -> Result<Arc<Cache>, Error> {
    if !shared {
        return new_cache(settings);
    }
    static SHARED: Mutex<Vec<(Settings, Arc<Cache>)>> = Mutex::new(Vec::new());
    let mut caches = SHARED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, cache)) = caches.iter().find(|(s, _)| s == settings) {
        return Ok(Arc::clone(cache));
    }
    let cache = new_cache(settings)?;
    caches.push((settings.clone(), Arc::clone(&cache)));
    Ok(cache)
}

fn new_cache(settings: &Settings) -> Result<Arc<Cache>, Error> {
    let url = reqwest::Url::parse(&settings.url()).map_err(|_| {
        Error::InvalidOption(format!(
            "host {:?} does not make a valid URL",
            settings.host
        ))
    })?;
    let upstream = Metadata {
        url: Arc::new(url),
        policy: Policy {
            max_attempts: settings.max_attempts,
            timeout: settings.timeout,
            deadline: settings.deadline,
            backoff: Backoff::DEFAULT,
        },
    };
    Ok(Cache::new(
        Box::new(upstream),
        settings.refresh_margin,
        runtime,
    ))
}
