//! The heat-map page, loaded in headless Chromium (Debian package `chromium`):
//! after its script ran, the DOM shows each volume's extents with their real
//! tier and temperature, and the counters from /metrics.

use std::process::Command;

use tierd_e2e::backends::{spec, Kind};
use tierd_e2e::{random_bytes, run, Daemon};

const MIB: usize = 1 << 20;

/// The DOM of `url` once its scripts ran (Chromium's virtual time lets the
/// page's fetches finish before the dump).
fn rendered_dom(d: &Daemon, url: &str) -> String {
    let profile = d.dir.path().join("chromium-profile");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .output()
        .expect("run chromium (Debian package chromium)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The part of the DOM for one volume's section.
fn section<'a>(dom: &'a str, volume: &str) -> &'a str {
    let start = dom
        .find(&format!("data-volume=\"{volume}\""))
        .unwrap_or_else(|| panic!("volume {volume} not rendered:\n{dom}"));
    let rest = &dom[start..];
    let end = rest.find("</section>").expect("section end");
    &rest[..end]
}

/// (state, temperature) of every cell in a section, in order.
fn cells(section: &str) -> Vec<(String, f64)> {
    section
        .split("class=\"cell ")
        .skip(1)
        .map(|c| {
            let attr = |name: &str| {
                let at = c.find(&format!("{name}=\"")).expect("cell attribute") + name.len() + 2;
                c[at..at + c[at..].find('"').expect("quote")].to_string()
            };
            (
                attr("data-state"),
                attr("data-temp").parse().expect("temperature"),
            )
        })
        .collect()
}

#[test]
fn heat_map_page_renders_real_tiers_and_temperatures() {
    let s = spec(Kind::Fs).expect("fs backend");
    let d = Daemon::start_with(&format!(
        "[tiering]\nscan_interval = \"1h\"\n{}\n[classes.c]\nbackend = \"store\"\ntiering_policy = \"all\"\n[classes.keep]\ntiering_policy = \"none\"\n",
        s.toml
    ));
    d.create_volume_in("v", "16MiB", Some("1MiB"), "c");
    d.create_volume_in("other", "8MiB", Some("1MiB"), "keep");
    d.write_image("v", &random_bytes(8 * MIB, 3));
    let (status, report) = d.post("/v1/volumes/v/tier?wait=true");
    assert_eq!(status, 200, "{report}");
    // After the pass: extent 12 written and read often (hot, local).
    let uri = d.uri("v");
    let mut args = vec!["-f", "raw", uri.as_str(), "-c", "write -P 0x5a 12M 1M"];
    for _ in 0..20 {
        args.extend(["-c", "read 12M 64k"]);
    }
    run("qemu-io", &args);

    let dom = rendered_dom(&d, &format!("{}/ui", d.api()));
    let error = &dom[dom.find("<div id=\"error\"").expect("error box")..];
    assert!(
        error[..error.find("</div>").expect("end")].ends_with('>'),
        "the page reported an error: {}",
        &error[..200.min(error.len())]
    );
    let rendered = &dom[dom.find("data-rendered=\"").expect("render count") + 15..];
    let renders: u32 = rendered[..rendered.find('"').expect("quote")]
        .parse()
        .expect("number");
    assert!(renders >= 1, "the page's script never finished a refresh");

    let info = d.get_json("/v1/volumes/v");
    let v = cells(section(&dom, "v"));
    assert_eq!(v.len(), 16, "one cell per extent");
    let remote = v.iter().filter(|(s, _)| s == "remote").count();
    assert_eq!(
        remote as u64,
        info["extents_remote"].as_u64().expect("count")
    );
    assert_eq!(remote, 8);
    assert!(v[..8].iter().all(|(s, _)| s == "remote"), "{v:?}");
    assert_eq!(v[12].0, "local");
    // The extent read 20 times is the hottest; written-once extents are warm;
    // never-touched ones are at zero.
    let hottest = v.iter().map(|c| c.1).fold(0.0, f64::max);
    assert_eq!(v[12].1, hottest, "{v:?}");
    assert!(v[12].1 > v[0].1 && v[0].1 > 0.0, "{v:?}");
    assert_eq!(v[15].1, 0.0, "{v:?}");

    let other = cells(section(&dom, "other"));
    assert_eq!(other.len(), 8);
    assert!(
        other.iter().all(|(s, t)| s == "local" && *t == 0.0),
        "{other:?}"
    );

    // Counters come from /metrics.
    let counters = &dom[dom.find("id=\"counters\"").expect("counters")..];
    assert!(
        counters.contains("<div class=\"v\">8</div><div class=\"k\">extents tiered</div>"),
        "{counters}"
    );
}
