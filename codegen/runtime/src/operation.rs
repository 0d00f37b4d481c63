//! The operation a request was routed to, made known to the middleware around the
//! generated routes, so that logs and metrics label requests by `operationId` rather
//! than by raw path (whose ids would make every request its own label).
//!
//! A middleware that wants it puts an [`OperationSlot`] into the request before calling
//! the routes and reads it afterwards; the generated route fills it, and records it on
//! the current tracing span's `operation_id` field when the span declares one.

use std::sync::{Arc, OnceLock};

/// Where the generated route writes the id of the operation it serves.
#[derive(Debug, Clone, Default)]
pub struct OperationSlot(Arc<OnceLock<&'static str>>);

impl OperationSlot {
    /// The operation's id, once a route has claimed the request.
    pub fn get(&self) -> Option<&'static str> {
        self.0.get().copied()
    }
}

/// Called by each generated route first: tells the middleware (and the tracing span)
/// which operation serves `request`.
pub fn announce_operation(request: &poem::Request, id: &'static str) {
    if let Some(slot) = request.extensions().get::<OperationSlot>() {
        let _ = slot.0.set(id);
    }
    tracing::Span::current().record("operation_id", id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_holds_the_first_announced_operation() {
        let slot = OperationSlot::default();
        let mut request = poem::Request::builder().finish();
        request.extensions_mut().insert(slot.clone());
        assert_eq!(slot.get(), None);
        announce_operation(&request, "get_user");
        announce_operation(&request, "ignored");
        assert_eq!(slot.get(), Some("get_user"));
    }
}
