//! The `Dockerfile`, checked against the repository and the real binary: the
//! runtime stage copies the path the build stage's cargo command produces,
//! that command builds what `scripts/run.sh` builds, the runtime stage
//! installs the Debian package of every shared library `ldd tierd` lists, and
//! `.dockerignore` keeps what the build needs and drops what it must not copy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use tierd_e2e::deploy::{apt_packages, command_words, join, read, repo, words, Dockerfile};
use tierd_e2e::{run, tierd_bin};

/// A shell script without its comment lines.
fn script(rel: &str) -> String {
    read(rel)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
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
        "tiering/src/api/ui.html".into(),
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
