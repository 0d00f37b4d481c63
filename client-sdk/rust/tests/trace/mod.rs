//! A `tracing` layer that keeps the SDK's attempt spans (`minitter_client.attempt`) and
//! its `retrying` events, so that tests can see what a partner's subscriber would.
//! Installed for the current thread, which is where `#[tokio::test]` runs everything.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::DefaultGuard;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

/// One attempt's span, as recorded when it closed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempt {
    pub operation: String,
    pub attempt: u64,
    pub status: Option<u64>,
    pub error: Option<String>,
}

impl Visit for Attempt {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "attempt" => self.attempt = value,
            "status" => self.status = Some(value),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "operation" {
            self.operation = value.to_owned();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "error" {
            self.error = Some(format!("{value:?}"));
        }
    }
}

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[derive(Clone, Default)]
struct Log {
    spans: Arc<Mutex<Vec<Attempt>>>,
    /// The operation of each `retrying` event.
    retries: Arc<Mutex<Vec<String>>>,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Log {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        if attributes.metadata().name() != "minitter_client.attempt" {
            return;
        }
        let mut attempt = Attempt::default();
        attributes.record(&mut attempt);
        if let Some(span) = context.span(id) {
            span.extensions_mut().insert(attempt);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        if let Some(span) = context.span(id)
            && let Some(attempt) = span.extensions_mut().get_mut::<Attempt>()
        {
            values.record(attempt);
        }
    }

    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        let mut message = Message::default();
        event.record(&mut message);
        if message.0 != "retrying" {
            return;
        }
        if let Some(span) = context.event_span(event)
            && let Some(attempt) = span.extensions().get::<Attempt>()
        {
            let operation = attempt.operation.clone();
            self.retries.lock().expect("the log").push(operation);
        }
    }

    fn on_close(&self, id: Id, context: Context<'_, S>) {
        if let Some(span) = context.span(&id)
            && let Some(attempt) = span.extensions_mut().remove::<Attempt>()
        {
            self.spans.lock().expect("the log").push(attempt);
        }
    }
}

/// What the SDK traced while this is alive.
pub struct Attempts {
    log: Log,
    _guard: DefaultGuard,
}

/// Starts recording the SDK's attempts on this thread.
pub fn capture() -> Attempts {
    let log = Log::default();
    let guard = tracing::subscriber::set_default(Registry::default().with(log.clone()));
    Attempts { log, _guard: guard }
}

impl Attempts {
    /// The closed attempt spans of this operation, in the order they closed.
    pub fn spans(&self, operation: &str) -> Vec<Attempt> {
        let spans = self.log.spans.lock().expect("the log");
        spans
            .iter()
            .filter(|attempt| attempt.operation == operation)
            .cloned()
            .collect()
    }

    /// How many `retrying` events this operation's attempts logged.
    #[allow(dead_code)] // not every test binary counts retries
    pub fn retries(&self, operation: &str) -> usize {
        let retries = self.log.retries.lock().expect("the log");
        retries.iter().filter(|op| *op == operation).count()
    }
}
