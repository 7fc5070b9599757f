//! The little-endian binary encoding shared by extent records, object
//! headers and layer indexes: fixed-width integers, length-prefixed strings
//! and block sets, read back with bounds checks so that truncated or
//! damaged bytes give an error, never a panic.

use crate::blocks::Blocks;

/// Appends fields to a byte vector.
pub struct Writer<'a>(pub &'a mut Vec<u8>);

impl Writer<'_> {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A string of at most 64 KiB - 1 bytes, length first (longer ones are
    /// cut; every string written here is a name or key well below that).
    pub fn str(&mut self, s: &str) -> &mut Self {
        let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
        self.u16(b.len() as u16);
        self.0.extend_from_slice(b);
        self
    }
    /// An optional block set: a flag, then the set.
    pub fn blocks(&mut self, b: Option<&Blocks>) -> &mut Self {
        match b {
            None => self.u8(0),
            Some(b) => {
                self.u8(1);
                b.encode(self.0);
                self
            }
        }
    }
}

/// Reads fields from a byte slice, failing on truncation.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        self.take(N)?
            .try_into()
            .map_err(|_| "truncated".to_string())
    }
    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn str(&mut self) -> Result<String, String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a string is not UTF-8".into())
    }
    /// What [`Writer::blocks`] wrote.
    pub fn blocks(&mut self) -> Result<Option<Blocks>, String> {
        if self.u8()? == 0 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(
            self.0
                .get(..4)
                .ok_or("truncated block set")?
                .try_into()
                .map_err(|_| "truncated block set")?,
        );
        let n = 4 + len.div_ceil(64) as usize * 8;
        Blocks::decode(self.take(n)?)
            .map(Some)
            .ok_or_else(|| "bad block set".into())
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn rest(&self) -> &'a [u8] {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_truncation_is_an_error() {
        let b = Blocks::new(70);
        b.insert_range(3, 9);
        let mut v = Vec::new();
        Writer(&mut v)
            .u8(1)
            .u16(2)
            .u32(3)
            .u64(4)
            .str("héllo")
            .blocks(Some(&b))
            .blocks(None);
        let mut r = Reader(&v);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 2);
        assert_eq!(r.u32().unwrap(), 3);
        assert_eq!(r.u64().unwrap(), 4);
        assert_eq!(r.str().unwrap(), "héllo");
        assert!(r.blocks().unwrap().unwrap() == b);
        assert!(r.blocks().unwrap().is_none());
        assert!(r.is_empty());
        for cut in 0..v.len() {
            let mut r = Reader(&v[..cut]);
            let all = (|| -> Result<(), String> {
                r.u8()?;
                r.u16()?;
                r.u32()?;
                r.u64()?;
                r.str()?;
                r.blocks()?;
                r.blocks()?;
                Ok(())
            })();
            assert!(all.is_err(), "cut at {cut} read as whole");
        }
    }
}
