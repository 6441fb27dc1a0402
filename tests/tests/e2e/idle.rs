//! What an idle device costs: bytes it sends and how often its process wakes, with
//! real `xor-node run` daemons on loopback (three users with two devices each, all
//! streams between each user's devices up, no chat). A benchmark, run by hand; the
//! result and the exact command are in BENCHMARKS.md.
//!
//! Bytes: the payload bytes the process's TCP sockets sent (`ss -ti`, `bytes_sent`),
//! overlay links and direct streams alike. Wake-ups: context switches of all its
//! threads (`/proc/<pid>/task/*/status`), the way `powertop` counts them.

use std::time::Duration;

use xor_node::devnet::DevNet;
use xor_tests::daemon::loopback_users;

/// TCP payload bytes sent so far by each process in `pids`, from `ss -tinp`.
async fn tcp_bytes_sent(pids: &[u32]) -> Vec<u64> {
    let out = tokio::process::Command::new("ss")
        .args(["-tinpH"])
        .output()
        .await
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sent = vec![0u64; pids.len()];
    let mut owner: Option<usize> = None;
    for line in text.lines() {
        if !line.starts_with([' ', '\t']) {
            owner = pids
                .iter()
                .position(|p| line.contains(&format!("pid={p},")));
        }
        if let (Some(i), Some(at)) = (owner, line.find("bytes_sent:")) {
            let n: String = line[at + "bytes_sent:".len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            sent[i] += n.parse::<u64>().unwrap_or(0);
        }
    }
    sent
}

/// Context switches of every thread of `pid` so far.
fn wakeups(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|s| {
            s.lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `cargo test -p xor-tests --test e2e -- --ignored --nocapture bench_idle_device_cost`
/// (`XOR_IDLE_SETTLE` and `XOR_IDLE_WINDOW`, in seconds, change the 90 s settling
/// and the 300 s measured window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_idle_device_cost() {
    let secs = |var: &str, default: u64| {
        Duration::from_secs(
            std::env::var(var)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default),
        )
    };
    let (settle, window) = (secs("XOR_IDLE_SETTLE", 90), secs("XOR_IDLE_WINDOW", 300));
    let net = DevNet::start(&["u0", "u1", "u2"]).await.unwrap();
    let (daemons, _) = loopback_users(&net, 3, 2).await.unwrap();
    let pids: Vec<u32> = daemons.iter().filter_map(|d| d.pid()).collect();
    assert_eq!(pids.len(), daemons.len());
    tokio::time::sleep(settle).await;
    let bytes0 = tcp_bytes_sent(&pids).await;
    let wake0: Vec<u64> = pids.iter().map(|p| wakeups(*p)).collect();
    tokio::time::sleep(window).await;
    let bytes1 = tcp_bytes_sent(&pids).await;
    let wake1: Vec<u64> = pids.iter().map(|p| wakeups(*p)).collect();
    let w = window.as_secs_f64();
    let mut rates = Vec::new();
    let mut wakes = Vec::new();
    for (i, d) in daemons.iter().enumerate() {
        let rate = bytes1[i].saturating_sub(bytes0[i]) as f64 / w;
        let wake = wake1[i].saturating_sub(wake0[i]) as f64 / w;
        println!(
            "{:<14} {:>8.1} B/s {:>6.2} wake-ups/s  {} KiB RSS",
            d.config.file_stem().unwrap().to_string_lossy(),
            rate,
            wake,
            d.rss_kib().unwrap_or(0)
        );
        rates.push(rate);
        wakes.push(wake);
    }
    println!(
        "median: {:.1} B/s sent, {:.2} wake-ups/s (the first device is everyone's bootstrap node)",
        median(rates),
        median(wakes)
    );
    for d in daemons {
        d.stop().await;
    }
}
