//! The layout of a tiered extent's object: the extent cut into frames of
//! `frame_size` uncompressed bytes, each stored raw or as its own zstd frame,
//! concatenated. The frame table (stored lengths and xxh3 checksums of the
//! stored bytes) lives in the extent record, so any run of frames can be fetched
//! with one ranged GET and verified before a byte of it is served.

use backends::Body;
use bytes::Bytes;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::extent_map::{Compression, Frame};

/// zstd level: fast, since uploads sit on the migration path.
const ZSTD_LEVEL: i32 = 3;

/// An encoded extent: the object body and its frame table.
pub struct Encoded {
    pub body: Bytes,
    pub frames: Vec<Frame>,
    /// xxh3 of the whole uncompressed extent.
    pub checksum: u64,
}

pub fn encode(
    data: &[u8],
    frame_size: usize,
    compression: Compression,
) -> std::io::Result<Encoded> {
    let mut body = Vec::with_capacity(match compression {
        Compression::None => data.len(),
        Compression::Zstd => data.len() / 2,
    });
    let mut frames = Vec::with_capacity(data.len().div_ceil(frame_size));
    for chunk in data.chunks(frame_size) {
        let stored: std::borrow::Cow<[u8]> = match compression {
            Compression::None => chunk.into(),
            Compression::Zstd => zstd::bulk::compress(chunk, ZSTD_LEVEL)?.into(),
        };
        frames.push(Frame {
            stored_len: stored.len() as u32,
            checksum: xxh3_64(&stored),
        });
        body.extend_from_slice(&stored);
    }
    Ok(Encoded {
        body: Bytes::from(body),
        frames,
        checksum: xxh3_64(data),
    })
}

/// Verifies and decodes frames `first..first + frames.len()` whose stored bytes
/// are `stored` (concatenated); `extent_len` is the extent's uncompressed length.
/// Returns the uncompressed bytes, or why they cannot be trusted.
pub fn decode(
    stored: &[u8],
    frames: &[Frame],
    first: usize,
    frame_size: usize,
    extent_len: usize,
    compression: Compression,
) -> Result<Vec<u8>, String> {
    let want: usize = frames.iter().map(|f| f.stored_len as usize).sum();
    if stored.len() != want {
        return Err(format!(
            "object returned {} bytes where {want} were expected",
            stored.len()
        ));
    }
    let mut out = Vec::with_capacity(frames.len() * frame_size);
    let mut pos = 0;
    for (i, f) in frames.iter().enumerate() {
        let bytes = &stored[pos..pos + f.stored_len as usize];
        pos += f.stored_len as usize;
        if xxh3_64(bytes) != f.checksum {
            return Err(format!("checksum mismatch in frame {}", first + i));
        }
        let expect = frame_size.min(extent_len.saturating_sub((first + i) * frame_size));
        match compression {
            Compression::None => {
                if bytes.len() != expect {
                    return Err(format!(
                        "frame {} holds {} bytes, expected {expect}",
                        first + i,
                        bytes.len()
                    ));
                }
                out.extend_from_slice(bytes);
            }
            Compression::Zstd => {
                let d = zstd::bulk::decompress(bytes, expect)
                    .map_err(|e| format!("frame {}: zstd: {e}", first + i))?;
                if d.len() != expect {
                    return Err(format!(
                        "frame {} decompressed to {} bytes, expected {expect}",
                        first + i,
                        d.len()
                    ));
                }
                out.extend_from_slice(&d);
            }
        }
    }
    Ok(out)
}

/// [`decode`] of a whole object's frames, `stored` being exactly their
/// bytes in the segments they arrived in. Frames stored uncompressed are the
/// extent itself: once every frame's length and checksum hold, `stored` is
/// returned as it is, with no copy.
pub fn decode_whole(
    stored: Body,
    frames: &[Frame],
    frame_size: usize,
    extent_len: usize,
    compression: Compression,
) -> Result<Body, String> {
    if compression != Compression::None {
        return decode(
            &stored.into_bytes(),
            frames,
            0,
            frame_size,
            extent_len,
            compression,
        )
        .map(Body::from);
    }
    let want: usize = frames.iter().map(|f| f.stored_len as usize).sum();
    if stored.len() != want || want != extent_len {
        return Err(format!(
            "object returned {} bytes where {want} were expected for a {extent_len}-byte extent",
            stored.len()
        ));
    }
    let mut pos = 0;
    for (i, f) in frames.iter().enumerate() {
        let len = f.stored_len as usize;
        let expect = frame_size.min(extent_len.saturating_sub(i * frame_size));
        if len != expect {
            return Err(format!("frame {i} holds {len} bytes, expected {expect}"));
        }
        if checksum(&stored, pos..pos + len) != f.checksum {
            return Err(format!("checksum mismatch in frame {i}"));
        }
        pos += len;
    }
    Ok(stored)
}

/// xxh3 of all of `body`, as of the same bytes in one buffer.
pub fn body_checksum(body: &Body) -> u64 {
    checksum(body, 0..body.len())
}

/// xxh3 of bytes `range` of `body`, across the segments that hold them.
fn checksum(body: &Body, range: std::ops::Range<usize>) -> u64 {
    let mut chunks = body.chunks(range);
    match (chunks.next(), chunks.next()) {
        (None, _) => xxh3_64(&[]),
        (Some(one), None) => xxh3_64(one),
        (Some(a), Some(b)) => {
            let mut h = Xxh3::new();
            h.update(a);
            h.update(b);
            chunks.for_each(|c| h.update(c));
            h.digest()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| ((i * 7919) % 251) as u8 ^ ((i >> 12) as u8))
            .collect()
    }

    #[test]
    fn round_trip_every_frame_run() {
        for comp in [Compression::None, Compression::Zstd] {
            let d = data((1 << 20) + 5000);
            let e = encode(&d, 64 << 10, comp).unwrap();
            assert_eq!(e.frames.len(), 17);
            let offset = |i: usize| {
                e.frames[..i]
                    .iter()
                    .map(|f| f.stored_len as usize)
                    .sum::<usize>()
            };
            for (a, b) in [(0, 17), (3, 4), (16, 17), (5, 9)] {
                let got = decode(
                    &e.body[offset(a)..offset(b)],
                    &e.frames[a..b],
                    a,
                    64 << 10,
                    d.len(),
                    comp,
                )
                .unwrap();
                let end = (b * (64 << 10)).min(d.len());
                assert!(got == d[a * (64 << 10)..end], "{comp:?} frames {a}..{b}");
            }
        }
        let z = encode(&vec![0u8; 1 << 20], 64 << 10, Compression::Zstd).unwrap();
        assert!(z.body.len() < 4096, "zeros compress: {}", z.body.len());
    }

    #[test]
    fn corruption_is_detected_never_served() {
        let d = data(256 << 10);
        for comp in [Compression::None, Compression::Zstd] {
            let e = encode(&d, 64 << 10, comp).unwrap();
            let mut bad = e.body.to_vec();
            let mid = bad.len() / 2;
            bad[mid] ^= 1;
            let err = decode(&bad, &e.frames, 0, 64 << 10, d.len(), comp).unwrap_err();
            assert!(err.contains("checksum mismatch"), "{err}");
            let err = decode(
                &e.body[..e.body.len() - 1],
                &e.frames,
                0,
                64 << 10,
                d.len(),
                comp,
            )
            .unwrap_err();
            assert!(err.contains("expected"), "{err}");
            // The whole-object path checks the same, and serves no copy of
            // an uncompressed object.
            let bad = Body::from(bad);
            let err = decode_whole(bad, &e.frames, 64 << 10, d.len(), comp).unwrap_err();
            assert!(err.contains("checksum mismatch"), "{err}");
            let short = Body::from(e.body.slice(..e.body.len() - 1));
            let err = decode_whole(short, &e.frames, 64 << 10, d.len(), comp).unwrap_err();
            assert!(err.contains("expected"), "{err}");
            let whole = Body::from(e.body.clone());
            let got = decode_whole(whole, &e.frames, 64 << 10, d.len(), comp).unwrap();
            assert!(got == d);
            if comp == Compression::None {
                let ptr = got.into_bytes().as_ptr();
                assert_eq!(ptr, e.body.as_ptr(), "no copy");
            }
        }
    }

    /// A body cut into pieces that straddle frame boundaries, as a socket
    /// delivers it.
    fn pieces(body: &Bytes, step: usize) -> Body {
        Body::from_segments(
            (0..body.len())
                .step_by(step)
                .map(|at| body.slice(at..(at + step).min(body.len()))),
        )
    }

    #[test]
    fn frames_check_across_the_pieces_a_body_arrived_in() {
        let d = data(256 << 10);
        for comp in [Compression::None, Compression::Zstd] {
            let e = encode(&d, 64 << 10, comp).unwrap();
            for step in [1000, 16 << 10, 100 << 10] {
                let body = pieces(&e.body, step);
                let got = decode_whole(body.clone(), &e.frames, 64 << 10, d.len(), comp).unwrap();
                assert!(got == d, "{comp:?} in {step}-byte pieces");
                if comp == Compression::None {
                    assert_eq!(got.segment_count(), body.segment_count(), "no copy");
                }
                // One flipped bit in the middle of the second frame.
                let mut bad = e.body.to_vec();
                let f = &e.frames;
                bad[f[0].stored_len as usize + f[1].stored_len as usize / 2] ^= 4;
                let bad = pieces(&Bytes::from(bad), step);
                let err = decode_whole(bad, &e.frames, 64 << 10, d.len(), comp).unwrap_err();
                assert!(err.contains("checksum mismatch"), "{err}");
            }
        }
    }
}
