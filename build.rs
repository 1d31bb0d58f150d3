fn main() {
    // The wasm32 module is the core alone: no N-API to link against.
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("wasm32") {
        napi_build::setup();
    }
}
