//! The Prometheus text exposition format, version 0.0.4, written by hand.
//!
//! What `/metrics` answers with (`Content-Type: text/plain; version=0.0.4; charset=utf-8`):
//!
//! ```text
//! # HELP inetloop_tcp_connections_accepted_total TCP connections accepted and served.
//! # TYPE inetloop_tcp_connections_accepted_total counter
//! inetloop_tcp_connections_accepted_total{loop="1",service="echo"} 3
//! # HELP inetloop_tick_lateness_seconds How late time-stream ticks went out.
//! # TYPE inetloop_tick_lateness_seconds histogram
//! inetloop_tick_lateness_seconds_bucket{loop="1",service="time",proto="tcp",le="0.0001"} 2
//! …
//! inetloop_tick_lateness_seconds_bucket{loop="1",service="time",proto="tcp",le="+Inf"} 4
//! inetloop_tick_lateness_seconds_sum{loop="1",service="time",proto="tcp"} 0.000712
//! inetloop_tick_lateness_seconds_count{loop="1",service="time",proto="tcp"} 4
//! ```
//!
//! The rules kept here, once: every family starts with `# HELP` and `# TYPE` and its samples
//! follow it without another family in between; a HELP text escapes `\` and newline, a label
//! value escapes `\`, `"` and newline; histogram buckets are cumulative, ascending by `le`, end
//! with `le="+Inf"` equal to `_count`, and come with `_sum`; floats are written in plain
//! decimal (`+Inf`, `-Inf`, `NaN` where they apply); every line ends in `\n`, the last one
//! too. Nothing here does I/O: the text goes into a `String`, so the unit tests below read
//! exactly what a scraper would.

use std::fmt::Write;

/// A family's `# TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample's value: counts stay integers, everything else is a float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) if x.is_nan() => f.write_str("NaN"),
            Value::Float(x) if x == f64::INFINITY => f.write_str("+Inf"),
            Value::Float(x) if x == f64::NEG_INFINITY => f.write_str("-Inf"),
            // Rust writes the shortest decimal that reads back exactly, never an exponent.
            Value::Float(x) => write!(f, "{x}"),
        }
    }
}

/// A label: name and value (the value is escaped when written).
pub type Label<'a> = (&'a str, &'a str);

/// Writes families into a `String`.
pub struct Exposition<'a> {
    out: &'a mut String,
}

impl<'a> Exposition<'a> {
    pub fn new(out: &'a mut String) -> Self {
        Exposition { out }
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Its samples must follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(
            self.out,
            "# HELP {name} {}\n# TYPE {name} {}",
            Escaped {
                text: help,
                quote: false
            },
            kind.name()
        );
    }

    /// One sample line: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[Label], value: Value) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// A histogram's samples: cumulative `_bucket`s for each bound and `+Inf`, then `_sum` and
    /// `_count`. `counts` are each bucket's own observations (not cumulative), one per bound;
    /// `over` those above the last bound.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[Label],
        bounds: &[f64],
        counts: &[u64],
        over: u64,
        sum: f64,
    ) {
        let mut cumulative = 0u64;
        for (bound, count) in bounds.iter().zip(counts) {
            cumulative += count;
            let le = Value::Float(*bound).to_string();
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        cumulative += over;
        let _ = write!(self.out, "{name}_bucket");
        self.labels(labels, Some("+Inf"));
        let _ = writeln!(self.out, " {cumulative}");
        self.sample(&format!("{name}_sum"), labels, Value::Float(sum));
        self.sample(&format!("{name}_count"), labels, Value::Int(cumulative));
    }

    /// `{a="1",b="2"}` (with `le` last, for a bucket), or nothing without labels.
    fn labels(&mut self, labels: &[Label], le: Option<&str>) {
        let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
        let mut first = true;
        for (name, value) in all {
            self.out.push(if first { '{' } else { ',' });
            first = false;
            let _ = write!(
                self.out,
                "{name}=\"{}\"",
                Escaped {
                    text: value,
                    quote: true
                }
            );
        }
        if !first {
            self.out.push('}');
        }
    }
}

/// Text with `\` and newline escaped (and `"` too in a label value).
struct Escaped<'a> {
    text: &'a str,
    quote: bool,
}

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.text.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '"' if self.quote => f.write_str("\\\"")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(write: impl FnOnce(&mut Exposition)) -> String {
        let mut out = String::new();
        write(&mut Exposition::new(&mut out));
        out
    }

    #[test]
    fn a_family_has_help_and_type_then_its_samples_each_on_a_line_ending_in_newline() {
        let text = written(|x| {
            x.family("demo_total", Kind::Counter, "Things done.");
            x.sample(
                "demo_total",
                &[("loop", "1"), ("service", "echo")],
                Value::Int(42),
            );
            x.sample("demo_total", &[], Value::Int(0));
        });
        assert_eq!(
            text,
            "# HELP demo_total Things done.\n\
             # TYPE demo_total counter\n\
             demo_total{loop=\"1\",service=\"echo\"} 42\n\
             demo_total 0\n"
        );
    }

    #[test]
    fn label_values_escape_backslash_double_quote_and_newline_and_help_escapes_two() {
        let text = written(|x| {
            x.family("g", Kind::Gauge, "a \\ b \"c\"\nd");
            x.sample("g", &[("v", "C:\\dir \"x\"\ny")], Value::Int(1));
        });
        assert_eq!(
            text,
            "# HELP g a \\\\ b \"c\"\\nd\n\
             # TYPE g gauge\n\
             g{v=\"C:\\\\dir \\\"x\\\"\\ny\"} 1\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf_equal_to_count() {
        let text = written(|x| {
            x.family("lat_seconds", Kind::Histogram, "Lateness.");
            x.histogram(
                "lat_seconds",
                &[("loop", "2")],
                &[0.001, 0.5, 1.0],
                &[3, 0, 2],
                4,
                7.25,
            );
        });
        assert_eq!(
            text,
            "# HELP lat_seconds Lateness.\n\
             # TYPE lat_seconds histogram\n\
             lat_seconds_bucket{loop=\"2\",le=\"0.001\"} 3\n\
             lat_seconds_bucket{loop=\"2\",le=\"0.5\"} 3\n\
             lat_seconds_bucket{loop=\"2\",le=\"1\"} 5\n\
             lat_seconds_bucket{loop=\"2\",le=\"+Inf\"} 9\n\
             lat_seconds_sum{loop=\"2\"} 7.25\n\
             lat_seconds_count{loop=\"2\"} 9\n"
        );
    }

    #[test]
    fn floats_are_plain_decimals_and_the_special_values_have_their_names() {
        let v = |x: f64| Value::Float(x).to_string();
        assert_eq!(v(0.0001), "0.0001");
        assert_eq!(v(1e-9), "0.000000001");
        assert_eq!(v(1234.5), "1234.5");
        assert_eq!(v(f64::INFINITY), "+Inf");
        assert_eq!(v(f64::NEG_INFINITY), "-Inf");
        assert_eq!(v(f64::NAN), "NaN");
        assert_eq!(Value::Int(u64::MAX).to_string(), "18446744073709551615");
    }
}
