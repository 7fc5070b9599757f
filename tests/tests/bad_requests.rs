//! Malformed and hostile NBD traffic gets errors or a clean disconnect, and never
//! disturbs another client.

use std::io::Write;

use tierd_e2e::raw_nbd::{RawNbd, CMD_DISC, CMD_READ, CMD_WRITE, EINVAL, ENOSPC, IHAVEOPT};
use tierd_e2e::{run, Daemon};

#[test]
fn out_of_range_and_oversize_requests_get_errors_while_others_work() {
    let d = Daemon::start();
    d.create_volume("v", "8MiB", None);
    // A well-behaved client that stays connected throughout.
    let mut good = RawNbd::connect(d.nbd_port, "v").unwrap();
    good.send(CMD_WRITE, 1, 0, 4096, &[0xEE; 4096]).unwrap();
    assert_eq!(good.reply(0).unwrap().error, 0);

    let mut bad = RawNbd::connect(d.nbd_port, "v").unwrap();
    assert_eq!(bad.size, 8 << 20);
    // Read past the end: EINVAL, connection stays usable.
    bad.send(CMD_READ, 10, (8 << 20) - 512, 4096, &[]).unwrap();
    let r = bad.reply(4096).unwrap();
    assert_eq!((r.handle, r.error), (10, EINVAL));
    // Offset overflow.
    bad.send(CMD_READ, 11, u64::MAX - 10, 4096, &[]).unwrap();
    assert_eq!(bad.reply(4096).unwrap().error, EINVAL);
    // Write past the end: ENOSPC, and the payload is consumed so framing holds.
    bad.send(CMD_WRITE, 12, 8 << 20, 512, &[1u8; 512]).unwrap();
    assert_eq!(bad.reply(0).unwrap().error, ENOSPC);
    // Unknown command.
    bad.send(99, 13, 0, 0, &[]).unwrap();
    assert_eq!(bad.reply(0).unwrap().error, EINVAL);
    // Oversize read.
    bad.send(CMD_READ, 14, 0, 64 << 20, &[]).unwrap();
    assert_eq!(bad.reply(0).unwrap().error, EINVAL);
    // Unknown request flags (FAST_ZERO, never advertised; an undefined
    // bit): EINVAL, a write's payload still consumed.
    bad.send_flags(CMD_READ, 1 << 4, 16, 0, 4096, &[]).unwrap();
    assert_eq!(bad.reply(4096).unwrap().error, EINVAL);
    bad.send_flags(CMD_WRITE, 1 << 9, 17, 0, 512, &[2u8; 512])
        .unwrap();
    assert_eq!(bad.reply(0).unwrap().error, EINVAL);
    // Still fine afterwards.
    bad.send(CMD_READ, 15, 0, 4096, &[]).unwrap();
    let r = bad.reply(4096).unwrap();
    assert_eq!(r.error, 0);
    assert_eq!(r.data, vec![0xEE; 4096]);
    // An oversize write cannot be skipped: error, then the server hangs up.
    bad.send(CMD_WRITE, 16, 0, 40 << 20, &[]).unwrap();
    assert_eq!(bad.reply(0).unwrap().error, EINVAL);
    assert!(bad.closed_by_server());

    // The good client never noticed.
    good.send(CMD_READ, 2, 0, 4096, &[]).unwrap();
    let r = good.reply(4096).unwrap();
    assert_eq!((r.error, r.data), (0, vec![0xEE; 4096]));
    good.send(CMD_DISC, 3, 0, 0, &[]).unwrap();
    assert!(d.log().contains("refusing NBD request"));
}

#[test]
fn bad_magic_disconnects_only_that_client() {
    let d = Daemon::start();
    d.create_volume("v", "4MiB", None);
    let mut bad = RawNbd::connect(d.nbd_port, "v").unwrap();
    bad.s.write_all(&[0xAB; 28]).unwrap();
    assert!(bad.closed_by_server());
    assert!(d.log().contains("bad request magic"));
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 9 0 4k",
            "-c",
            "read -P 9 0 4k",
            &d.uri("v"),
        ],
    );
}

#[test]
fn broken_handshakes_are_dropped_cleanly() {
    let d = Daemon::start();
    d.create_volume("v", "4MiB", None);
    // Wrong option magic.
    let mut s = RawNbd::greet(d.nbd_port).unwrap();
    s.write_all(&[0u8; 16]).unwrap();
    let mut c = RawNbd { s, size: 0 };
    assert!(c.closed_by_server());
    // An option claiming a 1 GiB payload.
    let mut s = RawNbd::greet(d.nbd_port).unwrap();
    s.write_all(&IHAVEOPT.to_be_bytes()).unwrap();
    s.write_all(&7u32.to_be_bytes()).unwrap();
    s.write_all(&(1u32 << 30).to_be_bytes()).unwrap();
    let mut c = RawNbd { s, size: 0 };
    assert!(c.closed_by_server());
    // A client that connects and vanishes mid-greeting.
    drop(std::net::TcpStream::connect(("127.0.0.1", d.nbd_port)).unwrap());
    // An unknown export via EXPORT_NAME: the protocol's answer is a disconnect.
    assert!(RawNbd::connect(d.nbd_port, "nope").is_err());
    assert!(d.log().contains("NBD handshake failed"));
    // The server is still fine.
    run("nbdinfo", &["--size", &d.uri("v")]);
}
