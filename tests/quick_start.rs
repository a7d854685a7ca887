//! The quick start as a newcomer runs it: `fanlog serve` with no `--data`
//! keeps its data under `./fanlog-data` (which git ignores) and tells the
//! person at the terminal where the console is, on stderr, while stdout
//! keeps exactly the `listening` lines that scripts read.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn serve_uses_the_default_data_directory_and_prints_the_console_url() {
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fanlog"))
        .current_dir(cwd.path())
        .args(["serve", "--tcp", "127.0.0.1:0", "--quic", "127.0.0.1:0"])
        .args(["--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let listening: Vec<String> = stdout.lines().take(3).map(Result::unwrap).collect();
    assert!(
        listening.iter().all(|l| l.starts_with("listening ")),
        "{listening:?}"
    );
    let http = listening
        .iter()
        .find_map(|l| l.strip_prefix("listening http "))
        .unwrap()
        .to_owned();
    let console = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .find_map(|l| l.strip_prefix("console: ").map(str::to_owned))
        .expect("a console line on stderr");
    assert_eq!(console, format!("http://{http}/"));
    assert!(cwd.path().join("fanlog-data/topics").is_dir());
    let ignored =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.gitignore")).unwrap();
    assert!(
        ignored.lines().any(|l| l.trim() == "fanlog-data/"),
        "{ignored}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
