//! HTTP/1.x message heads read from the first bytes of a TCP segment: the
//! request line or status line, and the few header fields that matter here
//! (Host, Content-Length, Transfer-Encoding). Pure functions over byte slices:
//! nothing here trusts a length, and nothing reads past the bytes given.

use std::fmt;

/// Request methods wirescope recognises (RFC 9110, section 9, plus PATCH).
/// Methods are case-sensitive on the wire: `get` is not `GET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Connect,
    Trace,
}

impl Method {
    pub const ALL: [Method; 9] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Patch,
        Method::Options,
        Method::Connect,
        Method::Trace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
        }
    }

    fn from_token(t: &[u8]) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str().as_bytes() == t)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// HTTP/1.0 or HTTP/1.1 (the minor version).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version(pub u8);

impl Version {
    pub fn as_str(self) -> &'static str {
        if self.0 == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        }
    }
}

/// Why bytes are not a usable message head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Does not start like an HTTP/1.x request or response at all.
    NotHttp,
    /// Starts like one, but the request or status line does not end within
    /// the bytes given (split across segments, or longer than the window).
    Truncated,
    /// Starts like one, but breaks the grammar (bad target, bad version,
    /// control characters, a status code that is not three digits).
    Invalid,
}

/// How the body after a message head is framed (RFC 9112, section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// Chunked: its end cannot be known from the head.
    Chunked,
    /// Everything until the connection closes (or a tunnel after CONNECT/101).
    UntilClose,
    /// A Transfer-Encoding or Content-Length we cannot use.
    Unknown,
}

/// Header fields of a head that wirescope reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    /// First Host field value, without surrounding whitespace.
    pub host: Option<&'a [u8]>,
    /// Content-Length, when present and a valid number (None: absent).
    pub content_length: Option<u64>,
    /// Content-Length present but not a number we can use (absurd, negative,
    /// several different values).
    pub bad_length: bool,
    /// A Transfer-Encoding field is present.
    pub transfer_encoding: bool,
    /// ... and its last coding is `chunked`.
    pub chunked: bool,
    /// Length of the whole head, blank line included, when it ends within the
    /// bytes given.
    pub head_len: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Method,
    pub target: &'a [u8],
    pub version: Version,
    pub fields: Fields<'a>,
}

impl Request<'_> {
    /// How the request body is framed, when the whole head was seen.
    pub fn framing(&self) -> Option<Framing> {
        self.fields.head_len?;
        let f = &self.fields;
        Some(if f.transfer_encoding {
            if f.chunked {
                Framing::Chunked
            } else {
                Framing::Unknown
            }
        } else if f.bad_length {
            Framing::Unknown
        } else {
            // a request without Content-Length has no body
            Framing::Length(f.content_length.unwrap_or(0))
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    pub version: Version,
    pub status: u16,
    pub fields: Fields<'a>,
}

impl Response<'_> {
    /// 1xx other than 101: an interim answer, the final one follows.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// How the response body is framed, given the method of the request it
    /// answers (None if unknown), when the whole head was seen.
    pub fn framing(&self, method: Option<Method>) -> Option<Framing> {
        self.fields.head_len?;
        let f = &self.fields;
        let s = self.status;
        Some(
            if s == 101 || (method == Some(Method::Connect) && (200..300).contains(&s)) {
                Framing::UntilClose
            } else if method == Some(Method::Head)
                || (100..200).contains(&s)
                || s == 204
                || s == 304
            {
                Framing::Length(0)
            } else if f.transfer_encoding {
                if f.chunked {
                    Framing::Chunked
                } else {
                    Framing::UntilClose
                }
            } else if f.bad_length {
                Framing::Unknown
            } else {
                match f.content_length {
                    Some(n) => Framing::Length(n),
                    None => Framing::UntilClose,
                }
            },
        )
    }
}

/// The end of the line that starts at `from`: (index of the first byte of
/// the terminator, index after it). A bare LF is accepted as a terminator
/// (RFC 9112, section 2.2).
fn line_end(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let rest = b.get(from..)?;
    let lf = rest.iter().position(|&c| c == b'\n')?;
    let end = from + lf;
    if end > from && b[end - 1] == b'\r' {
        Some((end - 1, end + 1))
    } else {
        Some((end, end + 1))
    }
}

/// `HTTP/1.0` or `HTTP/1.1` exactly; other versions are not HTTP/1.x.
fn version(b: &[u8]) -> Option<Version> {
    match b {
        b"HTTP/1.0" => Some(Version(0)),
        b"HTTP/1.1" => Some(Version(1)),
        _ => None,
    }
}

/// A byte allowed in a request target: visible ASCII or obs-text (raw UTF-8
/// that some clients send), no spaces, no controls.
fn target_byte(c: u8) -> bool {
    c > b' ' && c != 0x7f
}

fn token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// A Content-Length value: one or more digits, no sign, no overflow. A list
/// of identical values ("5, 5") is accepted, as RFC 9110 allows.
fn content_length(v: &[u8]) -> Option<u64> {
    let mut value = None;
    for part in v.split(|&c| c == b',') {
        let part = trim(part);
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut n: u64 = 0;
        for &d in part {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        match value {
            Some(v) if v != n => return None,
            _ => value = Some(n),
        }
    }
    value
}

/// Read header fields from `from` on, until the blank line or the end of the
/// bytes. A line that is not a field (no colon, a space in the name) ends the
/// reading without a head length: what follows is not understood.
fn fields(b: &[u8], mut from: usize) -> Fields<'_> {
    let mut f = Fields::default();
    while let Some((end, next)) = line_end(b, from) {
        let line = &b[from..end];
        if line.is_empty() {
            f.head_len = Some(next);
            return f;
        }
        from = next;
        if line[0] == b' ' || line[0] == b'\t' {
            // obs-fold continuation of the previous field: nothing we read
            continue;
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return Fields {
                head_len: None,
                ..f
            };
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || !name.iter().all(|&c| token_byte(c)) {
            return Fields {
                head_len: None,
                ..f
            };
        }
        if name.eq_ignore_ascii_case(b"host") {
            if f.host.is_none() && !value.is_empty() && value.iter().all(|&c| target_byte(c)) {
                f.host = Some(value);
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            match (content_length(value), f.content_length) {
                (Some(n), None) => f.content_length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => f.bad_length = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            f.transfer_encoding = true;
            let last = value.rsplit(|&c| c == b',').next().map(trim);
            f.chunked = last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        }
    }
    f
}

/// Parse the request that starts at the first byte of `b`.
pub fn request(b: &[u8]) -> Result<Request<'_>, Error> {
    if b.is_empty() {
        return Err(Error::NotHttp);
    }
    let sp = match b.iter().take(8).position(|&c| c == b' ') {
        Some(i) => i,
        None if b.len() < 8 && b.iter().all(|&c| c.is_ascii_uppercase()) => {
            return Err(Error::Truncated)
        }
        None => return Err(Error::NotHttp),
    };
    let method = Method::from_token(&b[..sp]).ok_or(Error::NotHttp)?;
    let t0 = sp + 1;
    let rest = &b[t0..];
    let Some(tlen) = rest.iter().position(|&c| !target_byte(c)) else {
        return Err(Error::Truncated);
    };
    if tlen == 0 || rest[tlen] != b' ' {
        return Err(Error::Invalid);
    }
    let target = &rest[..tlen];
    let v0 = t0 + tlen + 1;
    let Some((vend, next)) = line_end(b, v0) else {
        // the version is not all there yet: truncated if what is there fits
        let have = &b[v0..];
        return if b"HTTP/1.1\r\n".starts_with(have) || b"HTTP/1.0\r\n".starts_with(have) {
            Err(Error::Truncated)
        } else {
            Err(Error::Invalid)
        };
    };
    let version = version(&b[v0..vend]).ok_or(Error::Invalid)?;
    Ok(Request {
        method,
        target,
        version,
        fields: fields(b, next),
    })
}

/// Parse the response that starts at the first byte of `b`.
pub fn response(b: &[u8]) -> Result<Response<'_>, Error> {
    let Some(v) = b.get(..8) else {
        return if b"HTTP/1.".starts_with(b) || b"HTTP/1.1".starts_with(b) {
            Err(Error::Truncated)
        } else {
            Err(Error::NotHttp)
        };
    };
    let version = version(v).ok_or(Error::NotHttp)?;
    // " 200" then a space, the end of the line, or nothing more yet
    let Some(code) = b.get(8..12) else {
        return Err(Error::Truncated);
    };
    if code[0] != b' ' || !code[1..].iter().all(u8::is_ascii_digit) || code[1] == b'0' {
        return Err(Error::Invalid);
    }
    let status = code[1..]
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    match b.get(12) {
        None | Some(b' ' | b'\r' | b'\n') => {}
        Some(_) => return Err(Error::Invalid),
    }
    let fields = match line_end(b, 12) {
        Some((end, next)) => {
            if b[12..end]
                .iter()
                .any(|&c| (c < b' ' && c != b'\t') || c == 0x7f)
            {
                return Err(Error::Invalid);
            }
            fields(b, next)
        }
        // The status is all there; the reason phrase goes on past the window.
        None => Fields::default(),
    };
    Ok(Response {
        version,
        status,
        fields,
    })
}

/// The target without its query string (from the first `?`).
pub fn strip_query(target: &[u8]) -> &[u8] {
    match target.iter().position(|&c| c == b'?') {
        Some(i) => &target[..i],
        None => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Request<'_>, Error> {
        request(s.as_bytes())
    }

    #[test]
    fn every_method_and_both_versions() {
        for m in Method::ALL {
            let text = format!("{} /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", m);
            let r = req(&text).unwrap();
            assert_eq!(r.method, m);
            assert_eq!(r.target, b"/a/b?x=1");
            assert_eq!(r.version, Version(1));
            assert_eq!(r.fields.host, Some(&b"example.com"[..]));
            assert_eq!(r.fields.head_len, Some(text.len()));
            assert_eq!(r.framing(), Some(Framing::Length(0)));
        }
        let r = req("GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!((r.version.as_str(), r.fields.host), ("HTTP/1.0", None));
        // the forms of request targets: origin, absolute, authority, asterisk
        assert_eq!(
            req("GET http://h/p HTTP/1.1\r\n").unwrap().target,
            b"http://h/p"
        );
        assert_eq!(req("CONNECT h:443 HTTP/1.1\r\n").unwrap().target, b"h:443");
        assert_eq!(req("OPTIONS * HTTP/1.1\r\n").unwrap().target, b"*");
    }

    #[test]
    fn lowercase_and_unknown_methods_are_not_http() {
        for s in [
            "get / HTTP/1.1\r\n",
            "Get / HTTP/1.1\r\n",
            "post / HTTP/1.1\r\n",
            "FETCH / HTTP/1.1\r\n",
            "GETX / HTTP/1.1\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            " GET / HTTP/1.1\r\n",
            "\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03",
            "",
        ] {
            assert_eq!(req(s), Err(Error::NotHttp), "{s:?}");
        }
    }

    #[test]
    fn malformed_request_lines_are_invalid() {
        for s in [
            "GET  / HTTP/1.1\r\n",               // empty target
            "GET / HTTP/2.0\r\n",                // not HTTP/1.x
            "GET / HTTP/1.1 extra\r\n",          // junk after the version
            "GET / http/1.1\r\n",                // version is case-sensitive
            "GET /a\tb HTTP/1.1\r\n",            // control character in the target
            "GET /a\x00b HTTP/1.1\r\n",          // NUL
            "GET /\r\n",                         // HTTP/0.9 style: no version
            "GET / HTTP/1.1garbage-no-end",      // no line end, and not a version
            "GET / HTTP/1.1\r\x01\nHost: x\r\n", // CR not followed by LF
        ] {
            assert_eq!(req(s), Err(Error::Invalid), "{s:?}");
        }
    }

    #[test]
    fn truncated_request_lines() {
        for s in [
            "GET",
            "DELE",
            "GET /very/long/path/cut/by/the/window",
            "GET /a HTTP/1.",
            "GET /a HTTP/1.1",
            "GET /a HTTP/1.1\r",
            "GET /a ",
            "OPTIONS *",
        ] {
            assert_eq!(req(s), Err(Error::Truncated), "{s:?}");
        }
    }

    #[test]
    fn host_is_found_anywhere_in_the_head_and_cut_heads_keep_what_they_have() {
        let r = req(
            "GET / HTTP/1.1\r\nUser-Agent: x\r\nhOsT:   example.org:8080 \r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.fields.host, Some(&b"example.org:8080"[..]));
        // head cut by the window after Host: host known, length not
        let r = req("GET / HTTP/1.1\r\nHost: a\r\nAccept: text/ht").unwrap();
        assert_eq!((r.fields.host, r.fields.head_len), (Some(&b"a"[..]), None));
        assert_eq!(r.framing(), None);
        // cut before Host
        let r = req("GET / HTTP/1.1\r\nAccept: text/html\r\nHo").unwrap();
        assert_eq!(r.fields.host, None);
        // first Host wins; an empty one does not count
        let r = req("GET / HTTP/1.1\r\nHost:\r\nHost: b\r\nHost: c\r\n\r\n").unwrap();
        assert_eq!(r.fields.host, Some(&b"b"[..]));
        // bare LF line ends
        let r = req("GET /x HTTP/1.1\nHost: lf\n\n").unwrap();
        assert_eq!(
            (r.target, r.fields.host, r.fields.head_len),
            (&b"/x"[..], Some(&b"lf"[..]), Some(26))
        );
        // a line that is not a field: stop, head length unknown
        let r = req("GET / HTTP/1.1\r\nHost: h\r\nthis is not a field\r\n\r\n").unwrap();
        assert_eq!((r.fields.host, r.fields.head_len), (Some(&b"h"[..]), None));
    }

    #[test]
    fn request_body_framing() {
        let r = req("POST /f HTTP/1.1\r\nContent-Length: 12\r\n\r\nhello world!").unwrap();
        assert_eq!(r.framing(), Some(Framing::Length(12)));
        assert_eq!(r.fields.head_len, Some(40));
        let r = req("POST /f HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").unwrap();
        assert_eq!(r.framing(), Some(Framing::Chunked));
        let r = req("POST /f HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").unwrap();
        assert_eq!(r.framing(), Some(Framing::Unknown));
        // absurd, negative, mixed or conflicting lengths cannot be used
        for cl in [
            "99999999999999999999999",
            "-1",
            "12abc",
            "",
            "1 2",
            "5, 6",
            "0x10",
        ] {
            let text = format!("PUT / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
            let r = req(&text).unwrap();
            assert!(r.fields.bad_length, "{cl:?}");
            assert_eq!(r.framing(), Some(Framing::Unknown), "{cl:?}");
        }
        let r = req("PUT / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n").unwrap();
        assert_eq!(r.framing(), Some(Framing::Length(5)));
        let r = req("PUT / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n").unwrap();
        assert_eq!(r.framing(), Some(Framing::Unknown));
        let r = req("PUT / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n").unwrap();
        assert_eq!(r.framing(), Some(Framing::Length(u64::MAX)));
    }

    #[test]
    fn status_lines() {
        let r = response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!((r.version, r.status), (Version(1), 200));
        assert_eq!(r.fields.head_len, Some(38));
        assert_eq!(r.framing(Some(Method::Get)), Some(Framing::Length(5)));
        assert_eq!(r.framing(Some(Method::Head)), Some(Framing::Length(0)));
        let r = response(b"HTTP/1.0 404\r\n\r\n").unwrap();
        assert_eq!((r.version, r.status), (Version(0), 404));
        assert_eq!(r.framing(None), Some(Framing::UntilClose));
        // the window ends inside the reason phrase: the status is all there
        let r = response(b"HTTP/1.1 500 Internal Serv").unwrap();
        assert_eq!((r.status, r.fields.head_len), (500, None));
        assert_eq!(response(b"HTTP/1.1 503").unwrap().status, 503);
        for (b, e) in [
            (&b"HTTP/1.1 20"[..], Error::Truncated),
            (b"HTTP/1.1", Error::Truncated),
            (b"HTTP/1", Error::Truncated),
            (b"HTTP/1.1 2000 OK\r\n", Error::Invalid),
            (b"HTTP/1.1 20x OK\r\n", Error::Invalid),
            (b"HTTP/1.1 099 OK\r\n", Error::Invalid),
            (b"HTTP/1.1  200 OK\r\n", Error::Invalid),
            (b"HTTP/1.1 200 O\x01K\r\n", Error::Invalid),
            (b"HTTP/2 200\r\n", Error::NotHttp),
            (b"HTTP/1.2 200 OK\r\n", Error::NotHttp),
            (b"http/1.1 200 OK\r\n", Error::NotHttp),
            (b"", Error::Truncated),
        ] {
            assert_eq!(response(b), Err(e), "{:?}", String::from_utf8_lossy(b));
        }
    }

    #[test]
    fn response_framing_by_status_and_method() {
        let head = |s: &str| format!("HTTP/1.1 {s}\r\nContent-Length: 9\r\n\r\n");
        let f = |s: &str, m| response(head(s).as_bytes()).unwrap().framing(m);
        assert_eq!(
            f("204 No Content", Some(Method::Get)),
            Some(Framing::Length(0))
        );
        assert_eq!(
            f("304 Not Modified", Some(Method::Get)),
            Some(Framing::Length(0))
        );
        assert_eq!(
            f("100 Continue", Some(Method::Post)),
            Some(Framing::Length(0))
        );
        assert_eq!(
            f("101 Switching", Some(Method::Get)),
            Some(Framing::UntilClose)
        );
        assert_eq!(
            f("200 OK", Some(Method::Connect)),
            Some(Framing::UntilClose)
        );
        assert_eq!(
            f("407 Auth", Some(Method::Connect)),
            Some(Framing::Length(9))
        );
        assert_eq!(f("200 OK", None), Some(Framing::Length(9)));
        let r = response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n").unwrap();
        assert_eq!(r.framing(Some(Method::Get)), Some(Framing::Chunked));
        let r = response(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
        assert!(r.is_interim());
        assert!(!response(b"HTTP/1.1 101 Up\r\n\r\n").unwrap().is_interim());
    }

    #[test]
    fn absurd_lengths_and_random_bytes_never_panic() {
        // a simple xorshift generator: same bytes every run
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let prefixes: [&[u8]; 4] = [b"GET /", b"HTTP/1.1 200 ", b"POST / HTTP/1.1\r\n", b""];
        for round in 0..5000 {
            let len = (next() % 300) as usize;
            let mut b: Vec<u8> = prefixes[round % 4].to_vec();
            b.extend((0..len).map(|_| next() as u8));
            let _ = request(&b);
            let _ = response(&b);
            if let Ok(r) = request(&b) {
                assert!(r.target.len() <= b.len());
                assert!(r.fields.head_len.map_or(true, |n| n <= b.len()));
            }
        }
        // a huge header block without an end
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        big.extend(vec![b'a'; 100_000]);
        let r = request(&big).unwrap();
        assert_eq!((r.fields.host, r.fields.head_len), (None, None));
    }

    #[test]
    fn query_strings_are_dropped() {
        assert_eq!(strip_query(b"/a/b?token=secret&x=1"), b"/a/b");
        assert_eq!(strip_query(b"/a/b"), b"/a/b");
        assert_eq!(strip_query(b"?x"), b"");
        assert_eq!(strip_query(b"http://h/p?q#f"), b"http://h/p");
    }
}
