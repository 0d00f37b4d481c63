//! Webhooks (issue 19): events pushed to partners' own HTTP endpoints.
//!
//! A partner names the URL, so every URL is a request the server would make on a
//! stranger's behalf; [`ssrf`] is the guard each one passes, at registration and again
//! when a delivery connects (to the very address that was checked, never following a
//! redirect). Subscriptions and the delivery worker build on it.
//!
//! [`send`] makes one delivery attempt: the Standard Webhooks request, signed with the
//! endpoint's secrets, and a plain-data report of what the receiver answered.
//! [`schedule`] decides, without I/O, when a failed delivery is tried again and when an
//! endpoint that keeps failing is left alone for a while (its circuit breaker).

pub mod schedule;
pub mod send;
pub mod ssrf;
