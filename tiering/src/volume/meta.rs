//! What a volume is: its persisted metadata and the rules its name and geometry
//! obey.

use serde::{Deserialize, Serialize};

use crate::error::{Result, TierError};
use policy::units::format_size;

/// Logical block size: every volume is a whole number of these.
pub const BLOCK_SIZE: u64 = 4096;
pub const DEFAULT_EXTENT_SIZE: u64 = 4 << 20;
pub const MIN_EXTENT_SIZE: u64 = 1 << 20;
pub const MAX_EXTENT_SIZE: u64 = 64 << 20;
pub const MAX_NAME_LEN: usize = 128;
/// Far beyond any real volume, and small enough that offsets never overflow.
pub const MAX_VOLUME_SIZE: u64 = 1 << 50;

/// A volume's persisted description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMeta {
    /// Never reused, so a deleted and re-created name starts with no heat and no objects.
    pub id: u64,
    pub name: String,
    pub size: u64,
    pub class: String,
    pub extent_size: u64,
    pub created_ms: u64,
    /// Record this volume's access trace: Some overrides the class's `record_trace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_trace: Option<bool>,
    /// The volume's top layer, once it is not the volume's first (after a
    /// snapshot, revert or clone; see `layer`). None: the layer with the
    /// volume's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<u64>,
    /// The volume's identity in object stores, across nodes: 32 hex digits,
    /// random at create, kept by a restore without `--as`. Volumes from
    /// before it existed get one when loaded.
    #[serde(default)]
    pub uid: String,
    /// The fencing generation this node holds for the volume in its
    /// backend (see `backup::fence`); 0 until the first upload claims one.
    #[serde(default)]
    pub generation: u64,
    /// Another node took a newer generation: this one no longer writes the
    /// volume or its objects.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fenced: bool,
}

/// A fresh volume identity.
pub fn new_uid() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl VolumeMeta {
    pub fn extent_count(&self) -> u64 {
        self.size.div_ceil(self.extent_size)
    }

    pub fn top_layer(&self) -> u64 {
        self.layer.unwrap_or(self.id)
    }

    /// Blocks per extent.
    pub fn extent_blocks(&self) -> u32 {
        (self.extent_size / BLOCK_SIZE) as u32
    }
}

/// Names become NBD export names and appear in object keys and metrics labels,
/// so they are short and plain: letters, digits, '.', '_' and '-', starting with
/// a letter or digit.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason: String| {
        Err(TierError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return bad(format!(
            "is {} bytes long; at most {MAX_NAME_LEN} allowed",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
    {
        let what = if c == '/' || c == '\\' {
            "a path separator"
        } else {
            "a character"
        };
        return bad(format!(
            "contains {what} {c:?}; only letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad("must start with a letter or digit".into());
    }
    Ok(())
}

pub fn validate_size(size: u64) -> Result<()> {
    if size == 0 {
        return Err(TierError::InvalidArgument(
            "size must be greater than zero".into(),
        ));
    }
    if !size.is_multiple_of(BLOCK_SIZE) {
        return Err(TierError::InvalidArgument(format!(
            "size {size} is not a multiple of the {BLOCK_SIZE}-byte block size"
        )));
    }
    if size > MAX_VOLUME_SIZE {
        return Err(TierError::InvalidArgument(format!(
            "size {} is larger than the maximum of {}",
            format_size(size),
            format_size(MAX_VOLUME_SIZE)
        )));
    }
    Ok(())
}

pub fn validate_extent_size(extent_size: u64) -> Result<()> {
    if !extent_size.is_power_of_two() || !(MIN_EXTENT_SIZE..=MAX_EXTENT_SIZE).contains(&extent_size)
    {
        return Err(TierError::InvalidArgument(format!(
            "extent size {extent_size} must be a power of two from 1 MiB to 64 MiB"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("pvc-1234.data_0").is_ok());
        for (name, want) in [
            ("", "empty"),
            ("a/b", "path separator"),
            ("..", "start with"),
            ("-x", "start with"),
            ("sp ace", "character ' '"),
        ] {
            let e = validate_name(name).unwrap_err().to_string();
            assert!(e.contains(want), "{name:?}: {e}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(validate_name(&long)
            .unwrap_err()
            .to_string()
            .contains("at most"));
    }

    #[test]
    fn geometry() {
        assert!(validate_size(10 << 30).is_ok());
        assert!(validate_size(0).is_err());
        assert!(validate_size(4097)
            .unwrap_err()
            .to_string()
            .contains("multiple"));
        assert!(validate_extent_size(4 << 20).is_ok());
        assert!(validate_extent_size(3 << 20).is_err());
        assert!(validate_extent_size(128 << 20).is_err());
        let m = VolumeMeta {
            id: 1,
            name: "v".into(),
            size: (9 << 20) + 4096,
            class: "c".into(),
            extent_size: 4 << 20,
            created_ms: 0,
            record_trace: None,
            layer: None,
            uid: String::new(),
            generation: 0,
            fenced: false,
        };
        assert_eq!(m.extent_count(), 3);
    }
}
