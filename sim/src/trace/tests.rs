//! Tests for the trace readers and the recorder, on small inline fixtures
//! written to temporary files.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;

fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    path
}

fn ev(t_ms: u64, device: u32, op: Op, offset: u64, len: u64) -> Event {
    Event {
        t_ms,
        device,
        op,
        offset,
        len,
    }
}

fn read_all(mut reader: TraceReader) -> Vec<Event> {
    read_all_from(&mut reader)
}

fn read_all_from(reader: &mut TraceReader) -> Vec<Event> {
    reader.map(|e| e.unwrap()).collect()
}

// ---------------------------------------------------------------- MSR

/// First timestamp of the fixtures, a real MSR-era filetime.
const T0: u64 = 128_166_372_003_061_629;

#[test]
fn msr_header_crlf_blank_lines_and_devices() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime\r\n\
         \r\n\
         {},wdev,0,Read,3154152448,4096,2773\r\n\
         {},wdev,0,WRITE,1000,512,100\r\n\
         \n\
         {}, hm , 1 ,read,0,65536,7\n\
         {},wdev,0,write,8192,4096\n",
        T0,
        T0 + 25_000_000,     // +2.5 s
        T0 + 25_010_000,     // +2.501 s
        T0 + 36_000_000_000, // +1 h
    );
    let path = write(dir.path(), "hm_1.csv", text.as_bytes());
    assert_eq!(detect(&path).unwrap(), Format::Msr);
    let mut reader = open(&path, Format::Msr).unwrap();
    let events: Vec<Event> = reader.by_ref().map(|e| e.unwrap()).collect();
    assert_eq!(
        events,
        vec![
            ev(0, 0, Op::Read, 3_154_152_448, 4096),
            ev(2500, 0, Op::Write, 1000, 512),
            ev(2501, 1, Op::Read, 0, 65536),
            ev(3_600_000, 0, Op::Write, 8192, 4096),
        ]
    );
    assert_eq!(reader.devices(), ["wdev/0", "hm/1"]);
    assert_eq!(reader.out_of_order(), 0);
}

#[test]
fn msr_malformed_line_names_path_and_line_and_reading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{T0},src1,0,Read,0,4096,1\n\
         \n\
         {T0},src1,0,Flush,0,4096,1\n\
         {T0},src1,0,Read,4096,4096,1\n"
    );
    let path = write(dir.path(), "bad.csv", text.as_bytes());
    let mut reader = open(&path, Format::Msr).unwrap();
    assert!(reader.next().unwrap().is_ok());
    match reader.next().unwrap() {
        Err(TraceError::Parse {
            path: p,
            line,
            reason,
        }) => {
            assert_eq!(p, path.display().to_string());
            assert_eq!(line, 3);
            assert!(reason.contains("Flush"), "{reason}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    let e = open(&path, Format::Msr)
        .unwrap()
        .nth(1)
        .unwrap()
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:3: ", path.display())),
        "{e}"
    );
    // The caller may skip the bad line.
    assert_eq!(reader.next().unwrap().unwrap().offset, 4096);
    assert!(reader.next().is_none());
}

#[test]
fn msr_rejects_bad_fields() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        "abc,h,0,Read,0,1,1",
        "1,h,0,Read,0,1,1,extra",
        "1,h,0,Read,0",
        "1,h,x,Read,0,1,1",
        "1,h,0,Read,-5,1,1",
        "1,,0,Read,0,1,1",
        "1,h,0,Read,18446744073709551615,1,1",
    ];
    for (i, case) in cases.iter().enumerate() {
        // A valid first line, so the header rule does not apply.
        let text = format!("{T0},h,0,Read,0,1,1\n{case}\n");
        let path = write(dir.path(), &format!("c{i}.csv"), text.as_bytes());
        let mut reader = open(&path, Format::Msr).unwrap();
        assert!(reader.next().unwrap().is_ok());
        match reader.next() {
            Some(Err(TraceError::Parse { line: 2, .. })) => {}
            other => panic!("{case}: expected a parse error on line 2, got {other:?}"),
        }
    }
    // A header anywhere but first is malformed.
    let text = format!(
        "{T0},h,0,Read,0,1,1\nTimestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime\n"
    );
    let path = write(dir.path(), "late-header.csv", text.as_bytes());
    let errors: Vec<_> = open(&path, Format::Msr)
        .unwrap()
        .filter(Result::is_err)
        .collect();
    assert_eq!(errors.len(), 1);
}

#[test]
fn out_of_order_times_are_clamped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{},h,0,Read,0,1,1\n{},h,0,Read,0,1,1\n{},h,0,Read,0,1,1\n{},h,0,Read,0,1,1\n",
        T0 + 50_000,  // 5 ms
        T0 + 100_000, // 10 ms
        T0,           // before the first event
        T0 + 120_000, // 12 ms
    );
    let path = write(dir.path(), "ooo.csv", text.as_bytes());
    let mut reader = open(&path, Format::Msr).unwrap();
    let times: Vec<u64> = reader.by_ref().map(|e| e.unwrap().t_ms).collect();
    assert_eq!(times, [0, 5, 5, 7]);
    assert_eq!(reader.out_of_order(), 1);
}

#[test]
fn over_long_line_is_fatal_and_non_utf8_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!("{T0},h,0,Read,0,1,1\n").into_bytes();
    text.extend_from_slice(b"\xff\xfe,h,0,Read,0,1,1\n");
    text.extend_from_slice(format!("{T0},h,0,Read,512,1,1\n").as_bytes());
    text.extend(std::iter::repeat_n(b'7', MAX_LINE + 10));
    text.extend_from_slice(format!("\n{T0},h,0,Read,0,1,1\n").as_bytes());
    let path = write(dir.path(), "long.csv", &text);
    let results: Vec<_> = open(&path, Format::Msr).unwrap().collect();
    assert_eq!(results.len(), 4, "{results:?}");
    assert!(results[0].is_ok());
    assert!(
        matches!(&results[1], Err(TraceError::Parse { line: 2, reason, .. }) if reason.contains("UTF-8"))
    );
    assert!(results[2].is_ok());
    assert!(
        matches!(&results[3], Err(TraceError::Parse { line: 4, reason, .. }) if reason.contains("longer"))
    );
}

#[test]
fn msr_streams_many_lines() {
    // Enough lines to pass through the read buffer many times.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..100_000u64 {
        text.push_str(&format!(
            "{},h{},{},Write,{},4096,1\n",
            T0 + i * 10_000,
            i % 3,
            i % 2,
            i * 4096
        ));
    }
    let path = write(dir.path(), "many.csv", text.as_bytes());
    let mut reader = open(&path, Format::Msr).unwrap();
    let mut n = 0u64;
    for event in reader.by_ref() {
        let event = event.unwrap();
        assert_eq!(event.t_ms, n);
        assert_eq!(event.offset, n * 4096);
        n += 1;
    }
    assert_eq!(n, 100_000);
    assert_eq!(reader.devices().len(), 6);
}

// ---------------------------------------------------------------- blkparse

const BLKPARSE: &str = "\
  8,0    3        1     0.000000000   697  Q  WS 223490 + 8 [kjournald]
  8,0    3        2     0.000003000   697  G  WS 223490 + 8 [kjournald]
  8,0    3        3     0.000004000   697  I  WS 223490 + 8 [kjournald]
  8,0    3        4     0.000010000   697  D  WS 223490 + 8 [kjournald]
  8,0    0        1     0.001500000     0  C  WS 223490 + 8 [0]
  8,16   1        1     1.250000000  1234  Q   R 1000 + 16 [dd]
  8,16   1        2     1.250100000  1234  Q  RA 2000 + 256 [cat]
  8,0    2        5     2.000000000   42   Q   D 4096 + 2048 [fstrim]
  8,0    2        6     2.500000000   42   Q  DS 0 + 8 [fstrim]
  8,0    0        0     2.600000000     0  m   N cfq697 insert_request
  8,0    1        7     3.000000000    99  Q FWS [kworker/1:1H]
  8,0    1        8     3.100000000    99  Q  FN [jbd2/sda1-8]
  8,0    1        9     3.200000000    99  Q   N 5 + 1 [x]

CPU0 (8,0):
 Reads Queued:           0,        0KiB\t Writes Queued:           1,        4KiB
 Read Dispatches:        0,        0KiB\t Write Dispatches:        1,        4KiB
 Read depth:             1        \t Write depth:             2
 IO unplugs:             1        \t Timer unplugs:           0
Total (8,0):
 Reads Queued:           0,        0KiB\t Writes Queued:           1,        4KiB
Throughput (R/W): 0KiB/s / 4KiB/s
Events (8,0): 13 entries
Skips: 0 forward (0 -   0.0%)
";

#[test]
fn blkparse_queued_events_only_and_footer_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "sda.txt",
        BLKPARSE.replace('\n', "\r\n").as_bytes(),
    );
    assert_eq!(detect(&path).unwrap(), Format::Blkparse);
    let mut reader = open(&path, Format::Blkparse).unwrap();
    let events: Vec<Event> = reader.by_ref().map(|e| e.unwrap()).collect();
    assert_eq!(
        events,
        vec![
            ev(0, 0, Op::Write, 223_490 * 512, 8 * 512),
            ev(1250, 1, Op::Read, 1000 * 512, 16 * 512),
            ev(1250, 1, Op::Read, 2000 * 512, 256 * 512),
            ev(2000, 0, Op::Trim, 4096 * 512, 2048 * 512),
            ev(2500, 0, Op::Trim, 0, 8 * 512),
        ]
    );
    assert_eq!(reader.devices(), ["8,0", "8,16"]);
}

#[test]
fn blkparse_malformed_lines_are_errors_with_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("  8,0 3 x 0.5 697 Q W 1 + 8 [p]", "sequence"),
        ("  8,0 3 1 zero 697 Q W 1 + 8 [p]", "time"),
        ("  8,0 3 1 0.5 697 Q W 1 8 [p]", "+"),
        ("  8,0 3 1 0.5 697 Q W one + 8 [p]", "sector"),
        ("  8,0 3 1 0.5 697 Q W [p]", "sector range"),
        ("  8,0 3 1 0.5 697", "action"),
        ("this is not blkparse output", "neither"),
    ];
    for (i, (case, expect)) in cases.iter().enumerate() {
        let text =
            format!("  8,0 0 1 0.0 1 Q R 0 + 8 [p]\n\n{case}\n  8,0 0 2 0.9 1 Q W 8 + 8 [p]\n");
        let path = write(dir.path(), &format!("b{i}.txt"), text.as_bytes());
        let results: Vec<_> = open(&path, Format::Blkparse).unwrap().collect();
        assert_eq!(results.len(), 3, "{case}: {results:?}");
        match &results[1] {
            Err(TraceError::Parse {
                line: 3, reason, ..
            }) => {
                assert!(reason.contains(expect), "{case}: {reason}")
            }
            other => panic!("{case}: expected a parse error on line 3, got {other:?}"),
        }
        assert_eq!(results[2].as_ref().unwrap().t_ms, 900);
    }
}

// ---------------------------------------------------------------- detect

#[test]
fn detect_refuses_unknown_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in [
        ("empty", &b""[..]),
        ("blank", b"\n\n  \n"),
        ("prose", b"hello, world\nthis is not a trace\n"),
        ("binary", b"\x00\x01\x02\x03garbage"),
    ] {
        let path = write(dir.path(), name, content);
        match detect(&path) {
            Err(TraceError::UnknownFormat { path: p }) => assert!(p.ends_with(name)),
            other => panic!("{name}: {other:?}"),
        }
    }
    let header_only = write(
        dir.path(),
        "header.csv",
        b"Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime\n",
    );
    assert_eq!(detect(&header_only).unwrap(), Format::Msr);
    let missing = dir.path().join("nope");
    assert!(matches!(detect(&missing), Err(TraceError::Io { .. })));
    assert!(matches!(
        open(&missing, Format::Msr),
        Err(TraceError::Io { .. })
    ));
}

#[test]
fn format_names_parse_and_print() {
    for f in [Format::Msr, Format::Blkparse, Format::Tierd] {
        assert_eq!(f.name().parse::<Format>().unwrap(), f);
        assert_eq!(f.to_string(), f.name());
    }
    assert!("csv"
        .parse::<Format>()
        .unwrap_err()
        .contains("msr, blkparse or tierd"));
}

// ---------------------------------------------------------------- tierd recordings

/// A deterministic mix of ops, sector-aligned and unaligned ranges.
fn sample(i: u64) -> (u64, Op, u64, u64) {
    let op = [Op::Read, Op::Write, Op::Trim][(i % 3) as usize];
    let (offset, len) = if i.is_multiple_of(7) {
        (i * 4096 + 3, 1000 + i)
    } else {
        ((i * 4) << 20, 4 << 20)
    };
    (1_700_000_000_000 + i * 37, op, offset, len)
}

#[test]
fn recorder_round_trip_with_unaligned_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::create(dir.path(), "vol1", 1 << 20, 2).unwrap();
    let values = [
        (1_000, Op::Write, 0, 4096),
        (1_000, Op::Read, 511, 1),
        (1_250, Op::Trim, 1 << 40, 1 << 30),
        (900, Op::Read, 512, 512),                  // clock stepped back
        (u64::MAX / 2, Op::Write, u64::MAX - 7, 7), // huge delta and offset
    ];
    for (t, op, off, len) in values {
        rec.record(t, op, off, len).unwrap();
    }
    rec.flush().unwrap();
    let path = rec.path();
    assert_eq!(path, dir.path().join("vol1.trace"));
    assert_eq!(detect(&path).unwrap(), Format::Tierd);
    let mut reader = open(&path, Format::Tierd).unwrap();
    let events: Vec<Event> = reader.by_ref().map(|e| e.unwrap()).collect();
    assert_eq!(
        events,
        vec![
            ev(0, 0, Op::Write, 0, 4096),
            ev(0, 0, Op::Read, 511, 1),
            ev(250, 0, Op::Trim, 1 << 40, 1 << 30),
            ev(250, 0, Op::Read, 512, 512),
            ev(u64::MAX / 2 - 1_000, 0, Op::Write, u64::MAX - 7, 7),
        ]
    );
    assert_eq!(reader.devices(), ["vol1"]);
    assert_eq!(reader.torn_tails(), 0);
    // Header: magic then the first record's time.
    let bytes = fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"TIERDTR1");
    assert_eq!(u64::from_le_bytes(bytes[8..16].try_into().unwrap()), 1_000);
}

#[test]
fn recorder_rotation_bounds_disk_use_and_keeps_the_latest_records() {
    let dir = tempfile::tempdir().unwrap();
    let (max_bytes, keep) = (300u64, 3usize);
    let mut rec = Recorder::create(dir.path(), "db", max_bytes, keep).unwrap();
    let written: Vec<_> = (0..2_000).map(sample).collect();
    for &(t, op, off, len) in &written {
        rec.record(t, op, off, len).unwrap();
    }
    rec.flush().unwrap();

    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["db.trace", "db.trace.1", "db.trace.2", "db.trace.3"]
    );
    let mut total = 0;
    for name in &names {
        let path = dir.path().join(name);
        let size = fs::metadata(&path).unwrap().len();
        assert!(size <= max_bytes, "{name} is {size} bytes");
        total += size;
        // Every file stands alone.
        assert_eq!(detect(&path).unwrap(), Format::Tierd);
        let alone = read_all(open(&path, Format::Tierd).unwrap());
        assert!(!alone.is_empty());
    }
    assert!(
        total <= (keep as u64 + 1) * max_bytes,
        "{total} bytes in all"
    );

    let mut reader = read_recorded(dir.path(), "db").unwrap();
    let events: Vec<Event> = reader.by_ref().map(|e| e.unwrap()).collect();
    assert!(events.len() > 20 && events.len() < written.len());
    let tail = &written[written.len() - events.len()..];
    let t_first = tail[0].0;
    for (event, &(t, op, off, len)) in events.iter().zip(tail) {
        assert_eq!(*event, ev(t - t_first, 0, op, off, len));
    }
    assert_eq!(reader.devices(), ["db"]);
    assert_eq!(reader.out_of_order(), 0);
}

#[test]
fn recorder_with_keep_zero_keeps_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::create(dir.path(), "v", 100, 0).unwrap();
    for i in 0..500 {
        let (t, op, off, len) = sample(i);
        rec.record(t, op, off, len).unwrap();
    }
    rec.flush().unwrap();
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["v.trace"]);
    let events = read_all(read_recorded(dir.path(), "v").unwrap());
    assert_eq!(events.last().unwrap().offset, sample(499).2);
}

#[test]
fn recorder_restart_rotates_the_old_file_and_trims_stale_ones() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut rec = Recorder::create(dir.path(), "v", 1 << 20, 5).unwrap();
        rec.record(10, Op::Write, 0, 512).unwrap();
        rec.record(20, Op::Write, 512, 512).unwrap();
        // Dropped without flush: BufWriter flushes on drop.
    }
    write(dir.path(), "v.trace.9", b"stale");
    write(dir.path(), "v.trace.x", b"not ours");
    write(dir.path(), "other.trace.1", b"not ours");
    let mut rec = Recorder::create(dir.path(), "v", 1 << 20, 2).unwrap();
    assert!(!dir.path().join("v.trace.9").exists());
    assert!(dir.path().join("v.trace.x").exists());
    assert!(dir.path().join("other.trace.1").exists());
    assert!(dir.path().join("v.trace.1").exists());
    rec.record(1_000, Op::Read, 0, 512).unwrap();
    rec.flush().unwrap();
    let events = read_all(read_recorded(dir.path(), "v").unwrap());
    assert_eq!(
        events,
        vec![
            ev(0, 0, Op::Write, 0, 512),
            ev(10, 0, Op::Write, 512, 512),
            ev(990, 0, Op::Read, 0, 512),
        ]
    );
}

#[test]
fn recorder_refuses_unusable_volume_names() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["", ".", "..", "a/b"] {
        assert!(matches!(
            Recorder::create(dir.path(), bad, 100, 1),
            Err(TraceError::Io { .. })
        ));
    }
}

#[test]
fn recorded_torn_tail_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::create(dir.path(), "t", 1 << 20, 1).unwrap();
    for i in 0..10 {
        rec.record(i, Op::Write, i << 30, 8 << 20).unwrap();
    }
    rec.flush().unwrap();
    let path = rec.path();
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let mut reader = open(&path, Format::Tierd).unwrap();
    assert_eq!(read_all_from(&mut reader).len(), 9);
    assert_eq!(reader.torn_tails(), 1);
    // A header cut short, and an empty file from a recorder that never recorded.
    fs::write(&path, &bytes[..11]).unwrap();
    let mut reader = open(&path, Format::Tierd).unwrap();
    assert!(reader.next().is_none());
    assert_eq!(reader.torn_tails(), 1);
    fs::write(&path, b"").unwrap();
    let mut reader = open(&path, Format::Tierd).unwrap();
    assert!(reader.next().is_none());
    assert_eq!(reader.torn_tails(), 0);
}

#[test]
fn recorded_corruption_is_an_error_that_ends_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"TIERDTR1".to_vec();
    bytes.extend_from_slice(&5u64.to_le_bytes());
    bytes.extend_from_slice(&[0, 1, 0, 8]); // write 0 + 8 sectors at t=5
    bytes.extend_from_slice(&[2, 0x13, 0, 8]); // bad op byte
    bytes.extend_from_slice(&[0, 1, 0, 8]);
    let path = write(dir.path(), "bad.trace", &bytes);
    let results: Vec<_> = open(&path, Format::Tierd).unwrap().collect();
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(*results[0].as_ref().unwrap(), ev(0, 0, Op::Write, 0, 4096));
    match &results[1] {
        Err(TraceError::Parse {
            line: 2, reason, ..
        }) => assert!(reason.contains("0x13"), "{reason}"),
        other => panic!("{other:?}"),
    }

    let path = write(dir.path(), "magic.trace", b"TIERDTR2\0\0\0\0\0\0\0\0");
    let results: Vec<_> = open(&path, Format::Tierd).unwrap().collect();
    assert!(
        matches!(&results[..], [Err(TraceError::Parse { line: 0, .. })]),
        "{results:?}"
    );

    let mut bytes = b"TIERDTR1".to_vec();
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.extend_from_slice(&[0xff; 11]);
    let path = write(dir.path(), "varint.trace", &bytes);
    let results: Vec<_> = open(&path, Format::Tierd).unwrap().collect();
    assert!(
        matches!(&results[..], [Err(TraceError::Parse { reason, .. })] if reason.contains("overflows")),
        "{results:?}"
    );
}

#[test]
fn read_recorded_with_nothing_recorded_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    match read_recorded(dir.path(), "ghost") {
        Err(TraceError::Io { path, source }) => {
            assert!(path.ends_with("ghost.trace"), "{path}");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn recorded_volume_names_come_from_the_file_name() {
    assert_eq!(native::volume_from_path(Path::new("/x/vol1.trace")), "vol1");
    assert_eq!(
        native::volume_from_path(Path::new("/x/vol1.trace.12")),
        "vol1"
    );
    assert_eq!(
        native::volume_from_path(Path::new("/x/my.vol.trace")),
        "my.vol"
    );
    assert_eq!(
        native::volume_from_path(Path::new("/x/capture.bin")),
        "capture"
    );
}
