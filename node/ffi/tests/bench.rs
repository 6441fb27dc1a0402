//! The C ABI's benchmark (not a test: it asserts nothing about speed). Run in
//! release mode and read the figures it prints:
//!
//! ```sh
//! cargo test --release -p xor-ffi --test bench -- --ignored --nocapture
//! ```
//!
//! `XOR_BENCH_MESSAGES` (default 10,000) and `XOR_BENCH_IDLE` (seconds, default 60)
//! change the run.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};

use xor_node::devnet::{DevNet, OVERLAY, PASSWORD};

fn lib_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it on purpose (see the module docs)"]
async fn c_api_memory_idle_cpu_and_throughput() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("bench");
    let lib = lib_dir();
    let status = std::process::Command::new("cc")
        .args(["-std=c11", "-O2", "-pthread", "-I"])
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("examples/bench.c"))
        .arg("-L")
        .arg(&lib)
        .arg("-lxor")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&program)
        .status()
        .unwrap();
    assert!(status.success());
    let net = DevNet::start(&["alice", "bob"]).await.unwrap();
    let pem = dir.path().join("root.pem");
    std::fs::write(&pem, net.root_pem()).unwrap();
    let messages = std::env::var("XOR_BENCH_MESSAGES").unwrap_or_else(|_| "10000".into());
    let idle = std::env::var("XOR_BENCH_IDLE").unwrap_or_else(|_| "60".into());
    let out = tokio::process::Command::new(&program)
        .args([OVERLAY, net.config_url()])
        .arg(&pem)
        .args([PASSWORD, &messages, &idle])
        .env("LD_LIBRARY_PATH", &lib)
        .output()
        .await
        .unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
