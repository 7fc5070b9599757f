//! `deploy/kubernetes/tierd-sidecar.yaml`, checked against the real binary and
//! the image: the ConfigMap's `tierd.toml` passes `tierd check` with the
//! StorageClasses the pod would see, and the StatefulSet mounts, exposes,
//! probes and feeds it what it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use serde_yaml::Value as Yaml;
use tierd_e2e::deploy::{apt_packages, read, words, Dockerfile};
use tierd_e2e::tierd_bin;

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
