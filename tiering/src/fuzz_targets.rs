//! What the fuzz targets in `fuzz/` run, here so that the corpus replay test
//! (`scripts/test.sh` runs it in every CI run) and `cargo fuzz` run the same
//! code. Each entry takes arbitrary bytes and must neither panic nor hang;
//! anything it refuses, it refuses with an error.
//!
//! Owns: turning fuzz input into calls of the parsers that read what clients,
//! operators and the object store send: the NBD handshake and request
//! header, the frame codec, the configuration (TOML) and the trace readers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crate::codec;
use crate::config::Config;
use crate::extent_map::{Compression, Frame};
use crate::nbd::handshake::{self, Tls};
use crate::nbd::proto::{Request, REQUEST_LEN};
use crate::volume::{CreateVolume, Volumes};

/// A daemon's volume registry (one 1 MiB volume "v") for the handshake
/// target, made once per process in a temporary directory.
struct Fixture {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    volumes: Volumes,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("fuzz fixture: temp dir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("fuzz fixture: runtime");
        let config = Config::embedded();
        let heat_cfg = heatmap::HeatConfig::default();
        let db = crate::db::open(&dir.path().join("db"), &heat_cfg).expect("fuzz fixture: db");
        let clock: Arc<dyn clock::Clock> = Arc::new(clock::ManualClock::new(1_000));
        let heat = Arc::new(
            heatmap::HeatMap::new(db.clone(), clock.clone(), &heat_cfg)
                .expect("fuzz fixture: heat"),
        );
        let engine = Arc::new(crate::engine::Engine::new(
            Arc::new(config.clone()),
            BTreeMap::new(),
            crate::tasks::Tasks::new(rt.handle().clone()),
            crate::metrics::TierMetrics::unregistered().expect("fuzz fixture: metrics"),
            clock.clone(),
        ));
        let volumes = Volumes::open(db, heat, engine, clock, dir.path()).expect("fuzz fixture");
        volumes
            .create(
                CreateVolume {
                    name: "v".into(),
                    size: 1 << 20,
                    class: "default".into(),
                    extent_size: Some(1 << 20),
                },
                &config,
            )
            .expect("fuzz fixture: volume");
        Fixture {
            _dir: dir,
            rt,
            volumes,
        }
    })
}

/// The handshake as a client sending `data` would drive it (the greeting's
/// flags, then options), with and without TLS required; then, for the
/// bytes after the first 28, a request header.
pub fn nbd(data: &[u8]) {
    let f = fixture();
    for tls in [Tls::Off, Tls::Required] {
        let input = std::io::Cursor::new(data.to_vec());
        let mut stream = tokio::io::join(input, tokio::io::sink());
        f.rt.block_on(async {
            let run = async {
                let no_zeroes = handshake::greet(&mut stream).await?;
                handshake::negotiate(&mut stream, &f.volumes, "fuzz", no_zeroes, tls).await
            };
            // Input runs out, so haggling ends; the timeout only guards a hang.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), run)
                .await
                .expect("the handshake hung on finite input");
        });
    }
    if let Some(header) = data.get(..REQUEST_LEN) {
        let mut h = [0u8; REQUEST_LEN];
        h.copy_from_slice(header);
        let _ = Request::parse(&h);
    }
}

/// Decoding stored frames: the first bytes pick the codec, the frame size
/// and a frame table; the rest is what the object store returned.
pub fn codec(data: &[u8]) {
    let (head, body) = data.split_at(data.len().min(4));
    let mut head = head.to_vec();
    head.resize(4, 0);
    let compression = if head[0] & 1 == 0 {
        Compression::None
    } else {
        Compression::Zstd
    };
    let frame_size = 4096usize << (head[1] % 5);
    let frames_n = (head[2] % 8) as usize + 1;
    let extent_len = frame_size * frames_n - (head[3] as usize % frame_size);
    // Split the body into the frames the table claims, with the checksums of
    // what is there (so decoding gets past them) unless the low bit says not.
    let mut frames = Vec::with_capacity(frames_n);
    let mut pos = 0;
    for i in 0..frames_n {
        let want = if i + 1 == frames_n {
            body.len().saturating_sub(pos)
        } else {
            (body.len() / frames_n).min(body.len() - pos)
        };
        let bytes = &body[pos..pos + want];
        pos += want;
        let checksum = xxhash_rust::xxh3::xxh3_64(bytes) ^ u64::from(head[0] >> 7);
        frames.push(Frame {
            stored_len: want as u32,
            checksum,
        });
    }
    let _ = codec::decode(body, &frames, 0, frame_size, extent_len, compression);
    // The body in the pieces a socket might deliver, cut where the input says.
    let body = bytes::Bytes::copy_from_slice(body);
    let step = usize::from(head[1]) * 61 + 1;
    let pieces = (0..body.len())
        .step_by(step)
        .map(|at| body.slice(at..(at + step).min(body.len())));
    let _ = codec::decode_whole(
        backends::Body::from_segments(pieces),
        &frames,
        frame_size,
        extent_len,
        compression,
    );
}

/// The configuration loader, on the bytes as a TOML file.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = Config::parse(&text, "fuzz.toml");
}

/// The trace readers (MSR, blkparse, tierd's own), on the bytes as a file;
/// at most 10,000 accesses are read from one input.
pub fn trace(data: &[u8]) {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("fuzz: temp dir"));
    let path: PathBuf = dir
        .path()
        .join(format!("t{:?}.trace", std::thread::current().id()).replace(['(', ')'], ""));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    for format in [
        sim::trace::Format::Msr,
        sim::trace::Format::Blkparse,
        sim::trace::Format::Tierd,
    ] {
        if let Ok(mut reader) = sim::trace::open(&path, format) {
            for _ in 0..10_000 {
                match reader.next() {
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
        }
    }
    let _ = sim::trace::detect(&path);
}

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target by name, for the replay test and `fuzz/`.
pub const TARGETS: [(&str, Target); 4] = [
    ("nbd", nbd),
    ("codec", codec),
    ("config", config),
    ("trace", trace),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input saved under `fuzz/corpus/<target>/` (what `cargo fuzz`
    /// found interesting, and the crashes it found, once fixed) still runs
    /// without a panic.
    #[test]
    fn fuzz_corpora_replay_without_a_panic() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let mut ran = 0;
        for (name, target) in TARGETS {
            let dir = root.join(name);
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()));
            for entry in entries.flatten() {
                let data = std::fs::read(entry.path()).unwrap_or_default();
                target(&data);
                ran += 1;
            }
        }
        assert!(ran >= TARGETS.len(), "only {ran} corpus inputs");
    }
}
