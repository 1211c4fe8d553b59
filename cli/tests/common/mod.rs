//! Helpers shared by the CLI's test binaries (`cli.rs`, `no_loss.rs`): running the `konsumer`
//! binary to completion and checking how it ended.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs `konsumer ARGS` with `stdin` as its standard input; panics if it runs over a minute.
pub fn konsumer(args: &[&str], stdin: &[u8]) -> Output {
    konsumer_env(args, stdin, &[])
}

/// As [`konsumer`], with these environment variables set.
pub fn konsumer_env(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_konsumer"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the konsumer binary starts");
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.to_vec();
    // Written from another thread, so a full pipe cannot deadlock with the output reads.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let output = child.wait_with_output().expect("waiting for konsumer");
        let _ = done_tx.send(());
        output
    });
    if done_rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        panic!("konsumer {args:?} did not finish within 60 s");
    }
    writer.join().expect("stdin writer");
    waiter.join().expect("output reader")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Panics with the command's output unless it exited 0; returns its stdout.
pub fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "konsumer failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}
