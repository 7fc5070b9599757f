//! The check real S3 makes and LocalStack does not: that a request's AWS
//! Signature Version 4 was made with the secret of a known access key.
//!
//! LocalStack's community edition serves any signature (it only derives the
//! account from the key id), so a wrong secret cannot fail there. The fault
//! proxy runs this check when asked to, and answers as S3 does
//! (`403 InvalidAccessKeyId` or `403 SignatureDoesNotMatch`). The tests send
//! correctly signed traffic of every kind through the same check as well, so
//! a verifier that rejected everything would fail them.
//!
//! Follows the published algorithm: canonical request (method, URI as sent,
//! sorted and re-encoded query, the signed headers, the payload hash from
//! `x-amz-content-sha256`), string to sign over its SHA-256, and the HMAC
//! chain of date, region, service and `aws4_request`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Why a request was turned away: S3's error code and message.
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decoding of a query component (`+` is a space, as in forms).
fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (unhex(b[i + 1]), unhex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// SigV4's encoding: unreserved characters as they are, all else `%XX`.
fn encode(raw: &[u8]) -> String {
    raw.iter()
        .map(|&c| {
            if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&decode(k)), encode(&decode(v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// All values of a header, joined by commas, trimmed, inner runs of spaces
/// folded to one.
fn header_values(head: &str, name: &str) -> Option<String> {
    let vals: Vec<String> = head
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect();
    (!vals.is_empty()).then(|| vals.join(","))
}

fn reject(code: &'static str, message: &str) -> Option<Rejection> {
    Some(Rejection {
        code,
        message: message.to_string(),
    })
}

/// Checks the request `head` (request line and headers); `None` when its
/// signature is good for `access_key`/`secret`.
pub fn check(head: &str, access_key: &str, secret: &str) -> Option<Rejection> {
    const NO_SIGNATURE: &str = "Only AWS4-HMAC-SHA256 header signatures are accepted here.";
    let Some(auth) = header_values(head, "authorization") else {
        return reject("AccessDenied", NO_SIGNATURE);
    };
    let Some(fields) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return reject("AccessDenied", NO_SIGNATURE);
    };
    let field = |name: &str| {
        fields
            .split(',')
            .find_map(|f| f.trim().strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    let (Some(credential), Some(signed), Some(signature)) = (
        field("Credential"),
        field("SignedHeaders"),
        field("Signature"),
    ) else {
        return reject(
            "AuthorizationHeaderMalformed",
            "Incomplete Authorization header.",
        );
    };
    let Some((key_id, scope)) = credential.split_once('/') else {
        return reject("AuthorizationHeaderMalformed", "Bad Credential field.");
    };
    if key_id != access_key {
        return reject(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        );
    }
    let scope_parts: Vec<&str> = scope.split('/').collect();
    let [date, region, service, "aws4_request"] = scope_parts[..] else {
        return reject("AuthorizationHeaderMalformed", "Bad credential scope.");
    };
    let mut request_line = head.lines().next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("");
    let target = request_line.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut canonical_headers = String::new();
    for name in signed.split(';') {
        let value = header_values(head, name).unwrap_or_default();
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let payload_hash = header_values(head, "x-amz-content-sha256").unwrap_or_default();
    let canonical = format!(
        "{method}\n{path}\n{}\n{canonical_headers}\n{signed}\n{payload_hash}",
        canonical_query(query)
    );
    let amz_date = header_values(head, "x-amz-date").unwrap_or_default();
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date);
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part);
    }
    if hex(&hmac(&key, &to_sign)) != signature {
        return reject(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. \
             Check your key and signing method.",
        );
    }
    None
}
