//! The C ABI from outside Rust, as an engine would use it: the C example and the
//! bad-input program are compiled with the system C compiler against `libxor.so`
//! and the committed header, and run under valgrind against an enrollment server on
//! loopback; a Python `ctypes` program does the same through the shared library.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use xor_node::devnet::{DevNet, OVERLAY, PASSWORD};
use xor_tests::external::have;

/// `target/<profile>/deps`, where cargo builds `libxor.so` for this test (it copies
/// it up to `target/<profile>` only on `cargo build`).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().to_owned();
    assert!(
        dir.join("libxor.so").exists(),
        "no libxor.so in {}",
        dir.display()
    );
    dir
}

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Compiles `source` into `out` with warnings as errors.
fn compile(source: &Path, out: &Path) {
    let lib = lib_dir();
    let status = std::process::Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-pthread"])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(source)
        .arg("-L")
        .arg(&lib)
        .arg("-lxor")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "cc {} failed", source.display());
}

/// The operator and the arguments every program takes.
async fn operator(dir: &Path) -> (DevNet, Vec<String>) {
    let net = DevNet::start(&["alice", "bob"]).await.unwrap();
    let pem = dir.join("root.pem");
    std::fs::write(&pem, net.root_pem()).unwrap();
    let args = vec![
        OVERLAY.to_owned(),
        net.config_url().to_owned(),
        pem.display().to_string(),
        PASSWORD.to_owned(),
    ];
    (net, args)
}

/// Runs `program args` under valgrind (memcheck: invalid accesses, uses of
/// uninitialised memory, definite leaks all fail the run).
async fn valgrind(program: &Path, args: &[String]) -> Output {
    tokio::process::Command::new("valgrind")
        .args([
            "--quiet",
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite",
        ])
        .arg(format!(
            "--suppressions={}",
            crate_dir().join("tests/valgrind.supp").display()
        ))
        .arg(program)
        .args(args)
        // cargo's LD_LIBRARY_PATH names target/<profile>, whose libxor.so is only
        // refreshed by `cargo build`, and it wins over the program's rpath.
        .env("LD_LIBRARY_PATH", lib_dir())
        .output()
        .await
        .unwrap()
}

fn report(what: &str, out: &Output) {
    let text = format!(
        "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
}

fn tools() -> bool {
    have("cc", &["--version"], "a C compiler (apt-get install gcc)")
        && have(
            "valgrind",
            &["--version"],
            "valgrind (apt-get install valgrind)",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_example_chats_both_ways_valgrind_clean() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("chat");
    compile(&crate_dir().join("examples/chat.c"), &program);
    let (_net, args) = operator(dir.path()).await;
    let out = valgrind(&program, &args).await;
    report("examples/chat.c", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("bob got \"hello from C\" on thread game-events"),
        "{stdout}"
    );
    assert!(
        stdout.contains("alice got event 1 from bob@example.org/c-game: hello back"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_through_the_c_api_gets_status_codes_valgrind_clean() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("bad_input");
    compile(&crate_dir().join("tests/c/bad_input.c"), &program);
    let (_net, args) = operator(dir.path()).await;
    let out = valgrind(&program, &args).await;
    report("tests/c/bad_input.c", &out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("all bad input refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_ctypes_chats_through_the_shared_library() {
    if !have("python3", &["--version"], "python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_net, args) = operator(dir.path()).await;
    let out = tokio::process::Command::new("python3")
        .arg(crate_dir().join("tests/py/chat.py"))
        .arg(lib_dir().join("libxor.so"))
        .args(&args)
        .output()
        .await
        .unwrap();
    report("tests/py/chat.py", &out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ctypes: ok"));
}
