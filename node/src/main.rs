//! `xor-node`: the program users run.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cmd = std::env::args().nth(1).unwrap_or_default();
    #[allow(clippy::print_stderr)]
    match cmd.as_str() {
        "demo" => {
            eprintln!(
                "xor-node demo: not yet — the demo arrives with the node issue (see README)."
            );
            ExitCode::from(2)
        }
        _ => {
            eprintln!("usage: xor-node demo");
            ExitCode::from(2)
        }
    }
}
