//! The deployment artifacts, checked against the repository and the real binary:
//!
//! - `Dockerfile`: the runtime stage copies the path the build stage's cargo
//!   command produces, that command builds what `scripts/run.sh` builds, and
//!   the runtime stage installs the Debian package of every shared library
//!   `ldd tierd` lists;
//! - `deploy/kubernetes/tierd-sidecar.yaml`: the ConfigMap's `tierd.toml` passes
//!   `tierd check` with the StorageClasses the pod would see, and the
//!   StatefulSet mounts, exposes, probes and feeds it what it names;
//! - `deploy/grafana/tierd-dashboard.json`: every metric (and label) its
//!   queries use is one a running tierd exposes, used as its type allows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_yaml::Value as Yaml;
use tierd_e2e::backends::{spec, Kind};
use tierd_e2e::{free_port, random_bytes, run, tierd_bin, Daemon};

const MIB: usize = 1 << 20;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A shell script without its comment lines.
fn script(rel: &str) -> String {
    read(rel)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

// ---------------------------------------------------------------- Dockerfile

#[derive(Debug, Clone)]
struct Instr {
    keyword: String,
    args: String,
    /// WORKDIR in effect for this instruction.
    workdir: String,
}

#[derive(Debug)]
struct Stage {
    base: String,
    name: Option<String>,
    instrs: Vec<Instr>,
}

impl Stage {
    fn all(&self, keyword: &str) -> Vec<&Instr> {
        self.instrs
            .iter()
            .filter(|i| i.keyword == keyword)
            .collect()
    }

    fn last(&self, keyword: &str) -> &Instr {
        self.all(keyword)
            .pop()
            .unwrap_or_else(|| panic!("stage FROM {} has no {keyword}", self.base))
    }
}

/// Logical instructions per stage: comments dropped (also inside
/// continuations, as Docker does), `\` continuations joined.
fn parse_dockerfile(text: &str) -> Vec<Stage> {
    let mut logical = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(t);
            logical.push(std::mem::take(&mut cur));
        }
    }
    assert!(
        cur.trim().is_empty(),
        "Dockerfile ends inside a continuation"
    );
    let mut stages: Vec<Stage> = Vec::new();
    for l in logical {
        let (kw, args) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
        let kw = kw.to_ascii_uppercase();
        let args = args.trim().to_string();
        if kw == "FROM" {
            let words: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match words.as_slice() {
                [_, as_, n] if as_.eq_ignore_ascii_case("as") => Some(n.to_string()),
                [_] => None,
                _ => panic!("cannot read FROM {args}"),
            };
            stages.push(Stage {
                base: words[0].to_string(),
                name,
                instrs: Vec::new(),
            });
            continue;
        }
        let stage = stages
            .last_mut()
            .unwrap_or_else(|| panic!("{kw} before any FROM"));
        let prev = stage
            .instrs
            .last()
            .map(|i| i.workdir.clone())
            .unwrap_or_else(|| "/".into());
        let workdir = if kw == "WORKDIR" {
            join(&prev, &args)
        } else {
            prev
        };
        stage.instrs.push(Instr {
            keyword: kw,
            args,
            workdir,
        });
    }
    stages
}

/// `dir` joined with `p` unless `p` is absolute, `.` segments dropped.
fn join(dir: &str, p: &str) -> String {
    let full = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{}/{p}", dir.trim_end_matches('/'))
    };
    let parts: Vec<&str> = full
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// An instruction's arguments in exec form (JSON array) or split on spaces.
fn words(args: &str) -> Vec<String> {
    if args.trim_start().starts_with('[') {
        serde_json::from_str(args).unwrap_or_else(|e| panic!("bad exec form {args}: {e}"))
    } else {
        args.split_whitespace().map(str::to_string).collect()
    }
}

/// The words of the first `prefix` command in `shell` (up to `&&`, `;`, `|`).
fn command_words(shell: &str, prefix: &str) -> Option<Vec<String>> {
    let at = shell.find(prefix)?;
    let rest = &shell[at..];
    let end = ["&&", ";", "||", "|", "\n"]
        .iter()
        .filter_map(|s| rest.find(s))
        .min()
        .unwrap_or(rest.len());
    Some(rest[..end].split_whitespace().map(str::to_string).collect())
}

/// What a `cargo build` command line builds, and where the binary lands.
#[derive(Debug, PartialEq, Eq)]
struct CargoBuild {
    /// Directory under target/: `debug` for the dev profile, else the profile name.
    profile_dir: String,
    package: Option<String>,
    bin: Option<String>,
    target: Option<String>,
    /// Flags that do not change what is built or where (--locked, ...).
    other: BTreeSet<String>,
}

fn parse_cargo_build(words: &[String]) -> CargoBuild {
    assert_eq!(
        words.get(..2),
        Some(&["cargo".to_string(), "build".to_string()][..]),
        "{words:?}"
    );
    let mut b = CargoBuild {
        profile_dir: "debug".into(),
        package: None,
        bin: None,
        target: None,
        other: BTreeSet::new(),
    };
    let mut it = words[2..].iter().flat_map(|w| match w.split_once('=') {
        Some((k, v)) if k.starts_with("--") => vec![k.to_string(), v.to_string()],
        _ => vec![w.clone()],
    });
    while let Some(w) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{w} without a value"));
        match w.as_str() {
            "--release" | "-r" => b.profile_dir = "release".into(),
            "--profile" => {
                b.profile_dir = match value().as_str() {
                    "dev" | "test" => "debug".into(),
                    "bench" => "release".into(),
                    p => p.into(),
                }
            }
            "-p" | "--package" => b.package = Some(value()),
            "--bin" => b.bin = Some(value()),
            "--target" => b.target = Some(value()),
            "--locked" | "--frozen" | "--offline" => {
                b.other.insert(w);
            }
            other => panic!(
                "cargo build flag {other} is not understood by this test: teach parse_cargo_build where it puts the binary"
            ),
        }
    }
    b
}

impl CargoBuild {
    /// Where the binary lands, relative to the target directory.
    fn output(&self) -> String {
        let bin = self.bin.as_deref().expect("cargo build names --bin");
        match &self.target {
            Some(t) => format!("{t}/{}/{bin}", self.profile_dir),
            None => format!("{}/{bin}", self.profile_dir),
        }
    }

    /// Everything that decides what is built and where.
    fn what(&self) -> (&str, Option<&str>, Option<&str>, Option<&str>) {
        (
            &self.profile_dir,
            self.package.as_deref(),
            self.bin.as_deref(),
            self.target.as_deref(),
        )
    }
}

/// The packages of the first `apt-get install` in `stage`.
fn apt_packages(stage: &Stage) -> (BTreeSet<String>, Vec<String>) {
    for i in stage.all("RUN") {
        if let Some(w) = command_words(&i.args, "apt-get install") {
            let flags = w[2..]
                .iter()
                .filter(|x| x.starts_with('-'))
                .cloned()
                .collect();
            let pkgs = w[2..]
                .iter()
                .filter(|x| !x.starts_with('-'))
                .cloned()
                .collect();
            return (pkgs, flags);
        }
    }
    panic!("stage FROM {} has no apt-get install", stage.base);
}

/// The Debian package owning `path` (usrmerge: /lib is /usr/lib, and dpkg
/// knows each file under one of the two names; symlinks by their target).
fn debian_package(path: &Path) -> String {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut candidates = vec![path.to_path_buf(), canonical];
    for p in candidates.clone() {
        if let Ok(rest) = p.strip_prefix("/usr") {
            candidates.push(Path::new("/").join(rest));
        } else {
            candidates.push(Path::new("/usr").join(p.strip_prefix("/").unwrap_or(&p)));
        }
    }
    for c in &candidates {
        let out = Command::new("dpkg")
            .arg("-S")
            .arg(c)
            .output()
            .expect("run dpkg -S (a Debian system)");
        if !out.status.success() {
            continue;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| !l.starts_with("diversion"))
            .unwrap_or_default();
        let (pkgs, _) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("dpkg -S {}: {text}", c.display()));
        let pkg = pkgs.split(", ").next().unwrap_or_default();
        return pkg.split(':').next().unwrap_or_default().to_string();
    }
    panic!(
        "no Debian package owns {} (tried {candidates:?})",
        path.display()
    );
}

/// The libraries `ldd` resolves for `bin`, by path.
fn ldd_paths(bin: &Path) -> Vec<PathBuf> {
    let out = run("ldd", &[bin.to_str().expect("utf-8 path")]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!text.contains("not found"), "unresolved libraries:\n{text}");
    let mut paths = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)", or the
        // loader "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
        let file = match l.split_once("=>") {
            Some((_, r)) => r.split_whitespace().next(),
            None => l.split_whitespace().next().filter(|w| w.starts_with('/')),
        };
        if let Some(f) = file.filter(|f| f.starts_with('/')) {
            paths.push(PathBuf::from(f));
        }
    }
    assert!(paths.len() >= 3, "ldd listed too little:\n{text}");
    paths
}

/// `.dockerignore`-style match of one pattern against a relative path (`*` and
/// `**` globs; a directory pattern covers what is under it).
fn ignore_matches(pattern: &str, path: &str) -> bool {
    fn seg_match(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => seg_match(&p[1..], s) || (!s.is_empty() && seg_match(p, &s[1..])),
            (Some(a), Some(b)) if a == b => seg_match(&p[1..], &s[1..]),
            _ => false,
        }
    }
    fn parts_match(p: &[&str], s: &[&str]) -> bool {
        match (p.first(), s.first()) {
            // A pattern that matched a directory covers everything under it.
            (None, _) => true,
            (Some(&"**"), _) => {
                parts_match(&p[1..], s) || (!s.is_empty() && parts_match(p, &s[1..]))
            }
            (Some(a), Some(b)) => {
                seg_match(a.as_bytes(), b.as_bytes()) && parts_match(&p[1..], &s[1..])
            }
            (Some(_), None) => false,
        }
    }
    let p: Vec<&str> = pattern
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let s: Vec<&str> = path.split('/').collect();
    !p.is_empty() && parts_match(&p, &s)
}

struct Dockerfile {
    stages: Vec<Stage>,
}

impl Dockerfile {
    fn load() -> Dockerfile {
        Dockerfile {
            stages: parse_dockerfile(&read("Dockerfile")),
        }
    }

    fn runtime(&self) -> &Stage {
        self.stages.last().expect("a stage")
    }

    fn user_uid(&self) -> String {
        let user = &self.runtime().last("USER").args;
        user.split(':').next().unwrap_or_default().to_string()
    }
}

#[test]
fn dockerfile_builds_what_run_sh_builds_and_ships_every_library() {
    let df = Dockerfile::load();
    assert!(df.stages.len() >= 2, "a multi-stage build");

    // The build stage: Debian 12 with the system RocksDB, as scripts/deps.sh.
    let (build_idx, build_run) = df
        .stages
        .iter()
        .enumerate()
        .find_map(|(i, s)| {
            s.all("RUN")
                .into_iter()
                .find(|r| r.args.contains("cargo build"))
                .map(|r| (i, r.clone()))
        })
        .expect("a stage runs cargo build");
    let build = &df.stages[build_idx];
    assert!(
        build.base.starts_with("rust:") && build.base.ends_with("bookworm"),
        "build stage FROM {}: Debian 12 (bookworm), whose librocksdb-dev is 7.8.3",
        build.base
    );
    let (build_pkgs, _) = apt_packages(build);
    let deps_sh = read("scripts/deps.sh");
    for p in [
        "librocksdb-dev",
        "libsnappy-dev",
        "libclang-dev",
        "pkg-config",
    ] {
        assert!(build_pkgs.contains(p), "build stage installs {p}");
        assert!(deps_sh.contains(p), "scripts/deps.sh installs {p} too");
    }
    // The workspace, .cargo/config.toml included (ROCKSDB_LIB_DIR), is the
    // build's working directory, so target/ is under it.
    assert!(
        build.all("COPY").iter().any(|c| {
            let w = words(&c.args);
            w.len() == 2 && w[0] == "." && join(&c.workdir, &w[1]) == c.workdir
        }),
        "the build stage copies the workspace (COPY . .) into its WORKDIR"
    );
    assert!(
        !build
            .all("ENV")
            .iter()
            .any(|e| e.args.contains("CARGO_TARGET_DIR")),
        "CARGO_TARGET_DIR moves the binary: teach this test about it"
    );
    let cargo_words = command_words(&build_run.args, "cargo build").expect("cargo build");
    assert_eq!(
        cargo_words.join(" "),
        "cargo build --release --locked -p tiering --bin tierd"
    );
    let docker_build = parse_cargo_build(&cargo_words);
    let built = format!("{}/target/{}", build_run.workdir, docker_build.output());

    // The runtime stage copies exactly that file to the ENTRYPOINT.
    let rt = df.runtime();
    assert_eq!(rt.base, "debian:bookworm-slim");
    let entrypoint = words(&rt.last("ENTRYPOINT").args);
    let copy = rt
        .all("COPY")
        .into_iter()
        .find(|c| c.args.contains("--from="))
        .expect("the runtime stage copies from the build stage");
    let w = words(&copy.args);
    let from = w[0].trim_start_matches("--from=");
    assert!(
        build.name.as_deref() == Some(from) || from == build_idx.to_string(),
        "COPY --from={from} names the stage that runs cargo build ({:?})",
        build.name
    );
    assert_eq!(w.len(), 3, "COPY --from=STAGE SRC DEST: {w:?}");
    assert_eq!(
        join(&build_run.workdir, &w[1]),
        built,
        "the runtime stage copies what `{}` produces",
        cargo_words.join(" ")
    );
    assert_eq!(join(&copy.workdir, &w[2]), entrypoint[0]);
    assert_eq!(entrypoint, ["/usr/local/bin/tierd"]);
    assert_eq!(
        words(&rt.last("CMD").args),
        ["serve", "--config", "/etc/tierd/tierd.toml"]
    );

    // scripts/run.sh builds the same thing (it may omit --locked) and runs
    // the binary where that build puts it.
    let run_sh = script("scripts/run.sh");
    let run_build =
        parse_cargo_build(&command_words(&run_sh, "cargo build").expect("run.sh runs cargo build"));
    assert_eq!(
        run_build.what(),
        docker_build.what(),
        "scripts/run.sh and the Dockerfile build different things"
    );
    let exec = command_words(&run_sh, "exec ").expect("run.sh execs the binary");
    assert_eq!(exec[1], format!("target/{}", run_build.output()));

    // The same path convention, checked on a build that exists: scripts/test.sh's
    // debug build is the binary these tests run.
    let test_build = parse_cargo_build(
        &command_words(&script("scripts/test.sh"), "cargo build").expect("test.sh builds"),
    );
    assert_eq!(test_build.profile_dir, "debug");
    assert_eq!(
        (test_build.package.as_deref(), test_build.bin.as_deref()),
        (docker_build.package.as_deref(), docker_build.bin.as_deref())
    );
    let debug_bin = repo().join("target").join(test_build.output());
    assert!(debug_bin.exists(), "{} is missing", debug_bin.display());
    if std::env::var_os("TIERD_BIN").is_none() && std::env::var_os("CARGO_TARGET_DIR").is_none() {
        assert_eq!(tierd_bin(), debug_bin);
    }
    // ... and the package named by -p defines that binary.
    let pkg_dir = repo().join(docker_build.package.as_deref().expect("-p"));
    let manifest: toml::Value = read(&format!(
        "{}/Cargo.toml",
        docker_build.package.as_deref().unwrap_or_default()
    ))
    .parse()
    .expect("tiering/Cargo.toml");
    assert_eq!(
        manifest["package"]["name"].as_str(),
        docker_build.package.as_deref()
    );
    let bins = manifest
        .get("bin")
        .and_then(|b| b.as_array())
        .expect("[[bin]] in tiering/Cargo.toml");
    let bin = bins
        .iter()
        .find(|b| b["name"].as_str() == docker_build.bin.as_deref())
        .expect("a [[bin]] named tierd");
    let main = pkg_dir.join(
        bin.get("path")
            .and_then(|p| p.as_str())
            .unwrap_or("src/main.rs"),
    );
    assert!(main.exists(), "{}", main.display());

    // Every shared library the binary loads comes from a package the runtime
    // stage installs (the debug and release builds link the same libraries).
    let (runtime_pkgs, flags) = apt_packages(rt);
    assert!(
        flags.iter().any(|f| f == "--no-install-recommends"),
        "{flags:?}"
    );
    let mut needed = BTreeMap::new();
    for lib in ldd_paths(&tierd_bin()) {
        needed.insert(debian_package(&lib), lib);
    }
    for p in ["librocksdb7.8", "libsnappy1v5", "libc6"] {
        assert!(needed.contains_key(p), "ldd shows no {p}? {needed:?}");
    }
    let missing: Vec<String> = needed
        .iter()
        .filter(|(p, _)| !runtime_pkgs.contains(*p))
        .map(|(p, lib)| format!("{p} ({})", lib.display()))
        .collect();
    assert!(
        missing.is_empty(),
        "the runtime stage does not install {missing:?}"
    );
    assert!(
        runtime_pkgs.contains("ca-certificates"),
        "TLS to S3 and Azure"
    );

    // A non-root numeric user (runAsNonRoot can only verify a number) that
    // the image creates, owning the data directory.
    let uid = df.user_uid();
    assert!(uid.parse::<u32>().is_ok_and(|u| u != 0), "USER {uid}");
    let runs: Vec<&str> = rt.all("RUN").iter().map(|r| r.args.as_str()).collect();
    assert!(
        runs.iter().any(|r| r.contains(&format!("--uid {uid}"))),
        "the image creates uid {uid}"
    );
    assert!(
        runs.iter()
            .any(|r| r.contains("/var/lib/tierd") && r.contains("-o tierd")),
        "/var/lib/tierd is created owned by tierd"
    );

    // Ports and the health check.
    let exposed: BTreeSet<String> = rt
        .all("EXPOSE")
        .iter()
        .flat_map(|e| words(&e.args))
        .map(|p| p.trim_end_matches("/tcp").to_string())
        .collect();
    for p in ["10809", "9464"] {
        assert!(exposed.contains(p), "EXPOSE {p}: {exposed:?}");
    }
    let hc = &rt.last("HEALTHCHECK").args;
    let cmd = hc
        .split_once("CMD")
        .map(|(_, c)| c.trim())
        .expect("HEALTHCHECK CMD");
    let cmd = words(cmd);
    assert!(
        runtime_pkgs.contains(&cmd[0]),
        "the health check runs {}, which the runtime stage must install",
        cmd[0]
    );
    assert!(
        cmd.iter().any(|w| w == "http://127.0.0.1:9464/healthz"),
        "{cmd:?}"
    );

    // The build context has what the build needs and not what it must not copy.
    let ignore = read(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .collect();
    for p in ["target", ".git", "tierd-data"] {
        assert!(
            patterns.iter().any(|pat| ignore_matches(pat, p)),
            ".dockerignore leaves {p} in the context"
        );
    }
    let root: toml::Value = read("Cargo.toml").parse().expect("Cargo.toml");
    let mut needed_files = vec![
        "Cargo.toml".to_string(),
        "Cargo.lock".into(),
        ".cargo/config.toml".into(),
        "tiering/src/ui/index.html".into(),
    ];
    for m in root["workspace"]["members"].as_array().expect("members") {
        let m = m.as_str().expect("member");
        needed_files.push(format!("{m}/Cargo.toml"));
        needed_files.push(format!("{m}/src"));
    }
    for f in &needed_files {
        assert!(repo().join(f).exists(), "{f}");
        let hit: Vec<&&str> = patterns.iter().filter(|p| ignore_matches(p, f)).collect();
        assert!(
            hit.is_empty(),
            ".dockerignore {hit:?} drops {f}, which the build needs"
        );
    }
}

// ---------------------------------------------------------------- Kubernetes

/// The non-empty documents of a YAML stream (split at `---` lines, which
/// only mark documents at the start of a line).
fn yaml_docs(text: &str) -> Vec<Yaml> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut flush = |cur: &mut String| {
        let v: Yaml = serde_yaml::from_str(cur).expect("a valid YAML document");
        if !v.is_null() {
            docs.push(v);
        }
        cur.clear();
    };
    for line in text.lines() {
        if line == "---" || line.starts_with("--- ") {
            flush(&mut cur);
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    flush(&mut cur);
    docs
}

struct Manifests {
    docs: Vec<Yaml>,
}

impl Manifests {
    fn load() -> Manifests {
        let text = read("deploy/kubernetes/tierd-sidecar.yaml");
        Manifests {
            docs: yaml_docs(&text),
        }
    }

    fn of_kind(&self, kind: &str) -> Vec<&Yaml> {
        self.docs
            .iter()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .collect()
    }

    fn named(&self, kind: &str, name: &str) -> &Yaml {
        self.of_kind(kind)
            .into_iter()
            .find(|d| d["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {kind} named {name}"))
    }
}

fn s(v: &Yaml) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v:?}"))
}

fn seq(v: &Yaml) -> &[Yaml] {
    v.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

fn is_loopback(addr: &str) -> bool {
    addr.rsplit_once(':')
        .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']'))
        .and_then(|h| h.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback())
}

/// Sets `[table] key = value` in `config`; `must_exist`: only replace.
fn set(config: &mut toml::Value, table: &str, key: &str, value: &str, must_exist: bool) {
    let old = config
        .get_mut(table)
        .and_then(toml::Value::as_table_mut)
        .unwrap_or_else(|| panic!("no [{table}]"))
        .insert(key.into(), toml::Value::String(value.into()));
    assert!(old.is_some() || !must_exist, "{table}.{key} is not set");
}

/// `tierd check --json` of `config` with data_dir and storage_class_dir
/// replaced by local paths, written into `at`.
fn check_output(config: &toml::Value, data_dir: &Path, class_dir: &Path, at: &Path) -> Output {
    let mut c = config.clone();
    set(
        &mut c,
        "server",
        "data_dir",
        &data_dir.display().to_string(),
        true,
    );
    set(
        &mut c,
        "kubernetes",
        "storage_class_dir",
        &class_dir.display().to_string(),
        true,
    );
    let file = at.join("tierd.toml");
    std::fs::write(&file, toml::to_string(&c).expect("serialize TOML")).expect("write config");
    Command::new(tierd_bin())
        .args(["check", "--json", "--config"])
        .arg(&file)
        .output()
        .expect("run tierd check")
}

/// What `tierd check --json` prints for a configuration it accepts.
fn check(config: &toml::Value, data_dir: &Path, class_dir: &Path, at: &Path) -> serde_json::Value {
    let out = check_output(config, data_dir, class_dir, at);
    assert!(
        out.status.success(),
        "tierd check refused the ConfigMap's tierd.toml ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("check --json prints JSON")
}

/// A probe's URL (httpGet, or an exec'd command that names one), and how.
fn probe_target(probe: &Yaml) -> (String, String) {
    if !probe["httpGet"].is_null() {
        let g = &probe["httpGet"];
        let port = match &g["port"] {
            Yaml::Number(n) => n.to_string(),
            other => s(other).to_string(),
        };
        return ("httpGet".into(), format!("pod-ip:{port}{}", s(&g["path"])));
    }
    let cmd = seq(&probe["exec"]["command"]);
    assert!(
        !cmd.is_empty(),
        "probe is neither httpGet nor exec: {probe:?}"
    );
    let url = cmd
        .iter()
        .map(s)
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("exec probe names no URL: {cmd:?}"));
    (format!("exec {}", s(&cmd[0])), url.to_string())
}

#[test]
fn kubernetes_sidecar_config_passes_tierd_check_and_the_pod_matches_it() {
    let m = Manifests::load();
    let sts = m.of_kind("StatefulSet");
    assert_eq!(sts.len(), 1, "one StatefulSet");
    let sts = sts[0];
    let pod = &sts["spec"]["template"]["spec"];

    // The tierd container, a native sidecar or a plain container.
    let (tierd, sidecar) = seq(&pod["initContainers"])
        .iter()
        .map(|c| (c, true))
        .chain(seq(&pod["containers"]).iter().map(|c| (c, false)))
        .find(|(c, _)| c["name"].as_str() == Some("tierd"))
        .expect("a container named tierd");
    if sidecar {
        assert_eq!(
            tierd["restartPolicy"].as_str(),
            Some("Always"),
            "an init container that never exits must be a native sidecar"
        );
    }
    assert!(
        !seq(&pod["containers"]).is_empty(),
        "the storage server container"
    );
    assert_eq!(s(&tierd["image"]), "tierd:latest");
    assert!(
        tierd["command"].is_null(),
        "keep the image's ENTRYPOINT (/usr/local/bin/tierd)"
    );
    let df = Dockerfile::load();
    let image_cmd = words(&df.runtime().last("CMD").args);
    let args: Vec<String> = if tierd["args"].is_null() {
        image_cmd.clone()
    } else {
        seq(&tierd["args"])
            .iter()
            .map(|a| s(a).to_string())
            .collect()
    };
    assert_eq!(args[0], "serve");
    let config_path = args
        .iter()
        .position(|a| a == "--config")
        .map(|i| args[i + 1].clone())
        .expect("serve --config FILE");
    assert_eq!(config_path, "/etc/tierd/tierd.toml");
    let (config_dir, config_key) = config_path.rsplit_once('/').expect("a path");

    // Volumes: name -> the YAML of the volume source.
    let volumes: BTreeMap<&str, &Yaml> = seq(&pod["volumes"])
        .iter()
        .map(|v| (s(&v["name"]), v))
        .collect();
    let claims: BTreeSet<&str> = seq(&sts["spec"]["volumeClaimTemplates"])
        .iter()
        .map(|c| s(&c["metadata"]["name"]))
        .collect();
    let mounts: Vec<(&str, &str)> = seq(&tierd["volumeMounts"])
        .iter()
        .map(|vm| {
            assert!(
                vm["subPath"].is_null(),
                "subPath mounts never see ConfigMap updates"
            );
            (s(&vm["mountPath"]), s(&vm["name"]))
        })
        .collect();
    let configmap_at = |dir: &str| -> &Yaml {
        let (_, vol) = mounts
            .iter()
            .find(|(p, _)| p.trim_end_matches('/') == dir)
            .unwrap_or_else(|| panic!("nothing is mounted at {dir}: {mounts:?}"));
        let cm = s(&volumes
            .get(vol)
            .unwrap_or_else(|| panic!("no volume {vol}"))["configMap"]["name"]);
        m.named("ConfigMap", cm)
    };

    // The configuration: the ConfigMap mounted where `serve --config` looks.
    let cm = configmap_at(config_dir);
    let toml_text = s(&cm["data"][config_key]);
    let config: toml::Value = toml_text
        .parse()
        .expect("the ConfigMap's tierd.toml is TOML");
    let server = &config["server"];
    let data_dir = server["data_dir"].as_str().expect("server.data_dir");
    let nbd = server["nbd_listen"].as_str().expect("server.nbd_listen");
    let http = server["http_listen"].as_str().expect("server.http_listen");
    let class_dir = config["kubernetes"]["storage_class_dir"]
        .as_str()
        .expect("kubernetes.storage_class_dir");
    assert_eq!(data_dir, "/var/lib/tierd");
    assert!(
        is_loopback(nbd) && is_loopback(http),
        "{nbd} {http}: loopback binds"
    );

    // Data on the claim template, at data_dir.
    let (_, data_vol) = mounts
        .iter()
        .find(|(p, _)| *p == data_dir)
        .unwrap_or_else(|| panic!("nothing mounted at data_dir {data_dir}"));
    assert!(
        claims.contains(data_vol),
        "{data_vol} is a volumeClaimTemplate"
    );

    // The StorageClasses the pod sees at storage_class_dir: the ConfigMap's
    // .yaml keys, the same documents as deploy/kubernetes/storageclasses.yaml.
    let classes_cm = configmap_at(class_dir);
    let class_files: Vec<(&str, &str)> = classes_cm["data"]
        .as_mapping()
        .expect("ConfigMap data")
        .iter()
        .map(|(k, v)| (s(k), s(v)))
        .filter(|(k, _)| k.ends_with(".yaml") || k.ends_with(".yml"))
        .collect();
    assert!(
        !class_files.is_empty(),
        "no StorageClass file in {class_dir}"
    );
    let shipped = read("deploy/kubernetes/storageclasses.yaml");
    assert_eq!(
        class_files
            .iter()
            .flat_map(|(_, t)| yaml_docs(t))
            .collect::<Vec<_>>(),
        yaml_docs(&shipped),
        "the ConfigMap's StorageClasses differ from deploy/kubernetes/storageclasses.yaml"
    );

    // tierd check, as in the pod (only the ConfigMap's files) ...
    let tmp = tempfile::tempdir().expect("temp dir");
    let pod_classes = tmp.path().join("classes");
    std::fs::create_dir(&pod_classes).expect("mkdir");
    for (k, t) in &class_files {
        std::fs::write(pod_classes.join(k), t).expect("write StorageClasses");
    }
    let data = tmp.path().join("data");
    let got = check(&config, &data, &pod_classes, tmp.path());
    let c = &got["classes"];
    assert_eq!(c["gold"]["tiering_policy"], "none", "{got:#}");
    assert_eq!(c["standard"]["tiering_policy"], "auto", "{got:#}");
    assert_eq!(c["standard"]["cooling_seconds"], 31 * 86_400, "{got:#}");
    assert_eq!(c["standard"]["backend"], "s3", "{got:#}");
    assert_eq!(got["backends"]["s3"]["kind"], "s3", "{got:#}");
    assert_eq!(c["archive"]["tiering_policy"], "all", "{got:#}");
    assert_eq!(c["archive"]["retrieval_policy"], "never", "{got:#}");
    assert_eq!(c["archive"]["backend"], "azure", "{got:#}");
    assert_eq!(got["backends"]["azure"]["kind"], "azure", "{got:#}");
    assert_eq!(got["warnings"], serde_json::json!([]), "{got:#}");
    assert_eq!(got["notes"], serde_json::json!([]), "{got:#}");
    // ... and against the repository's directory, whose other manifests
    // (this file) are skipped as not StorageClasses.
    let tmp2 = tempfile::tempdir().expect("temp dir");
    let repo_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let got2 = check(&config, &data, &repo_dir, tmp2.path());
    assert_eq!(got2["classes"], got["classes"]);
    assert_eq!(got2["backends"], got["backends"]);
    for n in got2["notes"].as_array().expect("notes") {
        let n = n.as_str().unwrap_or_default();
        assert!(
            n.contains("tierd-sidecar.yaml") && n.contains("is not a StorageClass"),
            "{n}"
        );
    }
    assert!(
        !data.exists(),
        "tierd check must not create the data directory"
    );

    // The manifest's recipe for exposing /metrics holds: off loopback the
    // admin API needs admin_token_file, and with one the file is accepted.
    let manifest = read("deploy/kubernetes/tierd-sidecar.yaml");
    assert!(manifest.contains("admin_token_file") && manifest.contains("0.0.0.0:9464"));
    let mut exposed = config.clone();
    set(&mut exposed, "server", "http_listen", "0.0.0.0:9464", true);
    let tmp3 = tempfile::tempdir().expect("temp dir");
    let out = check_output(&exposed, &data, &pod_classes, tmp3.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("admin_token_file"), "{err}");
    let token = tmp3.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").expect("write token");
    set(
        &mut exposed,
        "server",
        "admin_token_file",
        &token.display().to_string(),
        false,
    );
    let exposed_check = check(&exposed, &data, &pod_classes, tmp3.path());
    assert_eq!(exposed_check["classes"], got["classes"]);

    // Credentials: none in the file; from the Secret, in the variables the
    // backends read when the file has none.
    let secret = m.of_kind("Secret");
    assert_eq!(secret.len(), 1, "one Secret");
    let secret = secret[0];
    let secret_name = s(&secret["metadata"]["name"]);
    let secret_keys: BTreeMap<&str, &str> = secret["stringData"]
        .as_mapping()
        .expect("Secret stringData")
        .iter()
        .map(|(k, v)| (s(k), s(v)))
        .collect();
    for (k, v) in &secret_keys {
        assert!(v.contains("REPLACE"), "{k}: a placeholder, clearly named");
        assert!(!toml_text.contains(v), "the config holds the secret {k}");
    }
    let mut env_from_secret = BTreeSet::new();
    for e in seq(&tierd["env"]) {
        let r = &e["valueFrom"]["secretKeyRef"];
        if r.is_null() {
            continue;
        }
        assert_eq!(s(&r["name"]), secret_name);
        assert!(
            secret_keys.contains_key(s(&r["key"])),
            "env {} refers to key {} the Secret lacks",
            s(&e["name"]),
            s(&r["key"])
        );
        env_from_secret.insert(s(&e["name"]).to_string());
    }
    for ef in seq(&tierd["envFrom"]) {
        if !ef["secretRef"].is_null() {
            assert_eq!(s(&ef["secretRef"]["name"]), secret_name);
            env_from_secret.extend(secret_keys.keys().map(|k| k.to_string()));
        }
    }
    let backends = config["backends"].as_table().expect("[backends]");
    for (name, b) in backends {
        let has = |k: &str| b.get(k).is_some();
        match b["kind"].as_str() {
            Some("s3") => {
                assert!(
                    !has("access_key_id") && !has("secret_access_key"),
                    "backends.{name}: credentials belong in the Secret, not the file"
                );
                for v in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
                    assert!(env_from_secret.contains(v), "backend {name} needs {v}");
                }
            }
            Some("azure") => {
                assert!(
                    !has("access_key") && !has("sas_token"),
                    "backends.{name}: credentials belong in the Secret, not the file"
                );
                assert!(
                    env_from_secret.contains("AZURE_STORAGE_KEY")
                        || env_from_secret.contains("AZURE_STORAGE_SAS_TOKEN"),
                    "backend {name} needs AZURE_STORAGE_KEY"
                );
                if b.get("account")
                    .and_then(|a| a.as_str())
                    .unwrap_or("")
                    .is_empty()
                {
                    assert!(
                        seq(&tierd["env"])
                            .iter()
                            .any(|e| e["name"].as_str() == Some("AZURE_STORAGE_ACCOUNT")),
                        "backend {name} has no account"
                    );
                }
            }
            _ => {}
        }
    }
    // One replica: every replica would get this same object-store prefix,
    // and each tierd's GC deletes objects none of its volumes refer to.
    assert!(
        sts["spec"]["replicas"].as_u64().unwrap_or(1) <= 1,
        "more replicas need a prefix per pod"
    );

    // Ports, metrics annotations, probes.
    let ports: BTreeSet<u64> = seq(&tierd["ports"])
        .iter()
        .map(|p| p["containerPort"].as_u64().expect("containerPort"))
        .collect();
    for addr in [nbd, http] {
        assert!(
            ports.contains(&(port_of(addr) as u64)),
            "{addr} not in {ports:?}"
        );
    }
    let ann = &sts["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(s(&ann["prometheus.io/scrape"]), "true");
    assert_eq!(s(&ann["prometheus.io/port"]), port_of(http).to_string());
    assert_eq!(s(&ann["prometheus.io/path"]), "/metrics");
    let rt_pkgs = apt_packages(df.runtime()).0;
    let hc = &df.runtime().last("HEALTHCHECK").args;
    assert!(
        hc.contains(&format!("http://{http}/healthz")),
        "the image's HEALTHCHECK misses http_listen {http}: {hc}"
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let (how, url) = probe_target(&tierd[probe]);
        if is_loopback(http) {
            // The kubelet's httpGet connects to the pod IP, where nothing listens.
            assert!(
                how.starts_with("exec "),
                "{probe}: {how} cannot reach {http}"
            );
            assert!(
                rt_pkgs.contains(&how[5..]),
                "{probe} runs {how}: not in the image"
            );
            assert_eq!(url, format!("http://{http}{path}"), "{probe}");
        } else {
            assert_eq!(url, format!("pod-ip:{}{path}", port_of(http)), "{probe}");
        }
    }

    // Security, shutdown, resources.
    let uid: u64 = df.user_uid().parse().expect("numeric USER");
    let sc = |k: &str| {
        let c = &tierd["securityContext"][k];
        if c.is_null() {
            pod["securityContext"][k].clone()
        } else {
            c.clone()
        }
    };
    assert_eq!(sc("runAsNonRoot").as_bool(), Some(true));
    assert_eq!(sc("runAsUser").as_u64(), Some(uid), "the image's USER");
    assert_eq!(
        pod["securityContext"]["fsGroup"].as_u64(),
        Some(uid),
        "fsGroup makes the data volume writable by {uid}"
    );
    assert!(
        pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30) >= 60,
        "time to drain, flush heat and fdatasync"
    );
    for k in ["requests", "limits"] {
        assert!(
            tierd["resources"][k]["memory"].as_str().is_some(),
            "resources.{k}.memory"
        );
    }
}

// ---------------------------------------------------------------- Grafana

/// Every `tierd_...` name in `text` (a whole word).
fn metric_names(text: &str) -> BTreeSet<String> {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_';
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("tierd_").map(|p| p + i) {
        let mut end = at;
        while end < b.len() && word(b[end]) {
            end += 1;
        }
        if at == 0 || !word(b[at - 1]) {
            out.insert(text[at..end].to_string());
        }
        i = end.max(at + 1);
    }
    out
}

/// Every string under a key named `key`, anywhere in `v`.
fn strings_at(v: &serde_json::Value, key: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match x {
                    serde_json::Value::String(s) if k == key => out.push(s.clone()),
                    _ => strings_at(x, key, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings_at(x, key, out)),
        _ => {}
    }
}

/// A scrape: metric family types, and every sample's name and labels.
struct Scrape {
    types: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>)>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let (n, ty) = t.split_once(' ').expect("TYPE line");
                types.insert(n.to_string(), ty.to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, _) = line.rsplit_once(' ').expect("sample line");
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let labels = labels
                .trim_end_matches('}')
                .split("\",")
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once("=\"").expect("label");
                    (k.to_string(), v.trim_end_matches('"').to_string())
                })
                .collect();
            samples.push((name.to_string(), labels));
        }
        Scrape { types, samples }
    }

    /// The family type of a sample or family name (histogram parts included).
    fn type_of(&self, name: &str) -> Option<&str> {
        if let Some(t) = self.types.get(name) {
            return Some(t);
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suf| {
            name.strip_suffix(suf)
                .and_then(|base| self.types.get(base))
                .filter(|t| *t == "histogram")
                .map(String::as_str)
        })
    }

    fn series(&self, name: &str) -> impl Iterator<Item = &BTreeMap<String, String>> {
        let name = name.to_string();
        self.samples
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, l)| l)
    }
}

/// Histograms tierd computes afresh at every scrape (tiering/src/metrics.rs,
/// `state`): their buckets are gauges, never rate()d.
const STATE_HISTOGRAMS: [&str; 1] = ["tierd_volume_extent_temperature"];

/// The function whose argument list directly encloses byte `at` of `expr`.
fn enclosing_function(expr: &str, at: usize) -> String {
    let b = expr.as_bytes();
    let mut depth = 0;
    let mut i = at;
    while i > 0 {
        i -= 1;
        match b[i] {
            b')' => depth += 1,
            b'(' if depth == 0 => {
                let head = expr[..i].trim_end();
                let start = head
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map(|p| p + 1)
                    .unwrap_or(0);
                return head[start..].to_string();
            }
            b'(' => depth -= 1,
            _ => {}
        }
    }
    String::new()
}

#[test]
fn grafana_dashboard_uses_only_what_tierd_exposes() {
    let text = read("deploy/grafana/tierd-dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(
        dash["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "schemaVersion"
    );
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let var = |n: &str| {
        vars.iter()
            .find(|v| v["name"] == n)
            .unwrap_or_else(|| panic!("no ${n} variable"))
    };
    assert_eq!(var("DS_PROMETHEUS")["type"], "datasource");
    assert_eq!(var("DS_PROMETHEUS")["query"], "prometheus");
    assert!(
        var("volume")["definition"].as_str().is_some_and(|d| d
            .starts_with("label_values(tierd_volume_bytes")
            && d.ends_with(", volume)")),
        "{}",
        var("volume")
    );
    // No data source hard-coded anywhere: every one is the variable.
    let mut uids = Vec::new();
    strings_at(&dash, "uid", &mut uids);
    for u in uids.iter().filter(|u| *u != "tierd-overview") {
        assert!(
            u == "${DS_PROMETHEUS}" || u == "-- Grafana --",
            "data source uid {u}"
        );
    }
    let mut exprs = Vec::new();
    strings_at(&dash, "expr", &mut exprs);
    strings_at(&dash, "definition", &mut exprs);
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    let mut kinds = Vec::new();
    strings_at(&dash, "type", &mut kinds);
    assert!(kinds.iter().any(|k| k == "heatmap"), "a heatmap panel");

    let names = metric_names(&text);
    for must in [
        "tierd_volume_bytes",
        "tierd_volume_inactive_bytes",
        "tierd_extents",
        "tierd_volume_extent_temperature_bucket",
        "tierd_nbd_request_duration_seconds_bucket",
        "tierd_nbd_requests_total",
        "tierd_migrations_total",
        "tierd_migration_bytes_total",
        "tierd_backend_requests_total",
        "tierd_backend_request_duration_seconds_bucket",
        "tierd_integrity_errors_total",
        "tierd_gc_objects_deleted_total",
        "tierd_rehydration_cache_hits_total",
        "tierd_rehydration_cache_misses_total",
    ] {
        assert!(names.contains(must), "the dashboard does not show {must}");
    }

    // A daemon that has done everything the dashboard shows: class `c` tiers
    // to a local directory; class `d` to an S3 endpoint on a loopback port
    // nobody listens on, so backend errors and retries happen too.
    let fs = spec(Kind::Fs).expect("fs backend");
    let dead = free_port();
    let d = Daemon::start_with(&format!(
        "[tiering]\nscan_interval = \"1h\"\nbreaker_failures = 1000\n{}\n\
         [backends.dead]\nkind = \"s3\"\nbucket = \"nobody\"\nendpoint = \"http://127.0.0.1:{dead}\"\n\
         path_style = true\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n\
         [backends.dead.limits]\ninitial_backoff = \"10ms\"\nmax_backoff = \"50ms\"\nmax_attempts = 3\n\
         attempt_timeout = \"2s\"\ndeadline = \"10s\"\n\
         [classes.c]\nbackend = \"store\"\ntiering_policy = \"all\"\n\
         [classes.d]\nbackend = \"dead\"\ntiering_policy = \"all\"\n",
        fs.toml
    ));
    for (v, class) in [("v", "c"), ("w", "d")] {
        d.cli_ok(&[
            "volume",
            "create",
            v,
            "--size",
            "16MiB",
            "--extent-size",
            "1MiB",
            "--class",
            class,
        ]);
        d.write_image(v, &random_bytes(4 * MIB, 11));
    }
    let (status, report) = d.post("/v1/volumes/v/tier?wait=true");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["tiered"], 4, "{report}");
    let (status, report) = d.post("/v1/volumes/w/tier?wait=true");
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["tiered"].as_u64(), report["failed"].as_u64()),
        (Some(0), Some(4)),
        "the dead backend refuses every upload: {report}"
    );
    // A cold read (remote), a local write and read, garbage collection.
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            &d.uri("v"),
            "-c",
            "read 1M 4k",
            "-c",
            "write -P 0x5a 12M 64k",
            "-c",
            "read -P 0x5a 12M 64k",
        ],
    );
    let (status, gc) = d.post("/v1/gc");
    assert!(status < 300, "{status} {gc}");

    let body = reqwest::blocking::get(format!("{}/metrics", d.api()))
        .expect("GET /metrics")
        .text()
        .expect("metrics text");
    let scrape = Scrape::parse(&body);
    assert!(
        scrape
            .series("tierd_backend_requests_total")
            .any(|l| l.get("result").is_some_and(|r| r != "ok")),
        "the dead backend produced no failed attempts:\n{body}"
    );

    // Every name the dashboard uses is exposed (a histogram by its family
    // name or its _bucket/_sum/_count series).
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| {
            scrape.series(n).next().is_none()
                && scrape.types.get(*n).map(String::as_str) != Some("histogram")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not in a scrape of tierd: {missing:?}\n{body}"
    );

    // Each query uses its metrics as their type allows, with labels they have.
    for expr in &exprs {
        for name in metric_names(expr) {
            let ty = scrape
                .type_of(&name)
                .unwrap_or_else(|| panic!("{name}: no TYPE in the scrape"));
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|_| ty == "histogram"))
                .unwrap_or(&name);
            let occurrences = occurrences(expr, &name);
            assert!(!occurrences.is_empty(), "{name} in {expr}");
            for at in occurrences {
                let f = enclosing_function(expr, at);
                let rated = matches!(f.as_str(), "rate" | "irate" | "increase");
                let want_rate = match ty {
                    "counter" => true,
                    "histogram" => !STATE_HISTOGRAMS.contains(&base),
                    _ => false,
                };
                assert_eq!(
                    rated,
                    want_rate,
                    "{name} ({ty}) is {} in: {expr}",
                    if rated { "rated" } else { "not rated" }
                );
                // Label matchers: the labels exist on the series; `=` values occur.
                let labels_of: BTreeSet<&String> =
                    scrape.series(&name).flat_map(|l| l.keys()).collect();
                let Some(sel) = expr[at + name.len()..].strip_prefix('{') else {
                    continue;
                };
                let sel = &sel[..sel.find('}').expect("closing }")];
                for matcher in sel.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                    let key_end = matcher.find(['=', '!']).expect("matcher");
                    let key = matcher[..key_end].trim();
                    if key == "instance" || key == "job" {
                        continue;
                    }
                    assert!(
                        labels_of.iter().any(|l| *l == key),
                        "{name} has no label {key} (has {labels_of:?}): {expr}"
                    );
                    if let Some(v) = matcher[key_end..].trim().strip_prefix("=\"") {
                        let v = v.trim_end_matches('"');
                        assert!(
                            scrape
                                .series(&name)
                                .any(|l| l.get(key).map(String::as_str) == Some(v)),
                            "no {name} series with {key}=\"{v}\": {expr}"
                        );
                    }
                }
            }
        }
        // Grouping labels exist on some metric of the query.
        let mut rest = expr.as_str();
        while let Some(p) = rest.find("by (") {
            let inner = &rest[p + 4..];
            let close = inner.find(')').expect("by (...)");
            for label in inner[..close].split(',').map(str::trim) {
                if label == "instance" || label == "job" {
                    continue;
                }
                let found = metric_names(expr)
                    .iter()
                    .any(|n| scrape.series(n).any(|l| l.contains_key(label)));
                assert!(found, "by ({label}): no metric of {expr} has it");
            }
            rest = &inner[close..];
        }
    }
}

/// Where `name` occurs in `expr` as a whole word.
fn occurrences(expr: &str, name: &str) -> Vec<usize> {
    let b = expr.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = expr[from..].find(name).map(|p| p + from) {
        let end = p + name.len();
        if (p == 0 || !word(b[p - 1])) && (end == b.len() || !word(b[end])) {
            out.push(p);
        }
        from = end;
    }
    out
}
