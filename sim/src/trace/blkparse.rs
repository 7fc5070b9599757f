//! blkparse's default text output, e.g.
//! `  8,0    3        1     0.000000000   697  Q  WS 223490 + 8 [kjournald]`
//! (device maj,min; CPU; sequence; seconds; PID; action; RWBS; sector + count
//! [process]).
//!
//! Owns the parsing of one line. Only `Q` (queued) actions become accesses,
//! so each request is counted once however the block layer splits, merges or
//! completes it. RWBS with `D` is a Trim (discard), else with `W` a Write,
//! else with `R` a Read; anything else (`N`, flush-only `FN`, ...) is skipped.
//! Invariant: every line is either an event line (first token `maj,min`,
//! which must then be well formed), one of blkparse's summary lines (a word
//! followed by a colon, such as `CPU0 (8,0):`, `Total (8,0):`, ` Reads
//! Queued: ...`, `Events (8,0): ...`), blank, or an error.

use super::{Devices, Op, Raw};

const SECTOR: u64 = 512;

/// `maj,min` with both parts decimal.
fn is_device(tok: &str) -> bool {
    match tok.split_once(',') {
        Some((maj, min)) => {
            !maj.is_empty()
                && !min.is_empty()
                && maj.bytes().all(|b| b.is_ascii_digit())
                && min.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// blkparse's per-CPU / per-device statistics and footer lines, which all
/// start with a word and carry a colon, plus the `Input file ... added`
/// notice some versions print first.
fn is_summary(trimmed: &str) -> bool {
    let starts_with_letter = trimmed
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic());
    (starts_with_letter && trimmed.contains(':')) || trimmed.starts_with("Input file ")
}

/// Parses `SECONDS.FRACTION` into whole milliseconds without going through
/// floating point, so large timestamps keep their precision.
fn parse_ms(tok: &str) -> Option<u64> {
    let (secs, frac) = tok.split_once('.').unwrap_or((tok, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let mut ms = 0u64;
    for i in 0..3 {
        let digit = frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
        ms = ms * 10 + digit;
    }
    secs.checked_mul(1000)?.checked_add(ms)
}

/// True if `line` is a blkparse event line (for [`super::detect`]).
pub(crate) fn looks_like(line: &str) -> bool {
    let mut tok = line.split_ascii_whitespace();
    let (Some(dev), Some(cpu), Some(seq), Some(time), Some(_pid), Some(_action)) = (
        tok.next(),
        tok.next(),
        tok.next(),
        tok.next(),
        tok.next(),
        tok.next(),
    ) else {
        return false;
    };
    is_device(dev)
        && cpu.parse::<u32>().is_ok()
        && seq.parse::<u64>().is_ok()
        && parse_ms(time).is_some()
}

/// `Ok(None)` for lines that are not queued data requests.
pub(crate) fn parse(line: &str, devices: &mut Devices) -> Result<Option<Raw>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let mut tok = trimmed.split_ascii_whitespace();
    let dev = tok.next().unwrap_or_default();
    if !is_device(dev) {
        if is_summary(trimmed) {
            return Ok(None);
        }
        return Err(
            "neither a blkparse event line (starting with maj,min) nor a summary line".to_string(),
        );
    }
    let mut field = |name: &str| {
        tok.next()
            .ok_or_else(|| format!("event line ends before the {name} field"))
    };
    let cpu = field("CPU")?;
    cpu.parse::<u32>()
        .map_err(|_| format!("CPU {cpu:?} is not a number"))?;
    let seq = field("sequence")?;
    seq.parse::<u64>()
        .map_err(|_| format!("sequence {seq:?} is not a number"))?;
    let time = field("time")?;
    let abs_ms =
        parse_ms(time).ok_or_else(|| format!("time {time:?} is not SECONDS.NANOSECONDS"))?;
    let pid = field("PID")?;
    pid.parse::<u64>()
        .map_err(|_| format!("PID {pid:?} is not a number"))?;
    let action = field("action")?;
    if action != "Q" {
        return Ok(None);
    }
    let rwbs = field("RWBS")?;
    let op = if rwbs.contains('D') {
        Op::Trim
    } else if rwbs.contains('W') {
        Op::Write
    } else if rwbs.contains('R') {
        Op::Read
    } else {
        return Ok(None);
    };
    let sector = match tok.next() {
        Some(s) if !s.starts_with('[') => s,
        // A queued flush (e.g. `FWS`) carries no sector range: no data moves.
        _ if rwbs.contains('F') => return Ok(None),
        _ => return Err(format!("queued {rwbs} request without a sector range")),
    };
    let sector: u64 = sector
        .parse()
        .map_err(|_| format!("sector {sector:?} is not a number"))?;
    if tok.next() != Some("+") {
        return Err("expected `+ COUNT` after the sector".to_string());
    }
    let count = tok.next().ok_or("missing sector count after `+`")?;
    let count: u64 = count
        .parse()
        .map_err(|_| format!("sector count {count:?} is not a number"))?;
    let (Some(offset), Some(len)) = (sector.checked_mul(SECTOR), count.checked_mul(SECTOR)) else {
        return Err("sector range overflows a 64-bit byte offset".to_string());
    };
    if offset.checked_add(len).is_none() {
        return Err("sector range overflows a 64-bit byte offset".to_string());
    }
    let device = devices.intern(dev)?;
    Ok(Some(Raw {
        abs_ms,
        device,
        op,
        offset,
        len,
    }))
}
