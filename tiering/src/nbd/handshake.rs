//! The fixed newstyle handshake: option haggling up to the moment a client
//! picks an export (EXPORT_NAME or GO), upgrades to TLS (STARTTLS), or gives
//! up.
//!
//! Invariant: every option gets exactly one final reply (ACK or an error), so a
//! client is never left waiting; anything that breaks framing (a bad magic, an
//! oversized option) ends the connection instead. Where TLS is required,
//! every option but STARTTLS and ABORT gets TLS_REQD until it is up.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::proto::*;
use super::tls::TlsMode;
use crate::volume::{Attachment, Volumes};

/// What the handshake agreed on.
#[derive(Debug)]
pub struct Session {
    pub volume: Attachment,
    pub export: String,
    /// Size fixed for the whole session, even if the volume grows meanwhile.
    pub size: u64,
    pub structured: bool,
    /// `base:allocation` was selected for this export.
    pub allocation: bool,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

pub fn transmission_flags(structured: bool, read_only: bool) -> u16 {
    let mut f = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_CAN_MULTI_CONN;
    if read_only {
        // A snapshot's export: clients open it read-only, and a write that
        // comes anyway gets EPERM.
        f |= TFLAG_READ_ONLY;
    } else {
        f |= TFLAG_SEND_FUA | TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES;
    }
    if structured {
        // Reads always come back as one chunk, so "don't fragment" costs nothing.
        f |= TFLAG_SEND_DF;
    }
    f
}

/// Reads a u32-length-prefixed string from an option payload.
fn take_string<'a>(data: &mut &'a [u8], what: &str) -> Result<&'a str, String> {
    if data.len() < 4 {
        return Err(format!("option too short for the {what} length"));
    }
    let n = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    if data.len() - 4 < n {
        return Err(format!("{what} length {n} runs past the end of the option"));
    }
    let s = std::str::from_utf8(&data[4..4 + n]).map_err(|_| format!("{what} is not UTF-8"))?;
    *data = &data[4 + n..];
    Ok(s)
}

struct InfoRequest<'a> {
    name: &'a str,
    infos: Vec<u16>,
}

fn parse_info(mut data: &[u8]) -> Result<InfoRequest<'_>, String> {
    let name = take_string(&mut data, "export name")?;
    if data.len() < 2 {
        return Err("option too short for the information request count".into());
    }
    let n = u16::from_be_bytes([data[0], data[1]]) as usize;
    data = &data[2..];
    if data.len() != n * 2 {
        return Err(format!(
            "{n} information requests announced, {} bytes follow",
            data.len()
        ));
    }
    let infos = data
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    Ok(InfoRequest { name, infos })
}

struct MetaRequest<'a> {
    export: &'a str,
    queries: Vec<&'a str>,
}

fn parse_meta(mut data: &[u8]) -> Result<MetaRequest<'_>, String> {
    let export = take_string(&mut data, "export name")?;
    if data.len() < 4 {
        return Err("option too short for the query count".into());
    }
    let n = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    data = &data[4..];
    let mut queries = Vec::new();
    for _ in 0..n {
        queries.push(take_string(&mut data, "query")?);
    }
    if !data.is_empty() {
        return Err(format!("{} bytes after the last query", data.len()));
    }
    Ok(MetaRequest { export, queries })
}

async fn reply<S: AsyncWrite + Unpin>(
    s: &mut S,
    opt: u32,
    kind: u32,
    data: &[u8],
) -> io::Result<()> {
    s.write_all(&option_reply(opt, kind, data)).await
}

async fn reply_err<S: AsyncWrite + Unpin>(
    s: &mut S,
    opt: u32,
    kind: u32,
    msg: &str,
    peer: &str,
) -> io::Result<()> {
    tracing::info!(peer, option = opt, error = msg, "refusing NBD option");
    reply(s, opt, kind, msg.as_bytes()).await?;
    s.flush().await
}

/// How option haggling ended.
#[derive(Debug)]
pub enum Outcome {
    /// An export was picked: transmission follows.
    Session(Session),
    /// The client aborted or hung up politely.
    Gone,
    /// STARTTLS was acknowledged: the TLS handshake follows on this stream,
    /// then haggling starts over inside it.
    StartTls,
}

/// Where a connection's TLS stands during haggling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Not offered: STARTTLS is refused.
    Off,
    /// Offered, not yet used.
    Optional,
    /// Offered and required before anything else.
    Required,
    /// Up: this haggling runs inside TLS.
    Active,
}

impl Tls {
    /// Where a new connection starts on a listener with `mode`.
    pub fn start(mode: &TlsMode) -> Self {
        match mode {
            TlsMode::Off => Tls::Off,
            TlsMode::Optional(_) => Tls::Optional,
            TlsMode::Required(_) => Tls::Required,
        }
    }
}

/// Sends the greeting and reads the client's flags; whether the client
/// asked for no zero padding.
pub async fn greet<S>(s: &mut S) -> io::Result<bool>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello).await?;
    s.flush().await?;

    let client_flags = s.read_u32().await?;
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(invalid(format!("unknown client flags {client_flags:#x}")));
    }
    Ok(client_flags & FLAG_C_NO_ZEROES != 0)
}

/// Runs option haggling (after [`greet`]) with TLS at `tls`.
pub async fn negotiate<S>(
    s: &mut S,
    volumes: &Volumes,
    peer: &str,
    no_zeroes: bool,
    tls: Tls,
) -> io::Result<Outcome>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut structured = false;
    // The export for which base:allocation was selected, if any.
    let mut meta_export: Option<String> = None;

    loop {
        let magic = match s.read_u64().await {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Outcome::Gone),
            Err(e) => return Err(e),
        };
        if magic != IHAVEOPT {
            return Err(invalid(format!("bad option magic {magic:#x}")));
        }
        let opt = s.read_u32().await?;
        let len = s.read_u32().await?;
        if len > MAX_OPTION_LEN {
            return Err(invalid(format!(
                "option {opt} is {len} bytes, over the {MAX_OPTION_LEN}-byte limit"
            )));
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data).await?;

        if tls == Tls::Required && !matches!(opt, OPT_STARTTLS | OPT_ABORT) {
            if opt == OPT_EXPORT_NAME {
                // No error reply exists for EXPORT_NAME: disconnect.
                return Err(invalid(
                    "client asked for an export without STARTTLS, which this server requires"
                        .into(),
                ));
            }
            reply_err(
                s,
                opt,
                REP_ERR_TLS_REQD,
                "this server requires TLS: negotiate NBD_OPT_STARTTLS first",
                peer,
            )
            .await?;
            continue;
        }
        match opt {
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data).to_string();
                let Ok(vol) = volumes.export(&name) else {
                    // EXPORT_NAME has no error reply: the protocol says to disconnect.
                    return Err(invalid(format!("client asked for unknown export {name:?}")));
                };
                let size = vol.size();
                let mut out = Vec::with_capacity(10 + 124);
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(
                    &transmission_flags(structured, vol.is_read_only()).to_be_bytes(),
                );
                if !no_zeroes {
                    out.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&out).await?;
                s.flush().await?;
                let allocation = meta_export.as_deref() == Some(name.as_str());
                return Ok(Outcome::Session(Session {
                    volume: vol.attach(),
                    export: name,
                    size,
                    structured,
                    allocation,
                }));
            }
            OPT_ABORT => {
                let _ = reply(s, opt, REP_ACK, &[]).await;
                let _ = s.flush().await;
                return Ok(Outcome::Gone);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    reply_err(s, opt, REP_ERR_INVALID, "NBD_OPT_LIST takes no data", peer).await?;
                    continue;
                }
                for name in volumes.export_names() {
                    let mut d = Vec::with_capacity(4 + name.len());
                    d.extend_from_slice(&(name.len() as u32).to_be_bytes());
                    d.extend_from_slice(name.as_bytes());
                    reply(s, opt, REP_SERVER, &d).await?;
                }
                reply(s, opt, REP_ACK, &[]).await?;
                s.flush().await?;
            }
            OPT_STRUCTURED_REPLY => {
                if !data.is_empty() {
                    reply_err(
                        s,
                        opt,
                        REP_ERR_INVALID,
                        "NBD_OPT_STRUCTURED_REPLY takes no data",
                        peer,
                    )
                    .await?;
                    continue;
                }
                structured = true;
                reply(s, opt, REP_ACK, &[]).await?;
                s.flush().await?;
            }
            OPT_INFO | OPT_GO => {
                let req = match parse_info(&data) {
                    Ok(r) => r,
                    Err(m) => {
                        reply_err(s, opt, REP_ERR_INVALID, &m, peer).await?;
                        continue;
                    }
                };
                let vol = match volumes.export(req.name) {
                    Ok(v) => v,
                    Err(e) => {
                        let exports = volumes.export_names().join(", ");
                        let msg = match e {
                            crate::error::TierError::VolumeNotFound(_) => {
                                format!("no export named {:?}; exports: {exports}", req.name)
                            }
                            other => format!("{other}; exports: {exports}"),
                        };
                        reply_err(s, opt, REP_ERR_UNKNOWN, &msg, peer).await?;
                        continue;
                    }
                };
                let size = vol.size();
                let mut info = Vec::with_capacity(12);
                info.extend_from_slice(&INFO_EXPORT.to_be_bytes());
                info.extend_from_slice(&size.to_be_bytes());
                info.extend_from_slice(
                    &transmission_flags(structured, vol.is_read_only()).to_be_bytes(),
                );
                reply(s, opt, REP_INFO, &info).await?;
                let mut bs = Vec::with_capacity(14);
                bs.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
                bs.extend_from_slice(&1u32.to_be_bytes());
                bs.extend_from_slice(&4096u32.to_be_bytes());
                bs.extend_from_slice(&MAX_PAYLOAD.to_be_bytes());
                reply(s, opt, REP_INFO, &bs).await?;
                for kind in req.infos {
                    let text = match kind {
                        INFO_NAME => req.name.to_string(),
                        INFO_DESCRIPTION => {
                            format!("tierd volume {} (class {})", req.name, vol.meta().class)
                        }
                        _ => continue,
                    };
                    let mut d = Vec::with_capacity(2 + text.len());
                    d.extend_from_slice(&kind.to_be_bytes());
                    d.extend_from_slice(text.as_bytes());
                    reply(s, opt, REP_INFO, &d).await?;
                }
                reply(s, opt, REP_ACK, &[]).await?;
                s.flush().await?;
                if opt == OPT_GO {
                    let allocation = meta_export.as_deref() == Some(req.name);
                    return Ok(Outcome::Session(Session {
                        volume: vol.attach(),
                        export: req.name.to_string(),
                        size,
                        structured,
                        allocation,
                    }));
                }
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                if !structured {
                    reply_err(
                        s,
                        opt,
                        REP_ERR_INVALID,
                        "negotiate structured replies first",
                        peer,
                    )
                    .await?;
                    continue;
                }
                let req = match parse_meta(&data) {
                    Ok(r) => r,
                    Err(m) => {
                        reply_err(s, opt, REP_ERR_INVALID, &m, peer).await?;
                        continue;
                    }
                };
                if volumes.export(req.export).is_err() {
                    let msg = format!("no export named {:?}", req.export);
                    reply_err(s, opt, REP_ERR_UNKNOWN, &msg, peer).await?;
                    continue;
                }
                let listing = opt == OPT_LIST_META_CONTEXT;
                let matched = if listing {
                    req.queries.is_empty()
                        || req
                            .queries
                            .iter()
                            .any(|q| *q == "base:" || *q == BASE_ALLOCATION)
                } else {
                    req.queries.contains(&BASE_ALLOCATION)
                };
                if matched {
                    let mut d = Vec::with_capacity(4 + BASE_ALLOCATION.len());
                    d.extend_from_slice(&BASE_ALLOCATION_ID.to_be_bytes());
                    d.extend_from_slice(BASE_ALLOCATION.as_bytes());
                    reply(s, opt, REP_META_CONTEXT, &d).await?;
                }
                if !listing {
                    meta_export = matched.then(|| req.export.to_string());
                }
                reply(s, opt, REP_ACK, &[]).await?;
                s.flush().await?;
            }
            OPT_STARTTLS => match tls {
                Tls::Off => {
                    reply_err(
                        s,
                        opt,
                        REP_ERR_POLICY,
                        "TLS is not configured on this server (server.tls_cert_file)",
                        peer,
                    )
                    .await?
                }
                Tls::Active => {
                    reply_err(s, opt, REP_ERR_INVALID, "TLS is already up", peer).await?
                }
                Tls::Optional | Tls::Required if !data.is_empty() => {
                    reply_err(
                        s,
                        opt,
                        REP_ERR_INVALID,
                        "NBD_OPT_STARTTLS takes no data",
                        peer,
                    )
                    .await?
                }
                Tls::Optional | Tls::Required => {
                    reply(s, opt, REP_ACK, &[]).await?;
                    s.flush().await?;
                    return Ok(Outcome::StartTls);
                }
            },
            _ => {
                reply_err(
                    s,
                    opt,
                    REP_ERR_UNSUP,
                    &format!("option {opt} is not supported"),
                    peer,
                )
                .await?;
            }
        }
    }
}
