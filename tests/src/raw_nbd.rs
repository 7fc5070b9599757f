//! A deliberately small NBD client that can also misbehave: for tests that send
//! what real clients never would.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;

pub struct RawNbd {
    pub s: TcpStream,
    pub size: u64,
}

/// One reply: error code and, for reads, data.
#[derive(Debug)]
pub struct RawReply {
    pub handle: u64,
    pub error: u32,
    pub data: Vec<u8>,
}

fn read_u32(s: &mut TcpStream) -> io::Result<u32> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(s: &mut TcpStream) -> io::Result<u64> {
    let mut b = [0u8; 8];
    s.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

impl RawNbd {
    /// Connects and reads the server greeting; returns the stream before any option.
    pub fn greet(port: u16) -> io::Result<TcpStream> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut hello = [0u8; 18];
        s.read_exact(&mut hello)?;
        assert_eq!(&hello[..8], b"NBDMAGIC");
        s.write_all(&3u32.to_be_bytes())?; // fixed newstyle, no zeroes
        Ok(s)
    }

    /// Connects with simple replies and EXPORT_NAME.
    pub fn connect(port: u16, export: &str) -> io::Result<RawNbd> {
        let mut s = Self::greet(port)?;
        s.write_all(&IHAVEOPT.to_be_bytes())?;
        s.write_all(&1u32.to_be_bytes())?;
        s.write_all(&(export.len() as u32).to_be_bytes())?;
        s.write_all(export.as_bytes())?;
        let size = read_u64(&mut s)?;
        let mut flags = [0u8; 2];
        s.read_exact(&mut flags)?;
        Ok(RawNbd { s, size })
    }

    pub fn send(
        &mut self,
        cmd: u16,
        handle: u64,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        self.send_flags(cmd, 0, handle, offset, len, payload)
    }

    /// [`RawNbd::send`] with request `flags`.
    pub fn send_flags(
        &mut self,
        cmd: u16,
        flags: u16,
        handle: u64,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        let mut b = Vec::with_capacity(28 + payload.len());
        b.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&cmd.to_be_bytes());
        b.extend_from_slice(&handle.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(payload);
        self.s.write_all(&b)
    }

    /// Reads one simple reply; `read_len` bytes of data follow a successful read.
    pub fn reply(&mut self, read_len: usize) -> io::Result<RawReply> {
        let magic = read_u32(&mut self.s)?;
        assert_eq!(magic, 0x6744_6698, "expected a simple reply");
        let error = read_u32(&mut self.s)?;
        let handle = read_u64(&mut self.s)?;
        let mut data = Vec::new();
        if error == 0 && read_len > 0 {
            data = vec![0u8; read_len];
            self.s.read_exact(&mut data)?;
        }
        Ok(RawReply {
            handle,
            error,
            data,
        })
    }

    /// True once the server has closed the connection (any bytes still in
    /// flight are skipped); false if it stays open past the read timeout.
    pub fn closed_by_server(&mut self) -> bool {
        let mut b = [0u8; 4096];
        loop {
            match self.s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ) =>
                {
                    return true
                }
                Err(_) => return false,
            }
        }
    }
}
