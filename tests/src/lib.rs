//! Harness for end-to-end tests: starts the real `tierd` binary on free loopback
//! ports with its own data directory, and runs real clients against it.

pub mod backends;
pub mod deploy;
pub mod raw_nbd;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: `$TIERD_BIN`, else the workspace's debug build.
pub fn tierd_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TIERD_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(root.join("target"));
    let p = target.join("debug").join("tierd");
    assert!(
        p.exists(),
        "{} does not exist: run `cargo build -p tiering --bin tierd` first, or set TIERD_BIN",
        p.display()
    );
    p
}

/// A loopback port nobody listens on right now, chosen below the kernel's
/// ephemeral range (32768 and up): a daemon restarted on it cannot find it
/// taken by some other test's client connection in the meantime.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
        ^ ((std::process::id() as u64) << 16);
    for _ in 0..10_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let x = (seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 7) % 12_000;
        let port = 20_000 + x as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000");
}

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e} (is it installed? see scripts/deps.sh)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Deterministic pseudo-random bytes (xorshift64*), so images never compress or
/// hide as holes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// One running daemon and its data directory.
pub struct Daemon {
    child: Option<Child>,
    /// Extra environment for the next start (failpoints).
    pub env: Vec<(String, String)>,
    /// RLIMIT_NOFILE (soft, hard) for the next start; inherited when None.
    pub nofile: Option<(u64, u64)>,
    pub dir: tempfile::TempDir,
    pub nbd_port: u16,
    pub http_port: u16,
    pub config: PathBuf,
}

impl Daemon {
    pub fn start() -> Daemon {
        Self::start_with("")
    }

    /// Starts with `extra` TOML appended after the `[server]` table.
    pub fn start_with(extra: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let nbd_port = free_port();
        let http_port = free_port();
        let config = dir.path().join("tierd.toml");
        let toml = format!(
            "[server]\ndata_dir = \"{}\"\nnbd_listen = \"127.0.0.1:{nbd_port}\"\nhttp_listen = \"127.0.0.1:{http_port}\"\nnbd_socket = \"{}\"\n{extra}\n",
            dir.path().join("data").display(),
            dir.path().join("nbd.sock").display()
        );
        std::fs::write(&config, toml).expect("write config");
        let mut d = Daemon {
            child: None,
            env: Vec::new(),
            nofile: None,
            dir,
            nbd_port,
            http_port,
            config,
        };
        d.spawn();
        d
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("tierd.log")
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open log");
        let mut cmd = Command::new(tierd_bin());
        cmd.args(["serve", "--config"])
            .arg(&self.config)
            .env("TIERD_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log);
        if let Some((soft, hard)) = self.nofile {
            use std::os::unix::process::CommandExt;
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: setrlimit is async-signal-safe; it only reads `lim`.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("start tierd");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/readyz", self.api());
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("tierd exited during start-up with {status}\n{}", self.log());
            }
            if let Ok(r) = reqwest::blocking::get(&url) {
                if r.status().is_success() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tierd not ready after 30 s\n{}", self.log());
    }

    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn uri(&self, volume: &str) -> String {
        format!("nbd://127.0.0.1:{}/{volume}", self.nbd_port)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("nbd.sock")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs the tierd CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(tierd_bin())
            .args(args)
            .env("TIERD_ENDPOINT", self.api())
            .output()
            .expect("run tierd CLI")
    }

    /// Runs the tierd CLI and returns its stdout, panicking on failure.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "tierd {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Writes `data` to the start of `volume` with qemu-img (through a file in
    /// the daemon's directory).
    pub fn write_image(&self, volume: &str, data: &[u8]) {
        let src = self.dir.path().join(format!("{volume}.src.raw"));
        std::fs::write(&src, data).expect("write source image");
        run(
            "qemu-img",
            &[
                "convert",
                "-n",
                "-f",
                "raw",
                "-O",
                "raw",
                src.to_str().unwrap_or_default(),
                &self.uri(volume),
            ],
        );
    }

    /// Reads the whole of `volume` with qemu-img.
    pub fn read_image(&self, volume: &str) -> Vec<u8> {
        let out = self.dir.path().join(format!("{volume}.back.raw"));
        let _ = std::fs::remove_file(&out);
        run(
            "qemu-img",
            &[
                "convert",
                "-f",
                "raw",
                "-O",
                "raw",
                &self.uri(volume),
                out.to_str().unwrap_or_default(),
            ],
        );
        let back = std::fs::read(&out).expect("read image back");
        let _ = std::fs::remove_file(&out);
        back
    }

    /// Writes `data` to a raw file in the daemon's directory; returns its path.
    pub fn raw_file(&self, name: &str, data: &[u8]) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, data).expect("write raw file");
        p.to_string_lossy().to_string()
    }

    /// `qemu-img compare` of an export against a raw file: identical, or a
    /// panic naming `what`.
    pub fn assert_same(&self, export: &str, file: &str, what: &str) {
        let out = Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "raw", &self.uri(export), file])
            .output()
            .expect("run qemu-img compare");
        assert!(
            out.status.success(),
            "{what}: {export} differs from {file}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// One qemu-io command on an export.
    pub fn qemu_io(&self, export: &str, cmd: &str) -> Output {
        Command::new("qemu-io")
            .args(["-f", "raw", "-c", cmd, &self.uri(export)])
            .output()
            .expect("run qemu-io")
    }

    /// Runs the CLI, which must fail with exit code `code` and say `needle`.
    pub fn cli_fails(&self, args: &[&str], code: i32, needle: &str) {
        let out = self.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "tierd {args:?}: {err}");
        assert!(err.contains(needle), "tierd {args:?}: {err}");
    }

    pub fn create_volume(&self, name: &str, size: &str, extent_size: Option<&str>) {
        self.create_volume_in(name, size, extent_size, "default");
    }

    /// Creates a volume in storage class `class` through the CLI.
    pub fn create_volume_in(&self, name: &str, size: &str, extent_size: Option<&str>, class: &str) {
        let mut args = vec!["volume", "create", name, "--size", size, "--class", class];
        if let Some(e) = extent_size {
            args.extend(["--extent-size", e]);
        }
        self.cli_ok(&args);
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let r = reqwest::blocking::get(format!("{}{}", self.api(), path)).expect("GET");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().expect("JSON body")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("daemon running")
    }

    /// SIGKILL: no flush, no clean-up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (at most 30 s) for a clean exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().expect("wait") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("tierd did not exit within 30 s of SIGTERM\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the daemon again on the same configuration and data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the daemon first");
        self.spawn();
    }

    /// Restarts the daemon with failpoint `spec` (`NAME` or `NAME:NTH`)
    /// armed, runs `op`, which must make it abort there within `secs`, and
    /// restarts it with no failpoint armed.
    pub fn crash_at(&mut self, spec: &str, secs: u64, op: impl FnOnce(&Daemon)) {
        assert!(self.stop().success());
        self.env = vec![("TIERD_FAILPOINTS".into(), spec.to_string())];
        self.restart();
        op(self);
        assert!(
            self.wait_exit(secs),
            "failpoint {spec} was never reached\n{}",
            self.log()
        );
        let name = spec.split(':').next().unwrap_or(spec);
        assert!(
            self.log().contains(&format!("failpoint {name}: aborting")),
            "{}",
            self.log()
        );
        self.env.clear();
        self.restart();
    }

    /// Waits (at most `secs`) for the daemon to exit by itself; true if it did.
    pub fn wait_exit(&mut self, secs: u64) -> bool {
        self.child.is_none() || self.wait_exit_status(secs).is_some()
    }

    /// Waits (at most `secs`) for the running daemon to exit; its status if it did.
    pub fn wait_exit_status(&mut self, secs: u64) -> Option<ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let c = self.child.as_mut()?;
            if let Some(status) = c.try_wait().ok().flatten() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most 30 s) until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "log never showed {needle:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal to the running daemon.
    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    /// Replaces everything after the `[server]` table of the configuration.
    pub fn rewrite_config(&self, extra: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        let mut keep = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if i > 0 && line.starts_with('[') {
                break;
            }
            keep.push(line);
        }
        std::fs::write(&self.config, format!("{}\n{extra}\n", keep.join("\n")))
            .expect("write config");
    }

    /// POSTs to the API and returns (status, JSON body).
    pub fn post(&self, path: &str) -> (u16, serde_json::Value) {
        let r = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .expect("client")
            .post(format!("{}{}", self.api(), path))
            .send()
            .expect("POST");
        (
            r.status().as_u16(),
            r.json().unwrap_or(serde_json::Value::Null),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let mut s = String::new();
            if let Ok(mut f) = std::fs::File::open(self.log_path()) {
                let _ = f.read_to_string(&mut s);
            }
            let tail: Vec<&str> = s.lines().rev().take(40).collect();
            eprintln!("--- last tierd log lines ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}
