//! `kill -9` of `fanlog serve --fsync always` while `fanlog pub` streams
//! messages from stdin: after a restart, `fanlog sub --from earliest` shows
//! every seq that `pub` printed, with its payload, dense and in order.
//! Three rounds on one data directory, all through the real binaries.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[test]
fn acked_publishes_survive_kill_9_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    // (payload, seq) of every acknowledged publish, over all rounds.
    let mut acked: Vec<(String, u64)> = Vec::new();
    for round in 0..3 {
        let serve =
            common::ServeProcess::start(dir.path(), &["--quic", "off", "--fsync", "always"]);
        let mut publisher = Command::new(env!("CARGO_BIN_EXE_fanlog"))
            .args(["pub", "crash", "--server", &serve.tcp])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = publisher.stdin.take().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut sent = Vec::new();
                for i in 0..1_000_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let line = format!("r{round}-line-{i}");
                    if writeln!(stdin, "{line}").is_err() {
                        break;
                    }
                    sent.push(line);
                    if i % 64 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                sent
            })
        };
        let stdout = publisher.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .map(|l| l.parse::<u64>().expect("a seq per line"))
                .collect::<Vec<_>>()
        });

        std::thread::sleep(Duration::from_millis(800 + 300 * round));
        serve.kill9();
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        publisher.kill().unwrap();
        publisher.wait().unwrap();
        let sent = writer.join().unwrap();
        let seqs = reader.join().unwrap();
        assert!(
            seqs.len() > 50,
            "round {round}: pub acknowledged too little to test: {}",
            seqs.len()
        );
        // pub prints one seq per input line, in input order.
        acked.extend(sent.into_iter().zip(seqs));

        let serve =
            common::ServeProcess::start(dir.path(), &["--quic", "off", "--fsync", "always"]);
        let last = acked.iter().map(|(_, s)| *s).max().unwrap();
        let out = common::fanlog(&[
            "sub",
            "crash",
            "--from",
            "earliest",
            "--count",
            &(last + 1).to_string(),
            "--server",
            &serve.tcp,
        ]);
        let lines: Vec<(u64, String)> = out
            .lines()
            .map(|l| {
                let (s, p) = l.split_once('\t').expect("SEQ<TAB>PAYLOAD");
                (s.parse().unwrap(), p.to_owned())
            })
            .collect();
        for (i, (seq, _)) in lines.iter().enumerate() {
            assert_eq!(*seq, i as u64, "round {round}: seqs dense and in order");
        }
        for (payload, seq) in &acked {
            let got = &lines
                .get(*seq as usize)
                .unwrap_or_else(|| panic!("round {round}: acked seq {seq} missing"))
                .1;
            assert_eq!(got, payload, "round {round}: seq {seq}");
        }
        eprintln!(
            "round {round}: {} acknowledged in all, log has at least {} records",
            acked.len(),
            lines.len()
        );
        assert!(serve.terminate().success(), "serve exits 0 on SIGTERM");
    }
}
