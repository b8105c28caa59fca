//! Pairing responses with requests, per TCP flow and in order (HTTP/1.x
//! answers requests in the order they were sent, pipelined or not).
//!
//! The kernel hands over segments whose payload starts a request or a
//! response, with their TCP sequence and acknowledgment numbers. Those numbers
//! make the pairing robust: a segment seen twice (a retransmission, or both
//! hooks of `lo`) is recognised, a segment that looks like HTTP but lies inside
//! a body whose length is known is ignored, and a message that started where
//! nobody looked (past the window, in the middle of a segment) is noticed and
//! kept in its place in the order, so later responses still find the right
//! request.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use super::parse::{self, Framing, Method, Version};

/// Flows tracked at once; requests on further flows are counted as overflow.
pub const MAX_FLOWS: usize = 65_536;
/// Requests waiting for an answer on one flow (pipelining depth).
pub const MAX_PENDING: usize = 64;
/// A flow with nothing pending is forgotten after this much quiet.
const FLOW_IDLE_NS: u64 = 5_000_000_000;

/// Both ends of a connection, named by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub client: IpAddr,
    pub cport: u16,
    pub server: IpAddr,
    pub sport: u16,
}

/// A TCP segment whose payload starts an HTTP message.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub key: FlowKey,
    /// CLOCK_MONOTONIC nanoseconds
    pub ts_ns: u64,
    pub seq: u32,
    pub ack: u32,
    /// payload bytes in the segment; `bytes` holds the first of them
    pub payload_len: u32,
    pub bytes: &'a [u8],
    /// seen arriving on the interface (else leaving)
    pub ingress: bool,
}

/// The per-request filters and the query-string option.
#[derive(Clone, Debug, Default)]
pub struct Select {
    pub methods: Vec<Method>,
    pub hosts: Vec<String>,
    pub path_prefixes: Vec<String>,
    pub no_query: bool,
}

/// `example.com:8080` -> `example.com`, `[::1]:80` -> `[::1]`.
fn host_name(h: &[u8]) -> &[u8] {
    if h.first() == Some(&b'[') {
        return match h.iter().position(|&c| c == b']') {
            Some(i) => &h[..=i],
            None => h,
        };
    }
    match h.iter().position(|&c| c == b':') {
        Some(i) if !h[i + 1..].contains(&b':') => &h[..i],
        _ => h,
    }
}

impl Select {
    /// Whether a request is printed. A --host without a port matches the
    /// name on any port; with a port, only that port.
    pub fn keeps(&self, method: Method, host: Option<&[u8]>, target: &[u8]) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(&method) {
            return false;
        }
        if !self.hosts.is_empty() {
            let Some(h) = host else { return false };
            let hit = self.hosts.iter().any(|want| {
                let want = want.as_bytes();
                if host_name(want).len() == want.len() {
                    host_name(h).eq_ignore_ascii_case(want)
                } else {
                    h.eq_ignore_ascii_case(want)
                }
            });
            if !hit {
                return false;
            }
        }
        self.path_prefixes.is_empty()
            || self
                .path_prefixes
                .iter()
                .any(|p| target.starts_with(p.as_bytes()))
    }
}

/// A request as printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub ts_ns: u64,
    pub method: Method,
    pub path: String,
    pub version: Version,
    pub host: Option<String>,
    pub ingress: bool,
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// its response was seen
    Answered,
    /// no response within the timeout
    Timeout,
    /// still waiting when tracing ended
    Pending,
    /// a later response on the same flow shows it was answered, but its
    /// status line was not where wirescope looks (see the README)
    Missed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Timeout => "timeout",
            Outcome::Pending => "pending",
            Outcome::Missed => "missed",
        }
    }
}

/// A request and how it ended: one output line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub key: FlowKey,
    pub req: Request,
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub latency_ns: Option<u64>,
}

/// What the pairing saw and did, for the summary. Every complete request
/// line ends in exactly one of answered, timeouts, pending, missed, overflow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// complete request lines read (pipelined ones included)
    pub requests: u64,
    /// status lines read (interim 1xx included)
    pub responses: u64,
    pub answered: u64,
    pub timeouts: u64,
    pub pending: u64,
    pub missed: u64,
    /// requests dropped because the flow table or a flow's queue was full
    pub overflow: u64,
    /// requests not printed because of --method, --host or --path-prefix
    pub skipped: u64,
    /// responses with no request waiting on their flow
    pub unmatched: u64,
    /// request lines that do not end within the segment or window
    pub truncated: u64,
    /// requests that started past the window or between segments looked at
    pub unseen: u64,
    /// segments that start like HTTP but break its grammar
    pub invalid: u64,
    /// segments seen before (TCP retransmissions, or both hooks of `lo`)
    pub duplicates: u64,
    /// segments that start like HTTP inside a body of known length, or in a
    /// tunnel (after CONNECT or 101 Switching Protocols)
    pub in_body: u64,
}

impl Counts {
    pub fn fields(&self) -> [(&'static str, u64); 14] {
        [
            ("requests", self.requests),
            ("responses", self.responses),
            ("answered", self.answered),
            ("timeouts", self.timeouts),
            ("pending", self.pending),
            ("missed", self.missed),
            ("overflow", self.overflow),
            ("skipped", self.skipped),
            ("unmatched", self.unmatched),
            ("truncated", self.truncated),
            ("unseen", self.unseen),
            ("invalid", self.invalid),
            ("duplicates", self.duplicates),
            ("in_body", self.in_body),
        ]
    }
}

/// `a` comes before `b` in TCP sequence space (modulo 2^32).
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Where the next message of one direction of a flow must start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Next {
    #[default]
    Unknown,
    At(u32),
    /// the rest of the connection is a body or a tunnel
    Never,
}

#[derive(Clone, Copy, Debug, Default)]
struct Stream {
    /// sequence number of the last message start accepted
    last: Option<u32>,
    next: Next,
}

enum Position {
    Fresh,
    Repeat,
    InBody,
    /// at least one message started between the last one and this one
    Gap,
}

impl Stream {
    fn position(&self, seq: u32) -> Position {
        if self.last.is_some_and(|l| !seq_lt(l, seq)) {
            return Position::Repeat;
        }
        match self.next {
            Next::At(n) if seq_lt(seq, n) => Position::InBody,
            Next::At(n) if seq_lt(n, seq) => Position::Gap,
            Next::Never => Position::InBody,
            _ => Position::Fresh,
        }
    }

    /// Record a message at `start` of known framing.
    fn after(&mut self, start: u32, head_len: usize, framing: Option<Framing>) {
        self.last = Some(start);
        self.next = match framing {
            Some(Framing::Length(n)) => match u32::try_from(head_len as u64 + n) {
                // farther than half the sequence space cannot be compared
                Ok(len) if len < 1 << 31 => Next::At(start.wrapping_add(len)),
                _ => Next::Unknown,
            },
            Some(Framing::UntilClose) => Next::Never,
            _ => Next::Unknown,
        };
    }
}

/// A request waiting for its response.
#[derive(Debug)]
struct Waiting {
    ts_ns: u64,
    /// None for a placeholder (truncated or unseen request): it takes its
    /// place in the order, is never printed and has no outcome.
    method: Option<Method>,
    /// the response must acknowledge at least up to here
    end_seq: u32,
    /// None: not printed (placeholder, or skipped by a filter)
    shown: Option<Request>,
}

#[derive(Debug, Default)]
struct Flow {
    waiting: VecDeque<Waiting>,
    req: Stream,
    resp: Stream,
    last_ns: u64,
}

/// Every flow being tracked, and the counts.
pub struct Tracker {
    flows: HashMap<FlowKey, Flow>,
    timeout_ns: u64,
    select: Select,
    pub counts: Counts,
}

impl Tracker {
    pub fn new(timeout_ns: u64, select: Select) -> Self {
        Tracker {
            flows: HashMap::new(),
            timeout_ns,
            select,
            counts: Counts::default(),
        }
    }

    /// Flows currently tracked.
    #[cfg(test)]
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    fn end(
        counts: &mut Counts,
        key: FlowKey,
        w: Waiting,
        outcome: Outcome,
        out: &mut dyn FnMut(Exchange),
    ) {
        if w.method.is_none() {
            return;
        }
        match outcome {
            Outcome::Answered => counts.answered += 1,
            Outcome::Timeout => counts.timeouts += 1,
            Outcome::Pending => counts.pending += 1,
            Outcome::Missed => counts.missed += 1,
        }
        if let Some(req) = w.shown {
            out(Exchange {
                key,
                req,
                outcome,
                status: None,
                latency_ns: None,
            });
        }
    }

    fn push(counts: &mut Counts, flow: &mut Flow, w: Waiting) {
        if flow.waiting.len() >= MAX_PENDING {
            if let Some(old) = flow.waiting.pop_front() {
                if old.method.is_some() {
                    counts.overflow += 1;
                }
            }
        }
        flow.waiting.push_back(w);
    }

    fn placeholder(seg: &Segment<'_>, start: u32) -> Waiting {
        Waiting {
            ts_ns: seg.ts_ns,
            method: None,
            end_seq: start.wrapping_add(1),
            shown: None,
        }
    }

    /// A segment from client to server that starts a request.
    pub fn request(&mut self, seg: &Segment<'_>) {
        let counts = &mut self.counts;
        if !self.flows.contains_key(&seg.key) && self.flows.len() >= MAX_FLOWS {
            match parse::request(seg.bytes) {
                Ok(_) => {
                    counts.requests += 1;
                    counts.overflow += 1;
                }
                Err(parse::Error::Truncated) => counts.truncated += 1,
                Err(_) => counts.invalid += 1,
            }
            return;
        }
        let flow = self.flows.entry(seg.key).or_default();
        flow.last_ns = seg.ts_ns;
        if flow.waiting.is_empty() && flow.req.next != Next::Never {
            // Everything sent before was answered. The very same segment can
            // still come again (the response was lost after this hook, the
            // client retransmits); anything else may be a new connection on
            // the same ports, whose sequence numbers start anywhere.
            if flow.req.last == Some(seg.seq) {
                counts.duplicates += 1;
                return;
            }
            flow.req = Stream::default();
            flow.resp = Stream::default();
        } else {
            match flow.req.position(seg.seq) {
                Position::Repeat => {
                    counts.duplicates += 1;
                    return;
                }
                Position::InBody => {
                    counts.in_body += 1;
                    return;
                }
                Position::Gap => {
                    // the unseen request starts where the last one ended
                    let at = match flow.req.next {
                        Next::At(n) => n,
                        _ => seg.seq,
                    };
                    counts.unseen += 1;
                    Self::push(counts, flow, Self::placeholder(seg, at));
                }
                Position::Fresh => {}
            }
        }

        let mut off = 0usize;
        while off < seg.bytes.len() {
            let start = seg.seq.wrapping_add(off as u32);
            let r = match parse::request(&seg.bytes[off..]) {
                Ok(r) => r,
                Err(parse::Error::Truncated) => {
                    counts.truncated += 1;
                    flow.req.after(start, 0, None);
                    Self::push(counts, flow, Self::placeholder(seg, start));
                    return;
                }
                Err(_) => {
                    counts.invalid += 1;
                    flow.req.next = Next::Unknown;
                    return;
                }
            };
            counts.requests += 1;
            let shown = if self.select.keeps(r.method, r.fields.host, r.target) {
                let target = if self.select.no_query {
                    parse::strip_query(r.target)
                } else {
                    r.target
                };
                Some(Request {
                    ts_ns: seg.ts_ns,
                    method: r.method,
                    path: String::from_utf8_lossy(target).into_owned(),
                    version: r.version,
                    host: r
                        .fields
                        .host
                        .map(|h| String::from_utf8_lossy(h).into_owned()),
                    ingress: seg.ingress,
                })
            } else {
                counts.skipped += 1;
                None
            };
            // The server answers once it has the head (or as much of it as is here).
            let seen = r.fields.head_len.unwrap_or(seg.bytes.len() - off);
            Self::push(
                counts,
                flow,
                Waiting {
                    ts_ns: seg.ts_ns,
                    method: Some(r.method),
                    end_seq: start.wrapping_add(seen as u32),
                    shown,
                },
            );
            let framing = r.framing();
            flow.req
                .after(start, r.fields.head_len.unwrap_or(0), framing);
            match (framing, r.fields.head_len) {
                (Some(Framing::Length(n)), Some(head)) => {
                    let next = (off as u64).saturating_add(head as u64).saturating_add(n);
                    if next < seg.bytes.len() as u64 {
                        off = next as usize;
                        continue;
                    }
                    if next < u64::from(seg.payload_len) {
                        // another request follows, past the window
                        counts.unseen += 1;
                        flow.req.next = Next::Unknown;
                        let at = seg.seq.wrapping_add(next as u32);
                        Self::push(counts, flow, Self::placeholder(seg, at));
                    }
                    return;
                }
                _ => return,
            }
        }
    }

    /// A segment from server to client that starts a response.
    pub fn response(&mut self, seg: &Segment<'_>, out: &mut dyn FnMut(Exchange)) {
        let counts = &mut self.counts;
        let key = seg.key;
        let Some(flow) = self.flows.get_mut(&key) else {
            match parse::response(seg.bytes) {
                Ok(_) => {
                    counts.responses += 1;
                    counts.unmatched += 1;
                }
                Err(_) => counts.invalid += 1,
            }
            return;
        };
        flow.last_ns = seg.ts_ns;
        match flow.resp.position(seg.seq) {
            Position::Repeat => {
                counts.duplicates += 1;
                return;
            }
            Position::InBody => {
                counts.in_body += 1;
                return;
            }
            Position::Gap => {
                if let Some(w) = flow.waiting.pop_front() {
                    Self::end(counts, key, w, Outcome::Missed, out);
                }
            }
            Position::Fresh => {}
        }

        let mut off = 0usize;
        while off < seg.bytes.len() {
            let start = seg.seq.wrapping_add(off as u32);
            let r = match parse::response(&seg.bytes[off..]) {
                Ok(r) => r,
                Err(parse::Error::Truncated) => {
                    // a response whose status is cut off: its request was answered
                    flow.resp.after(start, 0, None);
                    if let Some(w) = flow.waiting.pop_front() {
                        Self::end(counts, key, w, Outcome::Missed, out);
                    }
                    return;
                }
                Err(_) => {
                    counts.invalid += 1;
                    flow.resp.next = Next::Unknown;
                    return;
                }
            };
            counts.responses += 1;
            let mut method = None;
            if !r.is_interim() {
                // It answers the oldest request, unless the server had not
                // even received that one yet when it sent this.
                let answers = flow
                    .waiting
                    .front()
                    .is_some_and(|w| !seq_lt(seg.ack, w.end_seq));
                match flow.waiting.pop_front() {
                    Some(w) if answers => {
                        method = w.method;
                        if w.method.is_some() {
                            counts.answered += 1;
                        }
                        if let Some(req) = w.shown {
                            out(Exchange {
                                key,
                                latency_ns: Some(seg.ts_ns.saturating_sub(req.ts_ns)),
                                req,
                                outcome: Outcome::Answered,
                                status: Some(r.status),
                            });
                        }
                    }
                    other => {
                        if let Some(w) = other {
                            flow.waiting.push_front(w);
                        }
                        counts.unmatched += 1;
                    }
                }
            }
            let framing = r.framing(method);
            flow.resp
                .after(start, r.fields.head_len.unwrap_or(0), framing);
            if framing == Some(Framing::UntilClose) {
                // a tunnel or a body until close: nothing after is HTTP
                flow.req.next = Next::Never;
            }
            match (framing, r.fields.head_len) {
                (Some(Framing::Length(n)), Some(head)) => {
                    let next = (off as u64).saturating_add(head as u64).saturating_add(n);
                    if next < seg.bytes.len() as u64 {
                        off = next as usize;
                        continue;
                    }
                    if next < u64::from(seg.payload_len) {
                        // another response follows, past the window
                        flow.resp.next = Next::Unknown;
                        if let Some(w) = flow.waiting.pop_front() {
                            Self::end(counts, key, w, Outcome::Missed, out);
                        }
                    }
                    return;
                }
                _ => return,
            }
        }
    }

    /// Requests older than the timeout end as timeouts; quiet flows are forgotten.
    pub fn expire(&mut self, now_ns: u64, out: &mut dyn FnMut(Exchange)) {
        let timeout = self.timeout_ns;
        let counts = &mut self.counts;
        let mut ended: Vec<(FlowKey, Waiting)> = Vec::new();
        self.flows.retain(|key, flow| {
            while flow
                .waiting
                .front()
                .is_some_and(|w| now_ns.saturating_sub(w.ts_ns) >= timeout)
            {
                if let Some(w) = flow.waiting.pop_front() {
                    ended.push((*key, w));
                }
            }
            !flow.waiting.is_empty() || now_ns.saturating_sub(flow.last_ns) < FLOW_IDLE_NS
        });
        ended.sort_by_key(|(_, w)| w.ts_ns);
        for (key, w) in ended {
            Self::end(counts, key, w, Outcome::Timeout, out);
        }
    }

    /// Tracing ended: every request still waiting is reported as pending.
    pub fn finish(&mut self, out: &mut dyn FnMut(Exchange)) {
        let mut ended: Vec<(FlowKey, Waiting)> = self
            .flows
            .drain()
            .flat_map(|(key, flow)| flow.waiting.into_iter().map(move |w| (key, w)))
            .collect();
        ended.sort_by_key(|(_, w)| w.ts_ns);
        for (key, w) in ended {
            Self::end(&mut self.counts, key, w, Outcome::Pending, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const TIMEOUT: u64 = 30_000 * MS;

    fn key() -> FlowKey {
        FlowKey {
            client: "10.0.0.1".parse().unwrap(),
            cport: 40000,
            server: "10.0.0.2".parse().unwrap(),
            sport: 80,
        }
    }

    fn seg(ts_ms: u64, seq: u32, ack: u32, bytes: &[u8]) -> Segment<'_> {
        Segment {
            key: key(),
            ts_ns: ts_ms * MS,
            seq,
            ack,
            payload_len: bytes.len() as u32,
            bytes,
            ingress: true,
        }
    }

    fn get(path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n").into_bytes()
    }

    fn ok(status: u16, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// Client sequence numbers start at C, server ones at S.
    const C: u32 = 1000;
    const S: u32 = 5000;

    struct Run {
        t: Tracker,
        out: Vec<Exchange>,
    }

    impl Run {
        fn new() -> Run {
            Self::with(Select::default())
        }
        fn with(select: Select) -> Run {
            Run {
                t: Tracker::new(TIMEOUT, select),
                out: Vec::new(),
            }
        }
        fn req(&mut self, s: Segment<'_>) {
            self.t.request(&s);
        }
        fn resp(&mut self, s: Segment<'_>) {
            let out = &mut self.out;
            self.t.response(&s, &mut |x| out.push(x));
        }
        fn expire(&mut self, now_ms: u64) {
            let out = &mut self.out;
            self.t.expire(now_ms * MS, &mut |x| out.push(x));
        }
        fn finish(&mut self) {
            let out = &mut self.out;
            self.t.finish(&mut |x| out.push(x));
        }
        /// (path, outcome, status, latency in ms)
        fn lines(&self) -> Vec<(String, &'static str, Option<u16>, Option<u64>)> {
            self.out
                .iter()
                .map(|x| {
                    (
                        x.req.path.clone(),
                        x.outcome.as_str(),
                        x.status,
                        x.latency_ns.map(|n| n / MS),
                    )
                })
                .collect()
        }
    }

    fn line(
        path: &str,
        outcome: &'static str,
        status: Option<u16>,
        ms: Option<u64>,
    ) -> (String, &'static str, Option<u16>, Option<u64>) {
        (path.to_string(), outcome, status, ms)
    }

    #[test]
    fn keep_alive_requests_pair_in_order_with_latency() {
        let mut r = Run::new();
        let (a, b) = (get("/a"), get("/b"));
        let (p1, p2) = (ok(200, "hello"), ok(404, "no"));
        r.req(seg(0, C, S, &a));
        r.resp(seg(7, S, C + a.len() as u32, &p1));
        r.req(seg(10, C + a.len() as u32, S + p1.len() as u32, &b));
        r.resp(seg(
            12,
            S + p1.len() as u32,
            C + (a.len() + b.len()) as u32,
            &p2,
        ));
        assert_eq!(
            r.lines(),
            vec![
                line("/a", "answered", Some(200), Some(7)),
                line("/b", "answered", Some(404), Some(2)),
            ]
        );
        let x = &r.out[0];
        assert_eq!(x.key, key());
        assert_eq!(x.req.method, Method::Get);
        assert_eq!(x.req.host.as_deref(), Some("example.com"));
        assert_eq!(x.req.version, Version(1));
        assert!(x.req.ingress);
        let c = r.t.counts;
        assert_eq!((c.requests, c.responses, c.answered), (2, 2, 2));
        assert_eq!(c.unmatched + c.duplicates + c.invalid + c.missed, 0);
    }

    #[test]
    fn pipelined_requests_in_separate_segments() {
        let mut r = Run::new();
        let reqs: Vec<Vec<u8>> = ["/1", "/2", "/3"].iter().map(|p| get(p)).collect();
        let mut seq = C;
        for (i, q) in reqs.iter().enumerate() {
            r.req(seg(i as u64, seq, S, q));
            seq += q.len() as u32;
        }
        let mut sseq = S;
        for (i, st) in [201u16, 202, 203].into_iter().enumerate() {
            let p = ok(st, "x");
            r.resp(seg(10 + i as u64, sseq, seq, &p));
            sseq += p.len() as u32;
        }
        assert_eq!(
            r.lines(),
            vec![
                line("/1", "answered", Some(201), Some(10)),
                line("/2", "answered", Some(202), Some(10)),
                line("/3", "answered", Some(203), Some(10)),
            ]
        );
    }

    #[test]
    fn pipelined_messages_in_one_segment_each_way() {
        let mut r = Run::new();
        // a POST with a body, then a GET, then a HEAD, all in one segment
        let mut burst = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nGET ".to_vec();
        burst.extend(get("/g"));
        burst.extend(b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n");
        r.req(seg(0, C, S, &burst));
        assert_eq!(r.t.counts.requests, 3);
        // answers: 201 with a body, 100 Continue (interim) then 200, and the
        // HEAD's answer whose Content-Length announces a body it does not carry
        let mut answers = ok(201, "made");
        answers.extend(b"HTTP/1.1 100 Continue\r\n\r\n");
        answers.extend(ok(200, "0123456789"));
        answers.extend(b"HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n");
        r.resp(seg(5, S, C + burst.len() as u32, &answers));
        assert_eq!(
            r.lines(),
            vec![
                line("/p", "answered", Some(201), Some(5)),
                line("/g", "answered", Some(200), Some(5)),
                line("/h", "answered", Some(204), Some(5)),
            ]
        );
        assert_eq!(r.t.counts.responses, 4);
        assert_eq!(r.t.counts.unmatched, 0);
    }

    #[test]
    fn messages_past_the_window_keep_their_place() {
        let mut r = Run::new();
        // two requests in one segment; the window holds only the first
        let (a, b) = (get("/a"), get("/b"));
        let both = [a.clone(), b.clone()].concat();
        let mut s = seg(0, C, S, &both[..a.len()]);
        s.payload_len = both.len() as u32;
        r.req(s);
        assert_eq!((r.t.counts.requests, r.t.counts.unseen), (1, 1));
        // two answers in one segment; the first body fills the window
        let big = "x".repeat(3000);
        let answers = [ok(200, &big), ok(200, "b")].concat();
        let mut s = seg(3, S, C + both.len() as u32, &answers[..2048]);
        s.payload_len = answers.len() as u32;
        r.resp(s);
        // a third request and its answer, pairing as they should
        let c = get("/c");
        r.req(seg(4, C + both.len() as u32, S, &c));
        let p = ok(302, "");
        r.resp(seg(
            6,
            S + answers.len() as u32,
            C + (both.len() + c.len()) as u32,
            &p,
        ));
        assert_eq!(
            r.lines(),
            vec![
                line("/a", "answered", Some(200), Some(3)),
                line("/c", "answered", Some(302), Some(2)),
            ]
        );
        // the unseen /b took the second answer without being printed
        assert_eq!(r.t.counts.unmatched, 0);
        assert_eq!(r.t.counts.missed, 0);
    }

    #[test]
    fn a_response_that_started_where_nobody_looked_is_reported_missed() {
        let mut r = Run::new();
        let reqs: Vec<Vec<u8>> = ["/1", "/2", "/3"].iter().map(|p| get(p)).collect();
        let mut seq = C;
        for q in &reqs {
            r.req(seg(0, seq, S, q));
            seq += q.len() as u32;
        }
        let p1 = ok(200, "one");
        let p2 = ok(500, "two"); // never reaches user space (mid-segment)
        let p3 = ok(201, "three");
        r.resp(seg(1, S, seq, &p1));
        r.resp(seg(2, S + (p1.len() + p2.len()) as u32, seq, &p3));
        assert_eq!(
            r.lines(),
            vec![
                line("/1", "answered", Some(200), Some(1)),
                line("/2", "missed", None, None),
                line("/3", "answered", Some(201), Some(2)),
            ]
        );
        assert_eq!(r.t.counts.missed, 1);
    }

    #[test]
    fn an_unseen_request_between_two_seen_ones_takes_its_answer() {
        let mut r = Run::new();
        let (a, b, c) = (get("/a"), get("/b"), get("/c"));
        r.req(seg(0, C, S, &a));
        // /b is never seen; /c starts after it
        let cseq = C + (a.len() + b.len()) as u32;
        r.req(seg(1, cseq, S, &c));
        assert_eq!(r.t.counts.unseen, 1);
        let end = cseq + c.len() as u32;
        let (p1, p2, p3) = (ok(200, ""), ok(403, ""), ok(204, ""));
        r.resp(seg(5, S, end, &p1));
        r.resp(seg(6, S + p1.len() as u32, end, &p2));
        r.resp(seg(7, S + (p1.len() + p2.len()) as u32, end, &p3));
        assert_eq!(
            r.lines(),
            vec![
                line("/a", "answered", Some(200), Some(5)),
                line("/c", "answered", Some(204), Some(6)),
            ]
        );
    }

    #[test]
    fn duplicates_and_segments_inside_bodies_are_ignored() {
        let mut r = Run::new();
        // a POST whose 5000-byte body spans several segments; one of them
        // happens to start with a request line
        let head = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n".to_vec();
        r.req(seg(0, C, S, &head));
        r.req(seg(0, C, S, &head)); // retransmission (or lo's second hook)
        let inside = get("/not-a-request");
        r.req(seg(1, C + head.len() as u32 + 1400, S, &inside));
        let end = C + head.len() as u32 + 5000;
        // a response body that starts like a status line, then the answer
        let p = ok(200, "done");
        r.resp(seg(9, S, end, &p));
        r.resp(seg(9, S, end, &p)); // seen twice
                                    // a segment of the same response body (had it been longer)
        assert_eq!(
            r.lines(),
            vec![line("/upload", "answered", Some(200), Some(9))]
        );
        let c = r.t.counts;
        assert_eq!((c.requests, c.duplicates, c.in_body), (1, 2, 1));
        // a response whose body is longer than its first segment
        let head = get("/big");
        let q = end;
        r.req(seg(10, q, S + p.len() as u32, &head));
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{}",
            "y".repeat(100)
        );
        let s0 = S + p.len() as u32;
        r.resp(seg(11, s0, q + head.len() as u32, big.as_bytes()));
        r.resp(seg(12, s0 + 3000, q + head.len() as u32, &ok(500, "fake")));
        assert_eq!(r.out.len(), 2);
        assert_eq!(r.t.counts.in_body, 2);
        assert_eq!(r.t.counts.unmatched, 0);
    }

    #[test]
    fn a_response_cannot_answer_a_request_the_server_had_not_received() {
        let mut r = Run::new();
        let a = get("/a");
        r.req(seg(0, C, S, &a));
        // acknowledges only up to the start of /a: it answers something older
        let early = ok(200, "");
        r.resp(seg(1, S, C, &early));
        assert_eq!(r.t.counts.unmatched, 1);
        assert!(r.out.is_empty());
        r.resp(seg(
            2,
            S + early.len() as u32,
            C + a.len() as u32,
            &ok(202, ""),
        ));
        assert_eq!(r.lines(), vec![line("/a", "answered", Some(202), Some(2))]);
        // a response on a flow never seen
        let mut other = seg(3, 1, 1, b"HTTP/1.1 200 OK\r\n\r\n");
        other.key.cport = 1;
        r.resp(other);
        assert_eq!(r.t.counts.unmatched, 2);
    }

    #[test]
    fn timeouts_and_pending_at_exit() {
        let mut r = Run::new();
        let a = get("/slow");
        r.req(seg(0, C, S, &a));
        let mut b = seg(100, 7, S, b"GET /left HTTP/1.1\r\n\r\n");
        b.key.cport = 40001;
        r.req(b);
        r.expire(29_999);
        assert!(r.out.is_empty());
        r.expire(30_000);
        assert_eq!(r.lines(), vec![line("/slow", "timeout", None, None)]);
        r.finish();
        assert_eq!(
            r.lines(),
            vec![
                line("/slow", "timeout", None, None),
                line("/left", "pending", None, None),
            ]
        );
        let c = r.t.counts;
        assert_eq!((c.requests, c.timeouts, c.pending), (2, 1, 1));
        assert_eq!(r.t.flows(), 0);
        // a flow with nothing waiting is forgotten after 5 quiet seconds
        let mut r = Run::new();
        r.req(seg(0, C, S, &a));
        r.resp(seg(1, S, C + a.len() as u32, &ok(200, "")));
        r.expire(1 + 4_999);
        assert_eq!(r.t.flows(), 1);
        r.expire(1 + 5_000);
        assert_eq!(r.t.flows(), 0);
    }

    #[test]
    fn a_request_retransmitted_after_its_answer_is_a_duplicate() {
        let mut r = Run::new();
        let a = get("/once");
        let p = ok(200, "");
        r.req(seg(0, C, S, &a));
        r.resp(seg(1, S, C + a.len() as u32, &p));
        // the answer was lost after this hook: both ends send theirs again
        r.req(seg(200, C, S, &a));
        r.resp(seg(201, S, C + a.len() as u32, &p));
        r.finish();
        assert_eq!(
            r.lines(),
            vec![line("/once", "answered", Some(200), Some(1))]
        );
        assert_eq!(r.t.counts.duplicates, 2);
    }

    #[test]
    fn the_answer_to_an_unseen_request_may_acknowledge_only_that_request() {
        let mut r = Run::new();
        let (a, b, c) = (get("/a"), get("/b"), get("/c"));
        r.req(seg(0, C, S, &a));
        let bseq = C + a.len() as u32;
        let cseq = bseq + b.len() as u32;
        r.req(seg(1, cseq, S, &c)); // /b unseen
        let (p1, p2, p3) = (ok(200, ""), ok(201, ""), ok(202, ""));
        r.resp(seg(2, S, bseq, &p1));
        // the server answered /b before /c had arrived
        r.resp(seg(3, S + p1.len() as u32, cseq, &p2));
        let s3 = S + (p1.len() + p2.len()) as u32;
        r.resp(seg(4, s3, cseq + c.len() as u32, &p3));
        assert_eq!(
            r.lines(),
            vec![
                line("/a", "answered", Some(200), Some(2)),
                line("/c", "answered", Some(202), Some(3)),
            ]
        );
        assert_eq!(r.t.counts.unmatched, 0);
    }

    #[test]
    fn a_new_connection_on_the_same_ports_is_not_a_duplicate() {
        let mut r = Run::new();
        let a = get("/first");
        r.req(seg(0, C, S, &a));
        r.resp(seg(1, S, C + a.len() as u32, &ok(200, "")));
        // same four-tuple, new connection with a smaller initial sequence number
        let b = get("/second");
        r.req(seg(2, 10, 20, &b));
        r.resp(seg(3, 20, 10 + b.len() as u32, &ok(200, "")));
        assert_eq!(r.out.len(), 2);
        assert_eq!(r.t.counts.duplicates, 0);
    }

    #[test]
    fn tunnels_are_not_http() {
        let mut r = Run::new();
        let q = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
        r.req(seg(0, C, S, q));
        r.resp(seg(
            1,
            S,
            C + q.len() as u32,
            b"HTTP/1.1 200 Connection established\r\n\r\n",
        ));
        // inside the tunnel, someone speaks HTTP to the far end
        let inner = get("/inner");
        r.req(seg(2, C + q.len() as u32, S + 39, &inner));
        r.resp(seg(3, S + 39, C + 500, &ok(200, "")));
        assert_eq!(
            r.lines(),
            vec![line("example.com:443", "answered", Some(200), Some(1))]
        );
        assert_eq!(r.t.counts.in_body, 2);
    }

    #[test]
    fn truncated_requests_hold_their_place_silently() {
        let mut r = Run::new();
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(3000));
        let mut s = seg(0, C, S, &long.as_bytes()[..1448]);
        s.payload_len = 1448;
        r.req(s);
        let b = get("/after");
        let bseq = C + long.len() as u32;
        r.req(seg(1, bseq, S, &b));
        let end = bseq + b.len() as u32;
        let p1 = ok(414, "");
        r.resp(seg(2, S, end, &p1));
        r.resp(seg(3, S + p1.len() as u32, end, &ok(200, "")));
        assert_eq!(
            r.lines(),
            vec![line("/after", "answered", Some(200), Some(2))]
        );
        let c = r.t.counts;
        assert_eq!((c.requests, c.truncated, c.answered), (1, 1, 1));
    }

    #[test]
    fn invalid_requests_and_responses_are_counted_not_printed() {
        let mut r = Run::new();
        r.req(seg(0, C, S, b"GET /a HTTP/9.9\r\n\r\n"));
        r.req(seg(0, C + 100, S, b"GET  HTTP/1.1\r\n\r\n"));
        r.resp(seg(1, S, C + 200, b"HTTP/1.1 2000 OK\r\n\r\n"));
        r.finish();
        assert!(r.out.is_empty());
        assert_eq!(r.t.counts.invalid, 3);
        assert_eq!(r.t.counts.requests, 0);
    }

    #[test]
    fn filters_select_requests_but_every_request_takes_its_answer() {
        let select = Select {
            methods: vec![Method::Get, Method::Delete],
            hosts: vec!["api.example.com".into(), "[fd00::1]:8080".into()],
            path_prefixes: vec!["/v2/".into()],
            no_query: true,
        };
        let mut r = Run::with(select);
        let reqs = [
            (
                "GET",
                "/v2/users?token=secret",
                "api.example.com:8443",
                true,
            ),
            ("POST", "/v2/users", "api.example.com", false),
            ("GET", "/v1/users", "api.example.com", false),
            ("GET", "/v2/x", "www.example.com", false),
            ("DELETE", "/v2/y?q", "API.EXAMPLE.COM", true),
            ("GET", "/v2/z", "[fd00::1]:8080", true),
            ("GET", "/v2/z", "[fd00::1]:9090", false),
            ("GET", "/v2/z", "[fd00::1]", false),
        ];
        let mut seq = C;
        for (i, (m, path, host, _)) in reqs.iter().enumerate() {
            let q = format!("{m} {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
            r.req(seg(i as u64, seq, S, q.as_bytes()));
            seq += q.len() as u32;
        }
        let mut sseq = S;
        for i in 0..reqs.len() {
            let p = ok(200 + i as u16, "");
            r.resp(seg(20, sseq, seq, &p));
            sseq += p.len() as u32;
        }
        let want: Vec<(String, Option<u16>)> = reqs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.3)
            .map(|(i, (_, path, _, _))| {
                (
                    parse::strip_query(path.as_bytes())
                        .iter()
                        .map(|&c| c as char)
                        .collect(),
                    Some(200 + i as u16),
                )
            })
            .collect();
        let got: Vec<(String, Option<u16>)> = r
            .out
            .iter()
            .map(|x| (x.req.path.clone(), x.status))
            .collect();
        assert_eq!(got, want);
        assert!(r.out.iter().all(|x| !x.req.path.contains('?')));
        let c = r.t.counts;
        assert_eq!((c.requests, c.skipped, c.answered), (8, 5, 8));
    }

    #[test]
    fn a_full_queue_drops_the_oldest() {
        let mut r = Run::new();
        let q = get("/q");
        let mut seq = C;
        for i in 0..=MAX_PENDING {
            r.req(seg(i as u64, seq, S, &q));
            seq += q.len() as u32;
        }
        assert_eq!(r.t.counts.overflow, 1);
        r.finish();
        assert_eq!(r.out.len(), MAX_PENDING);
        assert_eq!(r.out[0].req.ts_ns, MS);
    }

    #[test]
    fn a_full_flow_table_counts_new_flows_as_overflow() {
        let mut r = Run::new();
        let q = get("/q");
        for port in 0..MAX_FLOWS {
            let mut s = seg(0, C, S, &q);
            s.key.cport = port as u16;
            r.req(s);
        }
        assert_eq!(r.t.flows(), MAX_FLOWS);
        let mut s = seg(0, C, S, &q);
        s.key.server = "10.9.9.9".parse().unwrap();
        r.req(s);
        let c = r.t.counts;
        assert_eq!((c.requests, c.overflow), (MAX_FLOWS as u64 + 1, 1));
        // a flow already tracked still gets its answer
        let answer = ok(200, "");
        let mut p = seg(1, S, C + q.len() as u32, &answer);
        p.key.cport = 7;
        r.resp(p);
        assert_eq!(r.lines(), vec![line("/q", "answered", Some(200), Some(1))]);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut r = Run::new();
        let (a, b) = (get("/a"), get("/b"));
        let start = u32::MAX - 10;
        r.req(seg(0, start, S, &a));
        let bseq = start.wrapping_add(a.len() as u32);
        r.req(seg(0, bseq, S, &b));
        r.req(seg(0, start, S, &a)); // an old duplicate, across the wrap
        let end = bseq.wrapping_add(b.len() as u32);
        let p = ok(200, "");
        r.resp(seg(1, u32::MAX - 3, end, &p));
        r.resp(seg(
            2,
            (u32::MAX - 3).wrapping_add(p.len() as u32),
            end,
            &ok(201, ""),
        ));
        assert_eq!(
            r.lines(),
            vec![
                line("/a", "answered", Some(200), Some(1)),
                line("/b", "answered", Some(201), Some(2)),
            ]
        );
        assert_eq!(r.t.counts.duplicates, 1);
    }
}
