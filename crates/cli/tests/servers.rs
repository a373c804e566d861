//! The worker's servers stay bounded: idle and half-sent connections are closed after the
//! header timeout and never block a valid request, an abort names its job, tokens are long
//! enough and compared without leaking.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_dist::frame::Hello;
use weft_dist::launch;
use weft_dist::transport::{Counters, Link};

mod support;
use support::{stderr, BIN};

const TOKEN: &str = "servers-test-token-0123";

/// A worker whose clients get `header_timeout_s` to send a request head or a hello.
struct Worker {
    child: Child,
    control: String,
    data: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn worker(header_timeout_s: &str) -> Worker {
    let (child, control, data) =
        support::spawn_worker(TOKEN, &["--header-timeout-s", header_timeout_s]);
    Worker {
        child,
        control: control.trim_start_matches("http://").to_string(),
        data,
    }
}

/// One HTTP/1.1 request with the token; the status code and body.
fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Whether the server closed the connection (a read returns end of file or an error).
fn closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut b = [0u8; 512];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            // A timeout's answer (408) may come first.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn a_flood_of_idle_connections_never_blocks_a_valid_request() {
    let w = worker("1");
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut c = TcpStream::connect(&w.control).unwrap();
        let mut d = TcpStream::connect(&w.data).unwrap();
        if i % 3 == 0 {
            // Half a request head, half a frame header.
            c.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            d.write_all(&[0x57, 0x45]).unwrap();
        }
        idle.push(c);
        idle.push(d);
    }
    let t = Instant::now();
    let (status, body) = http(&w.control, "GET", "/v1/health");
    assert_eq!(status, 200, "{body}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "health took {:?}",
        t.elapsed()
    );
    // A peer's handshake on the data plane goes through too.
    let t = Instant::now();
    let hello = Hello {
        token: TOKEN.into(),
        rank: 0,
        world: 1,
        role: "test".into(),
    };
    let counters = Arc::new(Counters::default());
    Link::connect(&w.data, "worker", &hello, counters, Duration::from_secs(5)).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "hello took {:?}",
        t.elapsed()
    );
    // Past the header timeout, every idle and half-sent connection is gone.
    std::thread::sleep(Duration::from_millis(2500));
    let open = idle.iter_mut().map(closed).filter(|c| !c).count();
    assert_eq!(
        open,
        0,
        "{open} of {} idle connections still open",
        idle.len()
    );
}

#[test]
fn abort_names_its_job_and_leaves_another_drivers_job_alone() {
    let w = worker("5");
    let (status, body) = http(&w.control, "POST", "/v1/abort");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("name the job"), "{body}");
    let (status, body) = http(&w.control, "POST", "/v1/abort?job=other");
    assert_eq!(status, 404, "no job yet: {body}");

    // A driver trains on the worker; another driver's abort (of its own job) leaves it be.
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("s.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: t\ndata: {{source: {{synthetic: {{rows: 20000, features: 8, classes: 2}}}}}}\nmodel: [{{dense: {{units: 32, activation: relu}}}}, {{dense: {{units: 2, activation: softmax}}}}]\ntrain: {{loss: cross_entropy, epochs: 6, batch_size: 16}}\nparallelism: {{data: {{workers: 1}}}}\nexecutor: {{cluster: {{hosts: [\"{}\"]}}}}\n",
            w.control
        ),
    )
    .unwrap();
    let driver = Command::new(BIN)
        .args(["run", spec.to_str().unwrap(), "--runs-dir"])
        .arg(dir.path().join("runs"))
        .env("WEFT_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !http(&w.control, "GET", "/v1/health")
        .1
        .contains("\"busy\":true")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the job never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = http(&w.control, "POST", "/v1/abort?job=not-this-one");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("nothing stopped"), "{body}");
    let out = driver.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the first driver's job ran to its end: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn short_tokens_are_refused_and_a_readable_token_file_is_warned_about() {
    let o = Command::new(BIN)
        .args(["worker", "--listen", "127.0.0.1:0"])
        .env("WEFT_TOKEN", "short")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("the token is 5 bytes; use at least 16"),
        "{}",
        stderr(&o)
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, TOKEN).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let spec = dir.path().join("s.yaml");
    std::fs::write(
        &spec,
        "name: t\ndata: {source: builtin:iris, label: species}\nmodel: [{dense: {units: 3, activation: softmax}}]\ntrain: {loss: cross_entropy, epochs: 1}\nparallelism: {data: {workers: 2}}\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["run", spec.to_str().unwrap(), "--runs-dir"])
        .arg(dir.path().join("runs"))
        .env("WEFT_TOKEN_FILE", &file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("can be read by other users (mode 644); `chmod 600"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_collective_too_large_for_memory_fails_its_job_and_the_workers_go_on() {
    use weft_dist::bench::CollectiveJob;
    use weft_dist::driver;
    let mut workers = launch::spawn_local(2, TOKEN, Duration::from_secs(10)).unwrap();
    let huge = CollectiveJob {
        sizes: vec![1 << 50],
        reps: 1,
        compression: Default::default(),
    };
    let e = driver::collective(&mut workers, TOKEN, &huge, Duration::from_secs(10))
        .expect_err("refused");
    assert!(e.to_string().contains("needs"), "{e}");
    assert!(
        e.to_string().contains("of memory, but this worker has"),
        "{e}"
    );
    // The same workers still serve a job that fits.
    let small = CollectiveJob {
        sizes: vec![1000],
        reps: 1,
        compression: Default::default(),
    };
    let r = driver::collective(&mut workers, TOKEN, &small, Duration::from_secs(10)).unwrap();
    assert_eq!(r[0][0].max_error, 0.0);
}

#[test]
fn closed_standard_output_ends_quietly() {
    // A worker whose driver died before reading its ready line.
    let mut child = Command::new(BIN)
        .args(["worker", "--listen", "127.0.0.1:0", "--exit-with-parent"])
        .env("WEFT_TOKEN", TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("the process that started it is gone"), "{err}");
    // `weft plan … | head`: the pipe closes early, long before the plan's megabytes.
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("deep.yaml");
    let layers = "  - dense: {units: 2}\n".repeat(5000);
    std::fs::write(
        &spec,
        format!("name: deep\ndata: {{source: builtin:iris}}\nmodel:\n{layers}  - dense: {{units: 3, activation: softmax}}\n"),
    )
    .unwrap();
    let mut plan = Command::new(BIN)
        .arg("plan")
        .arg(&spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    plan.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = plan.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}
