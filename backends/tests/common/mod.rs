//! Shared by the emulator tests: finding the emulators, and a loopback HTTP
//! proxy that answers the next requests with injected faults, damages the
//! bodies of the next uploads on their way, or turns away requests not signed
//! with a given S3 key (see `sigv4`), before passing traffic through.

#![allow(dead_code)]

pub mod sigv4;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use backends::{
    conformance, AzureConfig, BackendMetrics, ObjectStore, PutOptions, RequestLimits, S3Config,
    Secret,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The value of an emulator variable. Without it the test is skipped, unless
/// `TIERD_REQUIRE_EMULATORS=1` (set by the README test command), where a
/// missing emulator is a failure.
pub fn emulator_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("TIERD_REQUIRE_EMULATORS").as_deref() == Ok("1") {
                panic!("{var} is not set but TIERD_REQUIRE_EMULATORS=1: run under localstack/with-emulators.sh");
            }
            eprintln!("skipping: {var} is not set (run under localstack/with-emulators.sh)");
            None
        }
    }
}

/// Runs `localstack/<script> <action>` for the current emulator run.
pub fn emulator_ctl(script: &str, action: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("localstack");
    let out = std::process::Command::new("bash")
        .arg(root.join(script))
        .arg(action)
        .output()
        .expect("run emulator control script");
    assert!(
        out.status.success(),
        "{script} {action} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// One injected answer: status line and a body; `headers` are added as-is.
#[derive(Clone, Debug)]
pub struct Fault {
    pub status: u16,
    pub reason: &'static str,
    pub headers: &'static str,
    pub body: &'static str,
}

pub fn s3_slowdown() -> Fault {
    Fault {
        status: 503,
        reason: "Slow Down",
        headers: "Content-Type: application/xml\r\n",
        body: "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
    }
}

pub fn s3_internal() -> Fault {
    Fault {
        status: 500,
        reason: "Internal Server Error",
        headers: "Content-Type: application/xml\r\n",
        body: "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>",
    }
}

pub fn azure_busy() -> Fault {
    Fault {
        status: 503,
        reason: "Server Busy",
        headers: "Content-Type: application/xml\r\nx-ms-error-code: ServerBusy\r\n",
        body: "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ServerBusy</Code><Message>The server is busy.</Message></Error>",
    }
}

pub fn azure_internal() -> Fault {
    Fault {
        status: 500,
        reason: "Internal Server Error",
        headers: "Content-Type: application/xml\r\nx-ms-error-code: InternalError\r\n",
        body: "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>InternalError</Code><Message>Injected.</Message></Error>",
    }
}

/// A proxy on 127.0.0.1 that serves queued faults first, then forwards.
pub struct FaultProxy {
    pub port: u16,
    faults: Arc<Mutex<Vec<Fault>>>,
    pub injected: Arc<AtomicUsize>,
    pub forwarded: Arc<AtomicUsize>,
    /// Uploads still to damage, and how many were.
    to_corrupt: Arc<AtomicUsize>,
    pub corrupted: Arc<AtomicUsize>,
    /// The S3 key (id, secret) requests must be signed with, and how many
    /// were turned away.
    sigv4_key: Arc<Mutex<Option<(String, String)>>>,
    pub unsigned: Arc<AtomicUsize>,
}

/// Bodies at least this long count as uploads worth damaging.
const CORRUPT_MIN_BODY: usize = 4096;

impl FaultProxy {
    pub async fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let faults = Arc::new(Mutex::new(Vec::<Fault>::new()));
        let injected = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let to_corrupt = Arc::new(AtomicUsize::new(0));
        let corrupted = Arc::new(AtomicUsize::new(0));
        let sigv4_key = Arc::new(Mutex::new(None));
        let unsigned = Arc::new(AtomicUsize::new(0));
        let counters = Counters {
            injected: injected.clone(),
            forwarded: forwarded.clone(),
            to_corrupt: to_corrupt.clone(),
            corrupted: corrupted.clone(),
            sigv4_key: sigv4_key.clone(),
            unsigned: unsigned.clone(),
        };
        let f = faults.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (f, c) = (f.clone(), counters.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, upstream_port, f, c).await;
                });
            }
        });
        FaultProxy {
            port,
            faults,
            injected,
            forwarded,
            to_corrupt,
            corrupted,
            sigv4_key,
            unsigned,
        }
    }

    /// From now on, answers requests not signed (SigV4) with this S3 key as
    /// S3 would, with a 403, instead of forwarding them.
    pub fn require_s3_key(&self, access_key: &str, secret: &str) {
        *self.sigv4_key.lock().expect("sigv4 key") = Some((access_key.into(), secret.into()));
    }

    /// Flips one bit in the body of each of the next `n` uploads (requests
    /// with a body of at least 4 KiB) on its way to the service.
    pub fn corrupt_next_uploads(&self, n: usize) {
        self.to_corrupt.fetch_add(n, Ordering::SeqCst);
    }

    /// A proxy in front of an emulator endpoint (`http://127.0.0.1:PORT` with
    /// an optional path, kept), and the same endpoint through the proxy.
    pub async fn in_front_of(endpoint: &str) -> (FaultProxy, String) {
        let rest = endpoint
            .strip_prefix("http://")
            .expect("an http:// endpoint");
        let (host_port, path) = rest.split_once('/').unwrap_or((rest, ""));
        let upstream: u16 = host_port
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in endpoint");
        let proxy = FaultProxy::start(upstream).await;
        let via = if path.is_empty() {
            format!("http://127.0.0.1:{}", proxy.port)
        } else {
            format!("http://127.0.0.1:{}/{path}", proxy.port)
        };
        (proxy, via)
    }

    /// Queues faults for the next requests, in order.
    pub fn inject(&self, faults: Vec<Fault>) {
        let mut q = self.faults.lock().expect("fault queue");
        q.extend(faults);
    }
}

async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(i + 4));
        }
        let mut tmp = [0u8; 8192];
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Reads a message body framed by Content-Length or chunked encoding; `buf`
/// already holds `have` bytes after the head.
async fn read_body(
    s: &mut TcpStream,
    head: &str,
    buf: &mut Vec<u8>,
    start: usize,
    no_body: bool,
) -> std::io::Result<usize> {
    if no_body {
        return Ok(start);
    }
    if let Some(len) = header(head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        while buf.len() < start + len {
            let mut tmp = vec![0u8; 65536];
            let n = s.read(&mut tmp).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        return Ok(start + len);
    }
    if header(head, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            if buf[start..].windows(5).any(|w| w == b"0\r\n\r\n") {
                let end = start
                    + buf[start..]
                        .windows(5)
                        .position(|w| w == b"0\r\n\r\n")
                        .unwrap_or(0)
                    + 5;
                return Ok(end);
            }
            let mut tmp = vec![0u8; 65536];
            let n = s.read(&mut tmp).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&tmp[..n]);
        }
    }
    Ok(start)
}

#[derive(Clone)]
struct Counters {
    injected: Arc<AtomicUsize>,
    forwarded: Arc<AtomicUsize>,
    to_corrupt: Arc<AtomicUsize>,
    corrupted: Arc<AtomicUsize>,
    sigv4_key: Arc<Mutex<Option<(String, String)>>>,
    unsigned: Arc<AtomicUsize>,
}

/// Where in a body to flip a bit: inside the payload, never in framing. An
/// aws-chunked body (S3 uploads with a trailing checksum) starts with a
/// `SIZE[;ext]\r\n` line, so the first chunk's data follows it.
fn damage_offset(head: &str, body: &[u8]) -> usize {
    let aws_chunked = header(head, "content-encoding").is_some_and(|v| v.contains("aws-chunked"));
    if aws_chunked {
        let data = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(0, |i| i + 2);
        data + 100
    } else {
        body.len() / 2
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: u16,
    faults: Arc<Mutex<Vec<Fault>>>,
    c: Counters,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let Some(head_end) = read_head(&mut client, &mut buf).await? else {
            return Ok(());
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let end = read_body(&mut client, &head, &mut buf, head_end, false).await?;
        let mut request: Vec<u8> = buf.drain(..end).collect();
        let fault = {
            let mut q = faults.lock().expect("fault queue");
            (!q.is_empty()).then(|| q.remove(0))
        };
        if let Some(f) = fault {
            c.injected.fetch_add(1, Ordering::SeqCst);
            let resp = format!(
                "HTTP/1.1 {} {}\r\n{}Content-Length: {}\r\n\r\n{}",
                f.status,
                f.reason,
                f.headers,
                f.body.len(),
                f.body
            );
            client.write_all(resp.as_bytes()).await?;
            continue;
        }
        let key = c.sigv4_key.lock().expect("sigv4 key").clone();
        if let Some(r) = key.and_then(|(id, secret)| sigv4::check(&head, &id, &secret)) {
            c.unsigned.fetch_add(1, Ordering::SeqCst);
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>{}</Message></Error>",
                r.code, r.message
            );
            let resp = if head.starts_with("HEAD ") {
                "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_string()
            } else {
                format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            };
            client.write_all(resp.as_bytes()).await?;
            continue;
        }
        let body_len = end - head_end;
        if body_len >= CORRUPT_MIN_BODY
            && c.to_corrupt
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            let at = head_end + damage_offset(&head, &request[head_end..]);
            request[at] ^= 0x01;
            c.corrupted.fetch_add(1, Ordering::SeqCst);
        }
        c.forwarded.fetch_add(1, Ordering::SeqCst);
        let mut up = TcpStream::connect(("127.0.0.1", upstream)).await?;
        up.write_all(&request).await?;
        let mut rbuf = Vec::new();
        let Some(rhead_end) = read_head(&mut up, &mut rbuf).await? else {
            return Ok(());
        };
        let rhead = String::from_utf8_lossy(&rbuf[..rhead_end]).to_string();
        let status: u16 = rhead
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let no_body = head.starts_with("HEAD ") || status == 204 || status == 304;
        let rend = read_body(&mut up, &rhead, &mut rbuf, rhead_end, no_body).await?;
        client.write_all(&rbuf[..rend]).await?;
    }
}

/// Puts one object of each `(key, size)` through `proxy` with its body
/// damaged on the way, and checks that every damage was caught and repaired
/// by exactly one retry: the stored bytes are the ones we hold.
pub async fn damaged_uploads_are_repaired(
    s: &dyn ObjectStore,
    proxy: &FaultProxy,
    metrics: &BackendMetrics,
    backend: &str,
    uploads: [(&str, usize); 2],
) {
    for (n, (key, size)) in uploads.into_iter().enumerate() {
        proxy.corrupt_next_uploads(1);
        let data = conformance::pattern(size, 5);
        s.put(key, data.clone(), &PutOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{key}: damaged upload not repaired: {e}"));
        assert_eq!(proxy.corrupted.load(Ordering::SeqCst), n + 1, "{key}");
        assert!(
            s.get(key).await.unwrap() == data,
            "{key}: stored bytes differ"
        );
        assert_eq!(
            metrics.retries.with_label_values(&[backend, "put"]).get(),
            n as u64 + 1,
            "{key}: one retry per damaged upload"
        );
    }
}

/// An S3 backend on LocalStack with fast retries.
pub fn s3_config(endpoint: &str, bucket: &str) -> S3Config {
    S3Config {
        bucket: bucket.into(),
        prefix: "tierd/".into(),
        endpoint: Some(endpoint.into()),
        path_style: true,
        access_key_id: Some("test".into()),
        secret_access_key: Some(Secret::new("test")),
        create_bucket: true,
        limits: RequestLimits {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            attempt_timeout: Duration::from_secs(20),
            deadline: Duration::from_secs(30),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// An Azure backend on Azurite with fast retries.
pub fn azure_config(endpoint: &str, container: &str) -> AzureConfig {
    AzureConfig {
        account: std::env::var("TIERD_AZURITE_ACCOUNT")
            .unwrap_or_else(|_| "devstoreaccount1".into()),
        access_key: std::env::var("TIERD_AZURITE_KEY").ok().map(Secret::new),
        container: container.into(),
        prefix: "tierd/".into(),
        endpoint: Some(endpoint.into()),
        create_container: true,
        limits: RequestLimits {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            attempt_timeout: Duration::from_secs(20),
            deadline: Duration::from_secs(30),
            ..Default::default()
        },
        ..Default::default()
    }
}
