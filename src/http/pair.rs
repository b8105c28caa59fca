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
            counts.overflow += 1;
            return;
        }
        let flow = self.flows.entry(seg.key).or_default();
        flow.last_ns = seg.ts_ns;
        if flow.waiting.is_empty() {
            // Everything sent before was answered: a retransmission cannot
            // follow, and this may be a new connection on the same ports.
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
                    counts.unseen += 1;
                    Self::push(counts, flow, Self::placeholder(seg, seg.seq));
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
