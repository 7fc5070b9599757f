//! NBD over TLS with the real clients: qemu-img/qemu-io with
//! `--object tls-creds-x509` and nbdinfo/nbdcopy on `nbds://` URIs, against
//! a daemon with a certificate (and, in the second test, a client CA). A
//! client without TLS, or without a certificate where one is required, is
//! refused and learns nothing of the exports.

use std::path::Path;
use std::process::Command;

use tierd_e2e::{random_bytes, Daemon};

/// Runs a client; its output, whether it succeeded or not.
fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// Runs openssl, panicking with its output if it fails.
fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A CA, a server certificate for 127.0.0.1 and localhost, and a client
/// certificate, laid out as qemu's tls-creds-x509 and libnbd expect:
/// `server/` (ca-cert, server-cert, server-key) and `client/` (ca-cert,
/// client-cert, client-key); `anon/` holds only the CA.
fn certificates(dir: &Path) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=tierd test CA",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca-cert.pem",
        ],
        dir,
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).expect("write ext");
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN=tierd {name}"),
                "-keyout",
                &format!("{name}-key.pem"),
                "-out",
                &format!("{name}.csr"),
            ],
            dir,
        );
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca-cert.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}-cert.pem"),
            ],
            dir,
        );
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).expect("mkdir");
        for f in [
            "ca-cert.pem",
            &format!("{name}-cert.pem"),
            &format!("{name}-key.pem"),
        ] {
            std::fs::copy(dir.join(f), sub.join(f)).expect("copy");
        }
    }
    std::fs::create_dir_all(dir.join("anon")).expect("mkdir");
    std::fs::copy(dir.join("ca-cert.pem"), dir.join("anon/ca-cert.pem")).expect("copy");
}

fn tls_daemon(certs: &Path, client_ca: bool) -> Daemon {
    let mut extra = format!(
        "tls_cert_file = \"{0}/server-cert.pem\"\ntls_key_file = \"{0}/server-key.pem\"\n",
        certs.display()
    );
    if client_ca {
        extra += &format!("tls_client_ca_file = \"{}/ca-cert.pem\"\n", certs.display());
    }
    Daemon::start_with(&extra)
}

/// qemu-io against the TLS export with the credentials in `creds`.
fn qemu_io_tls(d: &Daemon, creds: &Path, cmd: &str) -> std::process::Output {
    let obj = format!(
        "tls-creds-x509,id=tls0,endpoint=client,dir={}",
        creds.display()
    );
    let img = format!(
        "driver=nbd,host=127.0.0.1,port={},export=v,tls-creds=tls0",
        d.nbd_port
    );
    run(
        "qemu-io",
        &["--object", &obj, "--image-opts", &img, "-c", cmd],
    )
}

fn nbds(d: &Daemon, creds: &Path) -> String {
    format!(
        "nbds://127.0.0.1:{}/v?tls-certificates={}",
        d.nbd_port,
        creds.display()
    )
}

#[test]
fn real_clients_speak_tls_and_plain_ones_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    certificates(dir.path());
    let d = tls_daemon(dir.path(), false);
    d.create_volume("v", "8MiB", None);
    let anon = dir.path().join("anon");

    // qemu writes and reads back over TLS.
    let out = qemu_io_tls(&d, &anon, "write -P 0x5c 1M 64k");
    assert!(out.status.success(), "{out:?}\n{}", d.log());
    let out = qemu_io_tls(&d, &anon, "read -P 0x5c 1M 64k");
    assert!(out.status.success(), "{out:?}");
    // nbdinfo and nbdcopy on nbds:// URIs.
    let out = run("nbdinfo", &[&nbds(&d, &anon)]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("8388608"),
        "{out:?}"
    );
    let data = random_bytes(8 << 20, 9);
    let src = dir.path().join("src.raw");
    std::fs::write(&src, &data).expect("write source");
    let out = run(
        "nbdcopy",
        &[src.to_str().unwrap_or_default(), &nbds(&d, &anon)],
    );
    assert!(out.status.success(), "{out:?}");
    let back = dir.path().join("back.raw");
    let out = run(
        "nbdcopy",
        &[&nbds(&d, &anon), back.to_str().unwrap_or_default()],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::read(&back).expect("read copy") == data);

    // Without TLS: refused before any export is named or listed.
    let out = run(
        "nbdinfo",
        &["--list", &format!("nbd://127.0.0.1:{}", d.nbd_port)],
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("\"v\""),
        "{out:?}"
    );
    let out = run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "read 0 4k",
            &format!("nbd://127.0.0.1:{}/v", d.nbd_port),
        ],
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(d.log().contains("requires TLS"), "{}", d.log());
    // The unix socket (local only) still serves plain clients.
    let out = run(
        "nbdinfo",
        &[&format!("nbd+unix:///v?socket={}", d.socket().display())],
    );
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_client_ca_admits_only_clients_with_its_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    certificates(dir.path());
    let d = tls_daemon(dir.path(), true);
    d.create_volume("v", "8MiB", None);
    let out = qemu_io_tls(&d, &dir.path().join("client"), "write -P 0x21 0 4k");
    assert!(out.status.success(), "{out:?}\n{}", d.log());
    let out = run("nbdinfo", &[&nbds(&d, &dir.path().join("client"))]);
    assert!(out.status.success(), "{out:?}");
    // TLS without a client certificate: the handshake fails.
    let out = qemu_io_tls(&d, &dir.path().join("anon"), "read 0 4k");
    assert!(!out.status.success(), "{out:?}");
    let out = run("nbdinfo", &[&nbds(&d, &dir.path().join("anon"))]);
    assert!(!out.status.success(), "{out:?}");
    assert!(d.log().contains("TLS handshake failed"), "{}", d.log());
}

#[test]
fn a_bad_certificate_file_stops_the_daemon_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("cert.pem");
    std::fs::write(&bad, "not a certificate").expect("write");
    let cfg = dir.path().join("t.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\ndata_dir = \"{0}/data\"\nnbd_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\ntls_cert_file = \"{1}\"\ntls_key_file = \"{1}\"\n",
            dir.path().display(),
            bad.display()
        ),
    )
    .expect("write config");
    let out = Command::new(tierd_e2e::tierd_bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .expect("run tierd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls_cert_file") && err.contains("cert.pem"),
        "{err}"
    );
}
