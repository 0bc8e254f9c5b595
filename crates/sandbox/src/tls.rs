//! The server name of a TLS ClientHello (RFC 8446 §4.1.2, RFC 6066 §3).

/// The `server_name` of the ClientHello in `record` (the payload of the first TLS
/// record). `Ok(None)`: no server name. Refused (`Err`): anything that is not one whole,
/// well-formed ClientHello, more than one name, or Encrypted ClientHello (whose inner
/// name the proxy cannot see).
pub fn server_name(record: &[u8]) -> Result<Option<String>, String> {
    let bad = |m: &str| Err(format!("the TLS ClientHello is refused: {m}"));
    let mut r = Reader(record);
    if r.u8() != Some(1) {
        return bad("the first handshake message is not a ClientHello");
    }
    let Some(len) = r.u24() else {
        return bad("truncated");
    };
    if len != r.0.len() {
        return bad("it is not exactly one whole message in the first record");
    }
    let ok = (|| {
        r.take(2)?; // legacy_version
        r.take(32)?; // random
        let sid = r.u8()?;
        r.take(usize::from(sid))?;
        let cs = r.u16()?;
        r.take(usize::from(cs))?;
        let cm = r.u8()?;
        r.take(usize::from(cm))?;
        Some(())
    })();
    if ok.is_none() {
        return bad("truncated");
    }
    if r.0.is_empty() {
        return Ok(None);
    }
    let Some(ext_len) = r.u16() else {
        return bad("truncated");
    };
    let Some(exts) = r.take(usize::from(ext_len)) else {
        return bad("truncated");
    };
    if !r.0.is_empty() {
        return bad("bytes after the extensions");
    }
    let mut e = Reader(exts);
    let mut name: Option<String> = None;
    let mut seen_sni = false;
    while !e.0.is_empty() {
        let (Some(kind), Some(l)) = (e.u16(), e.u16()) else {
            return bad("truncated extension");
        };
        let Some(body) = e.take(usize::from(l)) else {
            return bad("truncated extension");
        };
        match kind {
            0 => {
                if seen_sni {
                    return bad("two server_name extensions");
                }
                seen_sni = true;
                let mut s = Reader(body);
                let Some(list_len) = s.u16() else {
                    return bad("truncated server_name");
                };
                if usize::from(list_len) != s.0.len() {
                    return bad("malformed server_name");
                }
                while !s.0.is_empty() {
                    let (Some(t), Some(nl)) = (s.u8(), s.u16()) else {
                        return bad("malformed server_name");
                    };
                    let Some(n) = s.take(usize::from(nl)) else {
                        return bad("malformed server_name");
                    };
                    if t == 0 {
                        if name.is_some() {
                            return bad("more than one host name");
                        }
                        let Ok(text) = std::str::from_utf8(n) else {
                            return bad("the host name is not text");
                        };
                        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) {
                            return bad("the host name is not a DNS name");
                        }
                        name = Some(text.to_string());
                    }
                }
            }
            0xfe0d => return bad("Encrypted ClientHello hides the server name"),
            _ => {}
        }
    }
    Ok(name)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }
    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some(
            usize::from(*b.first()?) << 16 | usize::from(*b.get(1)?) << 8 | usize::from(*b.get(2)?),
        )
    }
}
