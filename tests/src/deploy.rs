//! Reading the repository's deployment files, for the tests that check them
//! (`tests/tests/dockerfile.rs`, `kubernetes.rs`, `grafana.rs`): the workspace
//! root, its files, and the `Dockerfile` parsed into stages and instructions.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The workspace root (the repository checkout).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The text of `rel`, a path relative to the workspace root.
pub fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// One logical Dockerfile instruction.
#[derive(Debug, Clone)]
pub struct Instr {
    /// The instruction, upper-cased (`RUN`, `COPY`, ...).
    pub keyword: String,
    /// Everything after the keyword, continuations joined.
    pub args: String,
    /// WORKDIR in effect for this instruction.
    pub workdir: String,
}

/// One build stage: what it starts `FROM`, its `AS` name, its instructions.
#[derive(Debug)]
pub struct Stage {
    /// The base image.
    pub base: String,
    /// The stage's `AS` name, if any.
    pub name: Option<String>,
    /// The instructions after `FROM`, in order.
    pub instrs: Vec<Instr>,
}

impl Stage {
    /// The stage's `keyword` instructions, in order.
    pub fn all(&self, keyword: &str) -> Vec<&Instr> {
        self.instrs
            .iter()
            .filter(|i| i.keyword == keyword)
            .collect()
    }

    /// The stage's last `keyword` instruction (the one in effect).
    pub fn last(&self, keyword: &str) -> &Instr {
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
pub fn join(dir: &str, p: &str) -> String {
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
pub fn words(args: &str) -> Vec<String> {
    if args.trim_start().starts_with('[') {
        serde_json::from_str(args).unwrap_or_else(|e| panic!("bad exec form {args}: {e}"))
    } else {
        args.split_whitespace().map(str::to_string).collect()
    }
}

/// The words of the first `prefix` command in `shell` (up to `&&`, `;`, `|`).
pub fn command_words(shell: &str, prefix: &str) -> Option<Vec<String>> {
    let at = shell.find(prefix)?;
    let rest = &shell[at..];
    let end = ["&&", ";", "||", "|", "\n"]
        .iter()
        .filter_map(|s| rest.find(s))
        .min()
        .unwrap_or(rest.len());
    Some(rest[..end].split_whitespace().map(str::to_string).collect())
}

/// The packages of the first `apt-get install` in `stage`.
pub fn apt_packages(stage: &Stage) -> (BTreeSet<String>, Vec<String>) {
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

/// The repository's `Dockerfile`, parsed.
pub struct Dockerfile {
    /// The build stages, in order.
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    /// Reads and parses the repository's `Dockerfile`.
    pub fn load() -> Dockerfile {
        Dockerfile {
            stages: parse_dockerfile(&read("Dockerfile")),
        }
    }

    /// The last stage: the image that ships.
    pub fn runtime(&self) -> &Stage {
        self.stages.last().expect("a stage")
    }

    /// The runtime stage's `USER`, without a group.
    pub fn user_uid(&self) -> String {
        let user = &self.runtime().last("USER").args;
        user.split(':').next().unwrap_or_default().to_string()
    }
}
