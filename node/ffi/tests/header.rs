//! The committed header is exactly what cbindgen makes of the crate today.

#![allow(clippy::unwrap_used)]

#[test]
fn the_committed_header_is_what_cbindgen_generates() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .unwrap()
        .write(&mut generated);
    let path = format!("{dir}/include/xor.h");
    if std::env::var_os("XOR_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/xor.h is stale: regenerate it with `XOR_BLESS=1 cargo test -p xor-ffi --test header` and commit it"
    );
}
