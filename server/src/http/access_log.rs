//! The access line: one line a request, written by hand instead of through a `tracing`
//! event.
//!
//! Why by hand: a `tracing` event is formatted by tracing-subscriber's JSON layer, which
//! visits every field into a map, parses the request span's stored fields back from
//! JSON and serialises the lot again; on a cached read that was most of what telemetry
//! cost (docs/benchmarks.md, "Telemetry"). Here the line is one `serde_json` write of a
//! borrowed struct into a pre-sized buffer, handed to the same background writer as every
//! other line (so lines never interleave). The line is the one the JSON layer wrote,
//! field for field and in the same order, so nothing that reads the logs changes; with
//! text logs it is the text layer's line, uncoloured. `MINITTER_LOG` still decides: the
//! line is written only where an `info` event of `http::telemetry` would be.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use tracing_appender::non_blocking::NonBlocking;

/// Where access lines go, and in which format; set once by [`install`].
static WRITER: OnceLock<Writer> = OnceLock::new();

struct Writer {
    lines: NonBlocking,
    json: bool,
}

/// Sends access lines to `lines` (the background writer every log line goes through), as
/// JSON or as text. The first call wins (tests start many servers in one process).
pub fn install(lines: NonBlocking, json: bool) {
    let _ = WRITER.set(Writer { lines, json });
}

/// One served request, as the access line tells it.
#[derive(Debug, Serialize)]
pub struct Served<'a> {
    #[serde(skip)]
    pub method: &'a str,
    #[serde(skip)]
    pub request_id: &'a str,
    pub operation_id: &'a str,
    pub status: u16,
    #[serde(rename = "elapsed_ms", serialize_with = "milliseconds")]
    pub elapsed: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<uuid::Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<uuid::Uuid>,
}

fn milliseconds<S: serde::Serializer>(elapsed: &Duration, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_f64(elapsed.as_secs_f64() * 1000.0)
}

/// The JSON line: what tracing-subscriber's JSON layer writes for an `info!` event with
/// the message `served` inside the request span.
#[derive(Serialize)]
struct JsonLine<'a> {
    timestamp: &'a str,
    level: &'static str,
    fields: Fields<'a>,
    target: &'static str,
    span: RequestSpan<'a>,
}

#[derive(Serialize)]
struct Fields<'a> {
    message: &'static str,
    #[serde(flatten)]
    served: &'a Served<'a>,
}

/// The request span's fields, sorted by name as the JSON layer stores them, then its name.
#[derive(Serialize)]
struct RequestSpan<'a> {
    method: &'a str,
    request_id: &'a str,
    name: &'static str,
}

/// The target the access line has always had (its module once wrote it).
const TARGET: &str = "minitter_server::http::telemetry";

impl Served<'_> {
    /// Writes the line, if access lines are installed and `info` is logged here.
    pub fn log(&self) {
        let Some(writer) = WRITER.get() else {
            return;
        };
        if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return;
        }
        let line = if writer.json {
            self.json_line()
        } else {
            self.text_line()
        };
        // The writer never blocks: when its queue is full it drops the line, as it does
        // every other. (A clone is how tracing-subscriber takes it for each line too.)
        let _ = writer.lines.clone().write_all(&line);
    }

    fn json_line(&self) -> Vec<u8> {
        let mut line = Vec::with_capacity(384);
        let timestamp = now();
        let json = JsonLine {
            timestamp: &timestamp,
            level: "INFO",
            fields: Fields {
                message: "served",
                served: self,
            },
            target: TARGET,
            span: RequestSpan {
                method: self.method,
                request_id: self.request_id,
                name: "request",
            },
        };
        // Plain strings, numbers and ids: serialising cannot fail.
        let _ = serde_json::to_writer(&mut line, &json);
        line.push(b'\n');
        line
    }

    fn text_line(&self) -> Vec<u8> {
        let mut line = Vec::with_capacity(256);
        let _ = write!(
            line,
            "{}  INFO request{{method={} request_id={}}}: {TARGET}: served operation_id={:?} \
             status={} elapsed_ms={}",
            now(),
            self.method,
            self.request_id,
            self.operation_id,
            self.status,
            self.elapsed.as_secs_f64() * 1000.0,
        );
        if let Some(client) = self.client {
            let _ = write!(line, " client={client}");
        }
        if let Some(key_id) = self.key_id {
            let _ = write!(line, " key_id={key_id}");
        }
        if let Some(user_id) = self.user_id {
            let _ = write!(line, " user_id={user_id}");
        }
        line.push(b'\n');
        line
    }
}

/// Now, as the other lines' timestamps are written.
fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(client: Option<IpAddr>, key_id: Option<uuid::Uuid>) -> Served<'static> {
        Served {
            method: "GET",
            request_id: "req-1",
            operation_id: "get_user",
            status: 404,
            elapsed: Duration::from_micros(1500),
            client,
            key_id,
            user_id: None,
        }
    }

    #[test]
    fn the_json_line_has_the_json_layers_shape() {
        let key = uuid::Uuid::from_u128(7);
        let line = served(Some([127, 0, 0, 1].into()), Some(key)).json_line();
        let text = std::str::from_utf8(&line).expect("utf-8");
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        let value: serde_json::Value = serde_json::from_str(text).expect("JSON");
        // In the JSON layer's order (a `Value` would sort them).
        let at = |key: &str| text.find(&format!("\"{key}\":")).expect(key);
        let order = ["timestamp", "level", "fields", "target", "span"].map(at);
        assert!(order.is_sorted(), "{text}");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["target"], "minitter_server::http::telemetry");
        assert_eq!(
            value["fields"],
            serde_json::json!({
                "message": "served", "operation_id": "get_user", "status": 404,
                "elapsed_ms": 1.5, "client": "127.0.0.1", "key_id": key.to_string(),
            })
        );
        assert_eq!(
            value["span"],
            serde_json::json!({"method": "GET", "request_id": "req-1", "name": "request"})
        );
        let timestamp = value["timestamp"].as_str().expect("timestamp");
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "{timestamp}"
        );
    }

    #[test]
    fn absent_callers_are_left_out_and_text_lines_say_the_same() {
        let value: serde_json::Value =
            serde_json::from_slice(&served(None, None).json_line()).expect("JSON");
        assert!(value["fields"].get("client").is_none());
        assert!(value["fields"].get("key_id").is_none());
        let text = String::from_utf8(served(None, None).text_line()).expect("utf-8");
        assert!(
            text.contains("request{method=GET request_id=req-1}")
                && text.contains("served operation_id=\"get_user\" status=404 elapsed_ms=1.5")
                && !text.contains("client="),
            "{text}"
        );
    }
}
