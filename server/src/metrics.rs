//! Counters behind `GET /metrics`, written in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use infer_engine::scheduler::Usage;
use infer_engine::EngineStats;

/// Upper bounds (seconds) of the time-to-first-token histogram's buckets.
const TTFT_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The server's own counters (the engine keeps the token counts).
pub struct Metrics {
    /// Responses by (route, status code).
    responses: Mutex<BTreeMap<(String, u16), u64>>,
    /// Per bucket of [`TTFT_BUCKETS`] (plus +Inf), the sum and the count.
    ttft: Mutex<([u64; TTFT_BUCKETS.len() + 1], f64, u64)>,
    rejected: AtomicU64,
    stream_errors: AtomicU64,
    ids: AtomicU64,
    /// Generated tokens and time at the previous scrape, for the rate.
    last_scrape: Mutex<(Instant, u64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            responses: Mutex::default(),
            ttft: Mutex::new(([0; TTFT_BUCKETS.len() + 1], 0.0, 0)),
            rejected: AtomicU64::new(0),
            stream_errors: AtomicU64::new(0),
            ids: AtomicU64::new(0),
            last_scrape: Mutex::new((Instant::now(), 0)),
        }
    }
}

impl Metrics {
    /// A number for response ids.
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }
    pub fn response(&self, route: &str, status: u16) {
        let mut r = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        *r.entry((route.to_string(), status)).or_default() += 1;
    }
    /// A request refused because the queue was full.
    pub fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }
    /// An error sent inside a stream (after the 200 headers).
    pub fn stream_error(&self) {
        self.stream_errors.fetch_add(1, Ordering::Relaxed);
    }
    /// A choice that finished.
    pub fn finished(&self, usage: &Usage) {
        let secs = usage.time_to_first_token.as_secs_f64();
        let mut h = self.ttft.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = TTFT_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(TTFT_BUCKETS.len());
        h.0[bucket] += 1;
        h.1 += secs;
        h.2 += 1;
    }

    /// The Prometheus text of these counters and the engine's.
    pub fn render(&self, engine: Option<&EngineStats>) -> String {
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(&mut out, "infer_http_responses_total", "counter", "HTTP responses by route and status code.");
        for ((route, status), n) in self.responses.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "infer_http_responses_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        head(&mut out, "infer_requests_rejected_total", "counter", "Requests refused with 503 because the queue was full.");
        let _ = writeln!(out, "infer_requests_rejected_total {}", self.rejected.load(Ordering::Relaxed));
        head(&mut out, "infer_stream_errors_total", "counter", "Errors sent inside a stream after its headers.");
        let _ = writeln!(out, "infer_stream_errors_total {}", self.stream_errors.load(Ordering::Relaxed));
        {
            let h = self.ttft.lock().unwrap_or_else(|e| e.into_inner());
            head(&mut out, "infer_time_to_first_token_seconds", "histogram", "From a choice's submission to its first generated token.");
            let mut acc = 0;
            for (i, b) in TTFT_BUCKETS.iter().enumerate() {
                acc += h.0[i];
                let _ = writeln!(out, "infer_time_to_first_token_seconds_bucket{{le=\"{b}\"}} {acc}");
            }
            acc += h.0[TTFT_BUCKETS.len()];
            let _ = writeln!(out, "infer_time_to_first_token_seconds_bucket{{le=\"+Inf\"}} {acc}");
            let _ = writeln!(out, "infer_time_to_first_token_seconds_sum {}", h.1);
            let _ = writeln!(out, "infer_time_to_first_token_seconds_count {}", h.2);
        }
        let Some(s) = engine else { return out };
        let rate = {
            let mut last = self.last_scrape.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
            let r = s.generated_tokens.saturating_sub(last.1) as f64 / secs;
            *last = (now, s.generated_tokens);
            r
        };
        let gauges: [(&str, &str, f64); 4] = [
            ("infer_slots", "Slots (requests served at once).", s.n_slots as f64),
            ("infer_slots_busy", "Slots serving a request now.", s.active as f64),
            ("infer_queue_depth", "Requests waiting for a slot.", s.queued as f64),
            ("infer_generation_tokens_per_second", "Tokens generated per second since the previous scrape, all slots together.", rate),
        ];
        for (name, help, v) in gauges {
            head(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {v}");
        }
        let counters: [(&str, &str, u64); 6] = [
            ("infer_requests_finished_total", "Engine requests (choices) that finished.", s.finished),
            ("infer_requests_failed_total", "Engine requests that ended with an error.", s.failed),
            ("infer_requests_cancelled_total", "Engine requests cancelled (client gone).", s.cancelled),
            ("infer_prompt_tokens_total", "Prompt tokens evaluated.", s.prompt_tokens),
            ("infer_prompt_tokens_cached_total", "Prompt tokens reused from a slot's cache.", s.cached_tokens),
            ("infer_generated_tokens_total", "Tokens generated.", s.generated_tokens),
        ];
        for (name, help, v) in counters {
            head(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {v}");
        }
        out
    }
}
