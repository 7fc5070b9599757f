//! Where things live in a bucket (docs/backups.md). Every key tierd writes
//! is one of these, and everything that reads keys back (GC, backup
//! listing, the scavenger) parses them here:
//!
//! ```text
//! data/<volume uid>/<generation>/<layer>/<extent>/<written ms>   extent objects
//! generations/<volume uid>/<generation>                          fencing claims
//! layers/<volume uid>/<layer>/<backup id>.idx                    layer indexes
//! backups/<volume name>/<volume uid>/<backup id>.json            manifests
//! <layer>/<extent>/<written ms>                                  objects from before volume uids
//! ```
//!
//! Hex fields are fixed width, so keys sort in numeric order. A data key
//! is never written twice: its generation is one only this node holds for
//! the volume, and its time is strictly increasing on the node.

/// The fencing generation as it appears in keys.
pub fn generation_field(g: u64) -> String {
    format!("{g:08x}")
}

/// The prefix of every data object.
pub const DATA_PREFIX: &str = "data/";

/// An extent object of `layer` (its bucket name) of volume `uid`, written
/// under fencing generation `generation` at `written_ms`.
pub fn data_key(uid: &str, generation: u64, layer: &str, extent: u64, written_ms: u64) -> String {
    format!(
        "{DATA_PREFIX}{uid}/{}/{layer}/{extent:012x}/{written_ms:016x}",
        generation_field(generation)
    )
}

/// What a data key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKey {
    pub uid: String,
    pub generation: u64,
    pub layer: String,
    pub extent: u64,
    pub written_ms: u64,
}

pub fn parse_data_key(key: &str) -> Option<DataKey> {
    let mut it = key.split('/');
    if it.next()? != "data" {
        return None;
    }
    let uid = it.next()?.to_string();
    let generation = u64::from_str_radix(it.next()?, 16).ok()?;
    let layer = it.next()?.to_string();
    let extent = u64::from_str_radix(it.next()?, 16).ok()?;
    let written_ms = u64::from_str_radix(it.next()?, 16).ok()?;
    (it.next().is_none() && !uid.is_empty() && !layer.is_empty()).then_some(DataKey {
        uid,
        generation,
        layer,
        extent,
        written_ms,
    })
}

/// (layer id, extent, written ms) of an object key from before volume uids.
pub fn parse_legacy_key(key: &str) -> Option<(u64, u64, u64)> {
    let mut it = key.split('/');
    let v = u64::from_str_radix(it.next()?, 16).ok()?;
    let e = u64::from_str_radix(it.next()?, 16).ok()?;
    let g = u64::from_str_radix(it.next()?, 16).ok()?;
    it.next().is_none().then_some((v, e, g))
}

/// The prefix of a volume's fencing claims.
pub fn generations_prefix(uid: &str) -> String {
    format!("generations/{uid}/")
}

pub fn generation_key(uid: &str, generation: u64) -> String {
    format!(
        "{}{}",
        generations_prefix(uid),
        generation_field(generation)
    )
}

/// The generation a claim key names.
pub fn parse_generation_key(key: &str) -> Option<(String, u64)> {
    let rest = key.strip_prefix("generations/")?;
    let (uid, g) = rest.split_once('/')?;
    Some((uid.to_string(), u64::from_str_radix(g, 16).ok()?))
}

pub fn layer_index_key(uid: &str, layer: &str, backup: &str) -> String {
    format!("layers/{uid}/{layer}/{backup}.idx")
}

pub const BACKUPS_PREFIX: &str = "backups/";

/// The prefix of every manifest of volume `name` (under any uid).
pub fn backups_of(name: &str) -> String {
    format!("{BACKUPS_PREFIX}{name}/")
}

pub fn manifest_key(name: &str, uid: &str, backup: &str) -> String {
    format!("{}{uid}/{backup}.json", backups_of(name))
}

/// (volume name, uid, backup id) of a manifest key.
pub fn parse_manifest_key(key: &str) -> Option<(String, String, String)> {
    let rest = key.strip_prefix(BACKUPS_PREFIX)?;
    let mut it = rest.split('/');
    let name = it.next()?.to_string();
    let uid = it.next()?.to_string();
    let id = it.next()?.strip_suffix(".json")?.to_string();
    it.next().is_none().then_some((name, uid, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back() {
        let k = data_key("ab12", 3, "n1-0000000000000007", 9, 1_700_000_000_000);
        assert_eq!(
            k,
            "data/ab12/00000003/n1-0000000000000007/000000000009/0000018bcfe56800"
        );
        let d = parse_data_key(&k).unwrap();
        assert_eq!((d.uid.as_str(), d.generation, d.extent), ("ab12", 3, 9));
        assert_eq!(d.layer, "n1-0000000000000007");
        assert_eq!(d.written_ms, 1_700_000_000_000);
        assert!(parse_data_key("data/ab12/3/l/9").is_none());
        assert!(parse_legacy_key(&k).is_none());
        assert_eq!(
            parse_legacy_key("0000000000000001/000000000003/0000000000000007"),
            Some((1, 3, 7))
        );
        assert!(parse_legacy_key("junk").is_none());
        assert!(parse_legacy_key("1/2/3/4").is_none());
        assert_eq!(
            parse_generation_key(&generation_key("ab12", 17)),
            Some(("ab12".into(), 17))
        );
        assert_eq!(
            parse_manifest_key(&manifest_key("db", "ab12", "20261204-101500-123")),
            Some(("db".into(), "ab12".into(), "20261204-101500-123".into()))
        );
        assert!(parse_manifest_key("backups/db/ab12/x.idx").is_none());
        // Keys of one volume sort by generation, then layer, extent and time.
        assert!(data_key("u", 2, "l", 0, 0) > data_key("u", 1, "l", 99, 99));
    }
}
